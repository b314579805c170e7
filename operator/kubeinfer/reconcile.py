"""One reconcile of one ModelDeployment: decide, render, apply what differs, write status.

Called by the kopf handlers with what the watches already hold (node classes, the child
Deployment and pods), so a reconcile costs no list calls. It is idempotent: applying the
same children again changes nothing, and status is written only when it differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kubeinfer import conditions as cond
from kubeinfer.api.problems import describe
from kubeinfer.api.v1alpha1 import ModelDeployment, ModelDeploymentStatus
from kubeinfer.decide import decide_for_classes, fingerprint
from kubeinfer.kube import Kube
from kubeinfer.nodes import NodeClass
from kubeinfer.render import ImageSettings, children, selector
from kubeinfer.render.children import POD_TEMPLATE_HASH
from kubeinfer.status import Event, desired_status, status_patch, transition_events
from kubeinfer.workload import DeploymentSummary, PodSummary


@dataclass(frozen=True)
class Outcome:
    events: tuple[Event, ...]
    applied: bool
    status: ModelDeploymentStatus
    status_written: bool


def reconcile(
    body: Mapping[str, Any],
    previous: ModelDeploymentStatus | None,
    classes: Sequence[NodeClass],
    deployment: DeploymentSummary | None,
    pods: Iterable[PodSummary],
    *,
    kube: Kube,
    images: ImageSettings,
    apply_always: bool,
    now: datetime,
) -> Outcome:
    """Bring one ModelDeployment's children and status in line with its spec.

    `previous` is the status as last written (the operator's own record, which can be newer
    than `body`). `apply_always` re-applies every child (spec changes, operator restarts);
    otherwise children are applied only when the Deployment is missing or runs another
    template.
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
    desired_hash = None
    applied = False
    if decision.engine is not None:
        objects = children(md, decision, images)
        desired_hash = objects[2]["spec"]["template"]["metadata"]["annotations"][POD_TEMPLATE_HASH]
        stale = (
            deployment is None
            or deployment.template_hash != desired_hash
            or deployment.replicas != md.spec.replicas
        )
        if apply_always or stale:
            for obj in objects:
                kube.apply(obj)
            applied = True
    status = desired_status(md, previous, decision, desired_hash, deployment, pods, now=now)
    status = status.model_copy(update={"decided_for": decided_for})
    return _write(kube, meta, previous, status, applied=applied)


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
    generation = body["metadata"].get("generation")
    invalid = cond.condition(
        cond.ENGINE_SELECTED,
        "False",
        cond.INVALID_SPEC,
        f"the spec is invalid and nothing was changed:\n{problems}",
        generation=generation,
        now=now,
    )
    kept = previous or ModelDeploymentStatus()
    return kept.model_copy(
        update={
            "conditions": cond.set_condition(kept.conditions, invalid),
            "observed_generation": generation,
            "selector": selector(body["metadata"]["name"]),
        }
    )


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
