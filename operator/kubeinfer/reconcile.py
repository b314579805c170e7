"""One reconcile of one ModelDeployment: plan (kubeinfer.plan), write what differs, write
the status.

Called by the kopf handlers with what the watches already hold (node classes, the children
and pods), so a reconcile costs no list calls. It is idempotent: applying the same children
again changes nothing, and status is written only when it differs. A child whose name is
held by an object this ModelDeployment does not control is never written, and a write the
API server refuses becomes a condition: neither raises.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kubeinfer import conditions as cond
from kubeinfer.api.v1alpha1 import KIND, Condition, ModelDeployment, ModelDeploymentStatus
from kubeinfer.cache import (
    PROGRESS_LINES,
    PROGRESS_SECONDS,
    JobSummary,
    cache_condition,
    failure,
    next_try,
    progress,
)
from kubeinfer.drift import Action, ChildState, Step, child_state, plan_child
from kubeinfer.kube import ApiError, Kube, api_message
from kubeinfer.plan import Conclusion, Observed, Renders, conclude, plan
from kubeinfer.render import ImageSettings
from kubeinfer.render.cache import FETCH_CONTAINER, FILLED_ANNOTATION, job_run
from kubeinfer.status import ChildProblem
from kubeinfer.workload import PodSummary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    conclusion: Conclusion
    problem: ChildProblem | None = None  # a child left as it is: try again later
    # Look again after this many seconds (the model cache's progress, a failed download's
    # next run), whatever the events.
    requeue_after: float | None = None


def reconcile(
    observed: Observed,
    *,
    kube: Kube,
    images: ImageSettings,
    apply_always: bool,
    now: datetime,
    cache_job: JobSummary | None = None,
    cache_pods: Sequence[PodSummary] = (),
    renders: Renders | None = None,
) -> Outcome:
    """Bring one ModelDeployment's children and status in line with its spec: plan, write
    what the plan says, conclude, write the status if it changed.

    `apply_always` re-applies every child (spec changes, operator restarts); otherwise only a
    child that is missing or differs from the desired one is written. With
    spec.model.cache, `cache_job` and `cache_pods` are its download Job and pods as the
    watches saw them; the Deployment is written only once the Job has filled the cache.
    """
    planned = plan(observed, images, apply_always=apply_always, renders=renders)
    applied, problem = False, None
    cache: Condition | None = None
    requeue_after = None
    steps = planned.steps
    if planned.cache is not None and planned.md is not None:
        cache, problem, requeue_after = _ensure_cache(
            kube, planned.md, planned.cache, cache_job, cache_pods, apply_always, now
        )
        if cache.status != "True":
            steps = steps[:-1]  # the engine pods start only from a filled cache
    if problem is None and planned.md is not None:
        applied, problem = _write_children(
            kube, steps, planned.md.metadata.uid or "", apply_always=apply_always
        )
    done = conclude(observed, planned, problem=problem, cache=cache, applied=applied, now=now)
    if done.patch is not None:
        meta = observed.body["metadata"]
        kube.patch_status(meta["namespace"], meta["name"], done.patch)
    return Outcome(done, problem, requeue_after)


def _write_children(
    kube: Kube, steps: Sequence[Step], owner_uid: str, *, apply_always: bool
) -> tuple[bool, ChildProblem | None]:
    """Writes each child that needs it, in order (the Service, then the Deployment). The
    first child that cannot be written stops the rest: no pods start behind a Service that
    is not kubeinfer's."""
    applied = False
    for step in steps:
        obj = step.obj
        kind, meta = obj["kind"], obj["metadata"]
        where = f"{kind} {meta['namespace']}/{meta['name']}"
        try:
            if step.action is Action.CREATE:
                if step.why and not apply_always:
                    logger.info("repairing: %s", step.why)
                # The watches see only kubeinfer's children: a create refused for the name
                # finds out whose object holds it.
                if _created(kube, obj):
                    applied = True
                    continue
                found = kube.read(kind, meta["namespace"], meta["name"])
                state = child_state(found) if found is not None else None
                step = plan_child(obj, state, owner_uid, changed_spec=True)
            if step.action is Action.CONFLICT:
                logger.warning("%s: %s", where, step.why)
                return applied, ChildProblem(cond.NAME_CONFLICT, step.why)
            if step.action is Action.NONE:
                continue
            if step.action is Action.RECLAIM:
                kube.reclaim_fields(obj)
            if step.why and step.action is not Action.CREATE:
                logger.info("repairing: %s", step.why)
            kube.apply(_guarded(obj, step.state))
            applied = True
        except ApiError as error:
            message = f"{kind} {meta['name']}: {api_message(error)}"
            logger.warning("writing %s failed: %s", where, api_message(error))
            return applied, ChildProblem(cond.APPLY_FAILED, message)
    return applied, None


def _created(kube: Kube, obj: Mapping[str, Any]) -> bool:
    """True when `obj` was created; False when its name is taken (409)."""
    try:
        kube.create(obj)
    except ApiError as error:
        if error.status == 409:
            return False
        raise
    return True


