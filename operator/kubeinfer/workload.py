"""What the cluster says about a ModelDeployment's pods, reduced to the status (pure).

The operator's watches keep a small summary of each child Deployment and pod (the functions
below turn API objects into those summaries); `workload_conditions` turns them into the
Progressing / Available / Degraded conditions with the scheduler's message or the runtime's
diagnosis, so `kubectl describe md` says what to change. The progress deadline is the child
Deployment's own (progressDeadlineSeconds): its controller says when it has passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubeinfer import conditions as cond
from kubeinfer.api.v1alpha1 import Condition, ConditionStatus
from kubeinfer.render.children import POD_TEMPLATE_HASH

_OOM_REMEDY = "raise spec.resources.memory, or lower the context length (n_ctx / max_model_len)"
# How the runtime's termination message starts when the model could not be fetched.
FETCH_FAILURE_PREFIX = "cannot fetch "

# Container waiting reasons that mean the runtime keeps failing, not that it is starting.
_FAILING_WAIT_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "InvalidImageName",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class DeploymentSummary:
    generation: int
    observed_generation: int
    replicas: int
    ready_replicas: int
    updated_replicas: int
    template_hash: str | None
    # The Deployment controller's message once progressDeadlineSeconds passed without progress.
    deadline_exceeded: str | None = None


@dataclass(frozen=True)
class PodSummary:
    name: str
    template_hash: str | None
    phase: str
    unschedulable: str | None  # the scheduler's message while PodScheduled is False
    failure: str | None  # a terminated runtime's message, or why its container cannot start
    deleting: bool


def summarize_deployment(body: Mapping[str, Any]) -> DeploymentSummary:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status") or {}
    annotations = (spec.get("template", {}).get("metadata") or {}).get("annotations") or {}
    return DeploymentSummary(
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        replicas=int(spec.get("replicas", 1)),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        template_hash=annotations.get(POD_TEMPLATE_HASH),
        deadline_exceeded=_deadline_exceeded(status.get("conditions") or []),
    )


def _deadline_exceeded(conditions: Iterable[Mapping[str, Any]]) -> str | None:
    for condition in conditions:
        if condition.get("type") == "Progressing" and condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason") or "no progress")
    return None


def summarize_pod(body: Mapping[str, Any]) -> PodSummary:
    meta, status = body.get("metadata", {}), body.get("status") or {}
    unschedulable = None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            unschedulable = condition.get("message") or condition.get("reason") or "unschedulable"
    return PodSummary(
        name=str(meta.get("name", "")),
        template_hash=(meta.get("annotations") or {}).get(POD_TEMPLATE_HASH),
        phase=str(status.get("phase") or "Pending"),
        unschedulable=unschedulable,
        failure=_container_failure(status.get("containerStatuses") or []),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def _container_failure(statuses: Iterable[Mapping[str, Any]]) -> str | None:
    for container in statuses:
        state, last = container.get("state") or {}, container.get("lastState") or {}
        # A restarted container that runs and is ready again has recovered: its last crash is
        # history (lastState keeps it until the next one). While it restarts, it is the news.
        recovered = bool(state.get("running")) and bool(container.get("ready"))
        previous = None if recovered else last.get("terminated")
        for terminated in (state.get("terminated"), previous):
            if terminated and terminated.get("exitCode", 0) != 0:
                code = terminated.get("exitCode")
                if terminated.get("reason") == "OOMKilled":
                    # The kernel killed it at the memory limit: whatever the message holds is
                    # the log tail the kubelet fell back to, not the runtime's word.
                    return f"runtime exited with code {code} (OOMKilled) — {_OOM_REMEDY}"
                message = (terminated.get("message") or "").strip()
                if message:
                    return message.splitlines()[-1]
                return f"runtime exited with code {code}"
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _FAILING_WAIT_REASONS:
            return f"{waiting['reason']}: {waiting.get('message') or 'container cannot start'}"
    return None


def workload_conditions(
    deployment: DeploymentSummary | None,
    pods: Iterable[PodSummary],
    *,
    desired_hash: str | None,
    desired_replicas: int,
    generation: int | None,
    now: datetime,
) -> tuple[Condition, ...]:
    """Progressing, Available and Degraded for the current pod template."""
    current = sorted(
        (p for p in pods if not p.deleting and p.template_hash == desired_hash),
        key=lambda p: p.name,
    )
    ready = deployment.ready_replicas if deployment else 0
    available = cond.availability(ready, desired_replicas, generation=generation, now=now)
    pending = next((p for p in current if p.unschedulable), None)
    if pending and not cond.is_true((available,), cond.AVAILABLE):
        available = cond.condition(
            cond.AVAILABLE,
            "False",
            cond.UNSCHEDULABLE,
            f"pod {pending.name} cannot be scheduled: {pending.unschedulable}",
            generation=generation,
            now=now,
        )
    return (
        available,
        _progressing(deployment, pending, desired_hash, desired_replicas, generation, now),
        _degraded(current, generation, now),
    )


def _progressing(
    deployment: DeploymentSummary | None,
    pending: PodSummary | None,
    desired_hash: str | None,
    desired_replicas: int,
    generation: int | None,
    now: datetime,
) -> Condition:
    """True while the rollout moves or once it is complete (reason RolloutComplete); False
    only when the Deployment's progress deadline has passed. An unschedulable pod keeps it
    True until then: a node may still join, or another pod make room.

    The message changes with the ready count only (as Available's does): the Deployment's
    intermediate steps (observed, pods updated) would each cost a status write and tell a
    user nothing `kubectl rollout status` does not."""
    if deployment is None:
        return cond.condition(
            cond.PROGRESSING,
            "True",
            cond.DEPLOYING,
            _rolling_out(0, desired_replicas),
            generation=generation,
            now=now,
        )
    rolled_out = (
        pending is None
        and deployment.template_hash == desired_hash
        and deployment.observed_generation >= deployment.generation
        and deployment.updated_replicas >= deployment.replicas
        and deployment.ready_replicas >= deployment.replicas
    )
    if rolled_out:
        return cond.condition(
            cond.PROGRESSING,
            "True",
            cond.ROLLOUT_COMPLETE,
            "every replica runs the current spec",
            generation=generation,
            now=now,
        )
    status: ConditionStatus = "True"
    reason = cond.DEPLOYING
    message = _rolling_out(deployment.ready_replicas, deployment.replicas)
    if pending:
        reason = cond.UNSCHEDULABLE
        message = f"pod {pending.name} cannot be scheduled: {pending.unschedulable}"
    if deployment.deadline_exceeded:
        status, reason = "False", cond.PROGRESS_DEADLINE_EXCEEDED
        message = f"{deployment.deadline_exceeded}; {message}"
    return cond.condition(cond.PROGRESSING, status, reason, message, generation=generation, now=now)


def _rolling_out(ready: int, replicas: int) -> str:
    return f"rolling out the current spec: {ready}/{replicas} replicas ready"


def _degraded(current: list[PodSummary], generation: int | None, now: datetime) -> Condition:
    failing = next((p for p in current if p.failure), None)
    if failing:
        fetch = (failing.failure or "").startswith(FETCH_FAILURE_PREFIX)
        return cond.condition(
            cond.DEGRADED,
            "True",
            cond.MODEL_FETCH_FAILED if fetch else cond.ENGINE_FAILED,
            f"pod {failing.name}: {failing.failure}",
            generation=generation,
            now=now,
        )
    return cond.condition(
        cond.DEGRADED,
        "False",
        cond.AS_EXPECTED,
        "no runtime failures reported",
        generation=generation,
        now=now,
    )
