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
from kubeinfer.api.v1alpha1 import (
    Condition,
    ConditionStatus,
    ModelDeployment,
    ModelDeploymentStatus,
)
from kubeinfer.cache import (
    PROGRESS_LINES,
    PROGRESS_SECONDS,
    JobSummary,
    cache_condition,
    failure,
    next_try,
    progress,
)
from kubeinfer.decide import decide_for_classes, fingerprint
from kubeinfer.drift import Action, ChildState, child_state, plan_child
from kubeinfer.kube import Kube, api_message
from kubeinfer.nodes import NodeClass
from kubeinfer.params.check import describe as describe_params
from kubeinfer.params.check import problems as param_problems
from kubeinfer.render import ImageSettings, children
from kubeinfer.render.cache import FETCH_CONTAINER, numbered
from kubeinfer.render.children import POD_TEMPLATE_HASH, model_cache
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
    # Look again after this many seconds (the model cache's progress, a failed download's
    # next run), whatever the events.
    requeue_after: float | None = None


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
    cache_job: JobSummary | None = None,
    cache_pods: Sequence[PodSummary] = (),
) -> Outcome:
    """Bring one ModelDeployment's children and status in line with its spec.

    `previous` is the status as last written (the operator's own record, which can be newer
    than `body`). `live` holds the children as the watches (or a resync's reads) last saw
    them, by kind. `apply_always` re-applies every child (spec changes, operator restarts);
    otherwise only a child that is missing or differs from the desired one is written.
    With spec.model.cache, `cache_job` and `cache_pods` are its download Job and pods as the
    watches saw them; the Deployment is written only once the Job has filled the cache.
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
    cache: Condition | None = None
    requeue_after = None
    if decision.engine is not None:
        objects: Sequence[Mapping[str, Any]] = children(md, decision, images)
        desired_hash = objects[2]["spec"]["template"]["metadata"]["annotations"][POD_TEMPLATE_HASH]
        shared = model_cache(md, decision, images)
        if shared is not None:
            cache, problem, requeue_after = _ensure_cache(
                kube, md, shared, cache_job, cache_pods, apply_always, now
            )
            if cache.status != "True":
                objects = objects[:2]  # the engine pods start only from a filled cache
        if problem is None:
            applied, problem = _write_children(
                kube, objects, live, md.metadata.uid or "", apply_always=apply_always
            )
    status = desired_status(
        md, previous, decision, desired_hash, deployment, pods, problem=problem, now=now
    )
    if cache is not None and cache.status != "True" and problem is None:
        status = _with_cache(status, cache, md.metadata.generation, now)
    elif cache is not None:
        status = status.model_copy(
            update={"conditions": cond.set_condition(status.conditions, cache)}
        )
    status = status.model_copy(update={"decided_for": decided_for})
    outcome = _write(kube, meta, previous, status, applied=applied)
    return Outcome(
        outcome.events,
        outcome.applied,
        outcome.status,
        outcome.status_written,
        problem,
        requeue_after,
    )


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


def _ensure_cache(
    kube: Kube,
    md: ModelDeployment,
    shared: tuple[Mapping[str, Any], Mapping[str, Any]],
    job: JobSummary | None,
    pods: Sequence[PodSummary],
    apply_always: bool,
    now: datetime,
) -> tuple[Condition, ChildProblem | None, float | None]:
    """The cache's PVC and download Job exist and list this ModelDeployment as an owner; a
    failed Job runs again when its next try is due (kubeinfer.cache.next_try), or at once
    after a spec change. Also returns when to look again: for progress, or the next try."""
    claim, download = shared
    name, namespace = claim["metadata"]["name"], claim["metadata"]["namespace"]
    generation = md.metadata.generation
    uri = md.spec.model.uri
    look_again: float | None = PROGRESS_SECONDS
    try:
        if job is not None and job.failed:
            due = next_try(job, failure(job, pods), now).at
            if apply_always or now >= due:
                # Only that Job: another user of the cache may have replaced it already.
                kube.delete_job(namespace, name, uid=job.uid)
                download = numbered(download, 1 if apply_always else job.attempt + 1)
                job, pods = None, ()
            else:
                look_again = (due - now).total_seconds()
        for obj in (claim, download):
            live = kube.ensure_shared(obj)
            labels = (live or {}).get("metadata", {}).get("labels") or {}
            if live is not None and labels.get("app.kubernetes.io/managed-by") != "kubeinfer":
                why = f"{obj['kind']} {name} already exists and is not kubeinfer's: kubeinfer "
                why += "leaves it alone; delete it, or change spec.model.cache"
                waiting = cache_condition(name, uri, None, (), generation=generation, now=now)
                return waiting, ChildProblem(cond.NAME_CONFLICT, why), None
    except ApiException as error:
        message = f"model cache {name}: {api_message(error)}"
        logger.warning("writing the model cache %s/%s failed: %s", namespace, name, message)
        waiting = cache_condition(name, uri, None, (), generation=generation, now=now)
        return waiting, ChildProblem(cond.APPLY_FAILED, message), None
    running = next((p for p in pods if p.phase == "Running" and not p.deleting), None)
    done = None
    if job is not None and not (job.succeeded or job.failed) and running is not None:
        done = progress(kube.log_tail(namespace, running.name, FETCH_CONTAINER, PROGRESS_LINES))
    condition = cache_condition(name, uri, job, pods, done=done, generation=generation, now=now)
    return condition, None, None if condition.status == "True" else look_again


def _with_cache(
    status: ModelDeploymentStatus, cache: Condition, generation: int | None, now: datetime
) -> ModelDeploymentStatus:
    """The ModelCache condition; until the cache is filled (and the Deployment written),
    Available and Progressing say that the engine waits for it, and a failed download is
    Degraded with the runtime's reason."""
    conditions = cond.set_condition(status.conditions, cache)
    failed = cache.reason == cond.DOWNLOAD_FAILED
    waiting: list[tuple[str, ConditionStatus, str]] = [
        (cond.AVAILABLE, "False", cond.WAITING_FOR_MODEL_CACHE),
        (cond.PROGRESSING, "False" if failed else "True", cond.WAITING_FOR_MODEL_CACHE),
    ]
    if failed:
        waiting.append((cond.DEGRADED, "True", cond.MODEL_FETCH_FAILED))
    for type_, state, reason in waiting:
        message = cache.message if failed else f"waiting for the model cache: {cache.message}"
        conditions = cond.set_condition(
            conditions,
            cond.condition(type_, state, reason, message, generation=generation, now=now),
        )
    # The summary follows what the cache changed.
    conditions = cond.set_condition(
        conditions, cond.ready(conditions, generation=generation, now=now)
    )
    return status.model_copy(update={"conditions": conditions})


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