def _ensure_cache(
    kube: Kube,
    md: ModelDeployment,
    shared: tuple[Mapping[str, Any], Mapping[str, Any]],
    job: JobSummary | None,
    pods: Sequence[PodSummary],
    apply_always: bool,
    now: datetime,
) -> tuple[Condition, ChildProblem | None, float | None]:
    """The cache's PVC exists, lists this ModelDeployment as an owner, and is filled: until
    the PVC says so (FILLED_ANNOTATION), a download Job for that PVC runs. A failed Job runs
    again when its next try is due (kubeinfer.cache.next_try), or at once after a spec change;
    a Job made for a PVC since deleted is replaced. Also returns when to look again: for
    progress, or the next try."""
    claim, download = shared
    name, namespace = claim["metadata"]["name"], claim["metadata"]["namespace"]
    generation = md.metadata.generation
    uri = md.spec.model.uri

    def waiting(problem: ChildProblem | None) -> tuple[Condition, ChildProblem | None, None]:
        found = cache_condition(name, uri, None, (), filled=False, generation=generation, now=now)
        return found, problem, None

    look_again: float | None = PROGRESS_SECONDS
    try:
        live = kube.ensure_shared(claim)
        if live is None:
            return waiting(None)  # deleted in between: the PVC's event brings the next try
        if _foreign(live):
            return waiting(_conflict(live, name))
        claim_meta = live["metadata"]
        filled = FILLED_ANNOTATION in (claim_meta.get("annotations") or {})
        deleting = bool(claim_meta.get("deletionTimestamp"))
        attempt = 1
        if job is not None and job.claim_uid not in ("", claim_meta["uid"]):
            logger.info("repairing: Job %s/%s fills a claim since deleted", namespace, name)
            kube.delete_job(namespace, name, uid=job.uid)
            job, pods = None, ()
        elif job is not None and job.failed:
            due = next_try(job, failure(job, pods), now).at
            if apply_always or now >= due:
                # Only that Job: another user of the cache may have replaced it already.
                kube.delete_job(namespace, name, uid=job.uid)
                attempt = 1 if apply_always else job.attempt + 1
                job, pods = None, ()
            else:
                look_again = (due - now).total_seconds()
        elif job is not None and job.succeeded and not filled and not deleting:
            kube.annotate_claim(namespace, name, {FILLED_ANNOTATION: job.uid})
            filled = True
        if not filled and not deleting:
            live_job = kube.ensure_shared(job_run(download, claim_meta["uid"], attempt))
            if live_job is not None and _foreign(live_job):
                return waiting(_conflict(live_job, name))
    except ApiError as error:
        message = f"model cache {name}: {api_message(error)}"
        logger.warning("writing the model cache %s/%s failed: %s", namespace, name, message)
        return waiting(ChildProblem(cond.APPLY_FAILED, message))
    running = next((p for p in pods if p.phase == "Running" and not p.deleting), None)
    done = None
    if job is not None and not (job.succeeded or job.failed) and running is not None:
        done = progress(kube.log_tail(namespace, running.name, FETCH_CONTAINER, PROGRESS_LINES))
    condition = cache_condition(
        name,
        uri,
        job,
        pods,
        filled=filled,
        deleting=deleting,
        done=done,
        generation=generation,
        now=now,
    )
    # A claim being deleted: its deletion event brings the next look.
    return condition, None, None if filled or deleting else look_again


def _foreign(live: Mapping[str, Any]) -> bool:
    labels = live["metadata"].get("labels") or {}
    return labels.get("app.kubernetes.io/managed-by") != "kubeinfer"


def _conflict(live: Mapping[str, Any], name: str) -> ChildProblem:
    why = f"{live['kind']} {name} already exists and is not kubeinfer's: kubeinfer leaves it "
    why += "alone; delete it, or change spec.model.cache"
    return ChildProblem(cond.NAME_CONFLICT, why)


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


def remove_old_config_maps(kube: Kube, namespaces: Sequence[str]) -> int:
    """Deletes the per-model ConfigMaps an earlier kubeinfer made (the runtime config travels
    in the pod template now); returns how many. Only those a ModelDeployment controls."""
    selector = "app.kubernetes.io/managed-by=kubeinfer,app.kubernetes.io/component=model-server"
    paths = [f"/api/v1/namespaces/{ns}/configmaps" for ns in namespaces] or ["/api/v1/configmaps"]
    removed = 0
    for path in paths:
        for page, _ in kube.list(path, {"labelSelector": selector}):
            for found in page:
                meta = found["metadata"]
                owners = meta.get("ownerReferences") or ()
                if not any(o.get("kind") == KIND and o.get("controller") for o in owners):
                    continue
                kube.delete("ConfigMap", meta["namespace"], meta["name"], meta["uid"])
                logger.info(
                    "removed ConfigMap %s/%s: the runtime config is in the pod template now",
                    meta["namespace"],
                    meta["name"],
                )
                removed += 1
    return removed
