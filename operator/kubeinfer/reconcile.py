"""One reconcile of one ModelDeployment: decide, render, apply what differs, write status.

Called by the kopf handlers with what the watches already hold (node classes, the children
and pods), so a reconcile costs no list calls. It is idempotent: applying the same children
again changes nothing, and status is written only when it differs. A child whose name is
held by an object this ModelDeployment does not control is never written, and a write the
API server refuses becomes a condition: neither raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from kubeinfer import conditions as cond
from kubeinfer.api.problems import describe
from kubeinfer.api.v1alpha1 import ModelDeployment, ModelDeploymentStatus
from kubeinfer.decide import decide_for_classes, fingerprint
from kubeinfer.drift import Action, ChildState, child_state, plan_child
from kubeinfer.kube import Kube, api_message
from kubeinfer.nodes import NodeClass
from kubeinfer.params.check import describe as describe_params
from kubeinfer.params.check import problems as param_problems
from kubeinfer.render import ImageSettings, children
from kubeinfer.render.children import POD_TEMPLATE_HASH
from kubeinfer.status import (
    ChildProblem,
    Event,
    desired_status,
    invalid_spec_status,
    status_patch,
    transition_events,
)
from kubeinfer.workload import DeploymentSummary, PodSummary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    events: tuple[Event, ...]
    applied: bool
    status: ModelDeploymentStatus
    status_written: bool
    problem: ChildProblem | None = None  # a child left as it is: try again later


def reconcile(
    body: Mapping[str, Any],
    previous: ModelDeploymentStatus | None,
    classes: Sequence[NodeClass],
    deployment: DeploymentSummary | None,
    pods: Iterable[PodSummary],
    live: Mapping[str, ChildState],
    *,
    kube: Kube,
    images: ImageSettings,
    apply_always: bool,
    now: datetime,
) -> Outcome:
    """Bring one ModelDeployment's children and status in line with its spec.

    `previous` is the status as last written (the operator's own record, which can be newer
    than `body`). `live` holds the children as the watches (or a resync's reads) last saw
    them, by kind. `apply_always` re-applies every child (spec changes, operator restarts);
    otherwise only a child that is missing or differs from the desired one is written.
    """
    meta = body["metadata"]
    try:
        md = ModelDeployment.from_object(dict(body))
    except ValidationError as error:
        status = _invalid_status(body, previous, describe(error), now)
        return _write(kube, meta, previous, status, applied=False)

    decided_for = fingerprint(md.spec)
    kept = previous.engine if previous and previous.decided_for == decided_for else None
    decision = decide_for_classes(md.spec, classes, keep_engine=kept)
    bad = param_problems(decision.engine, decision.engine_params) if decision.engine else []
    if bad:
        # The engine would exit at start: refuse before creating or changing anything.
        status = _invalid_status(body, previous, describe_params(bad), now)
        return _write(kube, meta, previous, status, applied=False)
    desired_hash = None
    applied, problem = False, None
    if decision.engine is not None:
        objects = children(md, decision, images)
        desired_hash = objects[2]["spec"]["template"]["metadata"]["annotations"][POD_TEMPLATE_HASH]
        applied, problem = _write_children(
            kube, objects, live, md.metadata.uid or "", apply_always=apply_always
        )
    status = desired_status(
        md, previous, decision, desired_hash, deployment, pods, problem=problem, now=now
    )
    status = status.model_copy(update={"decided_for": decided_for})
    outcome = _write(kube, meta, previous, status, applied=applied)
    return Outcome(outcome.events, outcome.applied, outcome.status, outcome.status_written, problem)


def _write_children(
    kube: Kube,
    objects: Sequence[Mapping[str, Any]],
    live: Mapping[str, ChildState],
    owner_uid: str,
    *,
    apply_always: bool,
) -> tuple[bool, ChildProblem | None]:
    """Applies each child that needs it, in order (the ConfigMap before the Deployment that
    mounts it). The first child that cannot be written stops the rest: nothing is created
    that depends on it."""
    applied = False
    for obj in objects:
        kind, meta = obj["kind"], obj["metadata"]
        where = f"{kind} {meta['namespace']}/{meta['name']}"
        try:
            step = plan_child(obj, live.get(kind), owner_uid, changed_spec=apply_always)
            if step.action is Action.CREATE:
                # The watches see only kubeinfer's children: make sure the name is free.
                found = kube.read(kind, meta["namespace"], meta["name"])
                if found is not None:
                    step = plan_child(obj, child_state(found), owner_uid, changed_spec=True)
            if step.action is Action.CONFLICT:
                logger.warning("%s: %s", where, step.why)
                return applied, ChildProblem(cond.NAME_CONFLICT, step.why)
            if step.action is Action.NONE:
                continue
            if step.action is Action.RECLAIM:
                kube.reclaim_fields(obj)
            if step.why and not (apply_always and step.action is Action.CREATE):
                logger.info("repairing: %s", step.why)
            kube.apply(_guarded(obj, step.state))
            applied = True
        except ApiException as error:
            message = f"{kind} {meta['name']}: {api_message(error)}"
            logger.warning("writing %s failed: %s", where, api_message(error))
            return applied, ChildProblem(cond.APPLY_FAILED, message)
    return applied, None


def _guarded(obj: Mapping[str, Any], state: ChildState | None) -> Mapping[str, Any]:
    """An existing child is applied with its uid: should another object have taken the name
    meanwhile, the API server refuses the apply instead of merging into it."""
    if state is None:
        return obj
    return {**obj, "metadata": {**obj["metadata"], "uid": state.uid}}


def parse_status(raw: Any) -> ModelDeploymentStatus | None:
    if not raw:
        return None
    try:
        return ModelDeploymentStatus.model_validate(raw)
    except ValidationError:
        return None  # written by something else; it is replaced whole


def _invalid_status(
    body: Mapping[str, Any], previous: ModelDeploymentStatus | None, problems: str, now: datetime
) -> ModelDeploymentStatus:
    meta = body["metadata"]
    return invalid_spec_status(meta["name"], meta.get("generation"), previous, problems, now=now)


def _write(
    kube: Kube,
    meta: Mapping[str, Any],
    previous: ModelDeploymentStatus | None,
    status: ModelDeploymentStatus,
    *,
    applied: bool,
) -> Outcome:
    patch = status_patch(previous, status)
    if patch is not None:
        kube.patch_status(meta["namespace"], meta["name"], patch)
    events = transition_events(previous, status) if patch is not None else ()
    return Outcome(events, applied, status, patch is not None)
