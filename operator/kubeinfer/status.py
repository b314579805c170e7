"""The whole ModelDeployment status from the decision and the workload (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubeinfer import conditions as cond
from kubeinfer.api.v1alpha1 import (
    Condition,
    ConditionStatus,
    ModelDeployment,
    ModelDeploymentStatus,
)
from kubeinfer.decide import Decision
from kubeinfer.render import endpoint_url, selector
from kubeinfer.workload import DeploymentSummary, PodSummary, workload_conditions


@dataclass(frozen=True)
class ChildProblem:
    """A child kubeinfer could not bring in line: a name conflict or a refused write."""

    reason: str
    message: str


def desired_status(
    md: ModelDeployment,
    previous: ModelDeploymentStatus | None,
    decision: Decision,
    desired_hash: str | None,
    deployment: DeploymentSummary | None,
    pods: Iterable[PodSummary],
    *,
    problem: ChildProblem | None = None,
    now: datetime,
) -> ModelDeploymentStatus:
    """What the status should say now; lastTransitionTime is kept where nothing changed."""
    generation = md.metadata.generation
    selected = cond.engine_selected(decision, generation=generation, now=now)
    new: list[Condition] = [selected]
    if decision.engine is None:
        # Nothing can be rolled out: not available, and no progress until the spec or the
        # nodes change (EngineSelected says which).
        new += [
            cond.condition(
                type_, "False", selected.reason, selected.message, generation=generation, now=now
            )
            for type_ in (cond.AVAILABLE, cond.PROGRESSING)
        ]
    else:
        new += workload_conditions(
            deployment,
            pods,
            desired_hash=desired_hash,
            desired_replicas=md.spec.replicas,
            generation=generation,
            now=now,
        )
    if decision.engine is not None and problem is not None:
        # A child that is missing or differs: never Available, and Degraded says which.
        pairs: tuple[tuple[str, ConditionStatus], ...] = (
            (cond.AVAILABLE, "False"),
            (cond.DEGRADED, "True"),
        )
        for type_, status in pairs:
            new.append(
                cond.condition(
                    type_, status, problem.reason, problem.message, generation=generation, now=now
                )
            )
    conditions = previous.conditions if previous else ()
    if decision.engine is None:
        # Without an engine there is no workload of this spec that could be degraded.
        conditions = tuple(c for c in conditions if c.type != cond.DEGRADED)
    for condition in new:
        conditions = cond.set_condition(conditions, condition)
    conditions = cond.set_condition(
        conditions, cond.ready(conditions, generation=generation, now=now)
    )
    return ModelDeploymentStatus(
        engine=decision.engine,
        candidates=decision.candidates,
        placement=decision.placement_status(),
        endpoint=endpoint_url(md) if decision.engine else None,
        # Before the Deployment is seen, the replicas it was just given (a write less).
        replicas=deployment.replicas if deployment else md.spec.replicas if decision.engine else 0,
        ready_replicas=deployment.ready_replicas if deployment else 0,
        selector=selector(md.metadata.name),
        observed_generation=generation,
        conditions=conditions,
    )


def invalid_spec_status(
    name: str,
    generation: int | None,
    previous: ModelDeploymentStatus | None,
    problems: str,
    *,
    now: datetime,
) -> ModelDeploymentStatus:
    """A spec the operator refuses: nothing was changed, so the workload's conditions stay
    as they were (an older spec may still serve); Ready is False until the spec is fixed."""
    invalid = cond.condition(
        cond.ENGINE_SELECTED,
        "False",
        cond.INVALID_SPEC,
        f"the spec is invalid and nothing was changed:\n{problems}",
        generation=generation,
        now=now,
    )
    kept = previous or ModelDeploymentStatus()
    conditions = cond.set_condition(kept.conditions, invalid)
    if cond.find(conditions, cond.AVAILABLE) is None:
        unavailable = invalid.model_copy(update={"type": cond.AVAILABLE})
        conditions = cond.set_condition(conditions, unavailable)
    conditions = cond.set_condition(
        conditions, cond.ready(conditions, generation=generation, now=now)
    )
    return kept.model_copy(
        update={
            "conditions": conditions,
            "observed_generation": generation,
            "selector": selector(name),
        }
    )


def status_patch(
    current: ModelDeploymentStatus | None, desired: ModelDeploymentStatus
) -> dict[str, Any] | None:
    """The merge patch that turns `current` into `desired`, or None when they agree. It holds
    only the top-level fields that changed (the candidates' trace and the placement are
    written once, not with every replica count); lists such as conditions go whole, as a
    merge patch replaces them."""
    old = current.model_dump(mode="json", by_alias=True) if current else {}
    new = desired.model_dump(mode="json", by_alias=True)
    # Fields that disappear are nulled, so a merge patch removes them.
    patch = {key: None for key in old if key not in new}
    patch |= {key: value for key, value in new.items() if key not in old or old[key] != value}
    return patch or None


@dataclass(frozen=True)
class Event:
    """A Kubernetes event to post about the ModelDeployment."""

    warning: bool
    reason: str
    message: str


def transition_events(
    previous: ModelDeploymentStatus | None, current: ModelDeploymentStatus
) -> tuple[Event, ...]:
    """Events for what changed: a newly chosen engine, and each condition that turned bad
    (no engine, a failing runtime, pods the scheduler cannot place). Repeats stay silent."""
    events: list[Event] = []
    before = previous.conditions if previous else ()
    selected = cond.find(current.conditions, cond.ENGINE_SELECTED)
    if current.engine and current.engine != (previous.engine if previous else None) and selected:
        events.append(Event(False, "EngineSelected", selected.message))
    for new in current.conditions:
        if not _is_failure(new):
            continue
        old = cond.find(before, new.type)
        if old is None or (old.status, old.reason) != (new.status, new.reason):
            events.append(Event(True, new.reason, new.message))
    return tuple(events)


def _is_failure(condition: Condition) -> bool:
    return (
        (condition.type == cond.ENGINE_SELECTED and condition.status == "False")
        or (condition.type == cond.DEGRADED and condition.status == "True")
        or (condition.type == cond.AVAILABLE and condition.reason == cond.UNSCHEDULABLE)
        or (
            condition.type == cond.PROGRESSING
            and condition.reason == cond.PROGRESS_DEADLINE_EXCEEDED
        )
    )
