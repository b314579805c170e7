"""One reconcile, planned: from what the watches saw to the writes it needs and the status it
ends with (pure; `reconcile` does the writes).

`plan` decides and renders, and says for each child what to do (`drift.plan_child`);
`conclude` turns the plan, the workload and what the writes ran into (a name held by someone
else, a refused write, the model cache's state) into the status, its patch, the events to
post and the result to count. Nothing here talks to the API server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from kubeinfer import conditions as cond
from kubeinfer.api.problems import describe
from kubeinfer.api.v1alpha1 import (
    Condition,
    ConditionStatus,
    ModelDeployment,
    ModelDeploymentStatus,
)
from kubeinfer.decide import Decision, decide_for_classes, fingerprint
from kubeinfer.drift import Action, ChildState, Step, plan_child
from kubeinfer.nodes import NodeClass
from kubeinfer.params.check import describe as describe_params
from kubeinfer.params.check import problems as param_problems
from kubeinfer.render import ImageSettings, children
from kubeinfer.render.children import model_cache, template_hash
from kubeinfer.status import (
    ChildProblem,
    Event,
    desired_status,
    invalid_spec_status,
    status_patch,
    transition_events,
)
from kubeinfer.workload import DeploymentSummary, PodSummary

Result = Literal["changed", "unchanged", "error"]


@dataclass(frozen=True)
class Observed:
    """What a reconcile reads: the object as its watch has it, the status last written (the
    operator's own record, newer than a watch snapshot can be), and the children and pods as
    the watches (or a resync's reads) last saw them."""

    body: Mapping[str, Any]
    previous: ModelDeploymentStatus | None
    classes: Sequence[NodeClass]
    deployment: DeploymentSummary | None = None
    pods: Sequence[PodSummary] = ()
    live: Mapping[str, ChildState] | None = None  # by kind


@dataclass(frozen=True)
class Plan:
    """What to write. `invalid` is set (and nothing else is) when the spec is refused."""

    md: ModelDeployment | None
    decision: Decision | None
    steps: tuple[Step, ...] = ()  # the engine's children, in the order they are written
    cache: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None  # (PVC, download Job)
    template_hash: str | None = None
    invalid: str | None = None  # what is wrong with the spec, field by field
    decided_for: str | None = None  # the spec's fingerprint the decision was made for


@dataclass(frozen=True)
class Conclusion:
    status: ModelDeploymentStatus
    patch: dict[str, Any] | None  # None: the status is as it should be
    events: tuple[Event, ...]
    result: Result


# The engine of the last status and the spec fingerprint it was chosen for.
Kept = tuple[str | None, str | None]


class Renders:
    """The last plan of each ModelDeployment before its children are compared, reused while
    what it came from is the same (the object's uid, generation, labels and annotations, the
    node classes, the engine kept): a refresh for a child's event parses, decides and renders
    nothing again (the render's template hash alone, a JSON dump and a SHA-256 of the whole
    template, was a sixth of the operator's CPU). Not the resourceVersion: the operator's own
    status writes change it, and nothing rendered reads the status. One entry per
    ModelDeployment."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[tuple[Any, ...], Kept, Plan]] = {}
        # Per ModelDeployment, the live children last found in line with its rendering: a
        # child whose content is equal again (C-level ==) needs no field-by-field walk.
        self._in_line: dict[tuple[str, str], dict[str, ChildState]] = {}

    def get(self, key: tuple[str, str], source: tuple[Any, ...], kept: Kept) -> Plan | None:
        found = self._last.get(key)
        if found is None or found[0] != source:
            return None
        _, was_kept, planned = found
        # The status the plan itself wrote names the engine it chose: keeping that engine
        # decides the same (a kept engine that is also the first choice changes nothing).
        chose = (planned.decision.engine if planned.decision else None, planned.decided_for)
        return planned if kept in (was_kept, chose) else None

    def put(self, key: tuple[str, str], source: tuple[Any, ...], kept: Kept, planned: Plan) -> None:
        self._last[key] = (source, kept, planned)
        self._in_line.pop(key, None)

    def forget(self, key: tuple[str, str]) -> None:
        self._last.pop(key, None)
        self._in_line.pop(key, None)

    def step(
        self, key: tuple[str, str], desired: Mapping[str, Any], state: ChildState | None, owner: str
    ) -> Step:
        """plan_child for a refresh that applies no new spec, remembering a child found in
        line so that the same content next time is a comparison, not a walk."""
        known = self._in_line.setdefault(key, {})
        kind = desired["kind"]
        if state is not None and _same_child(known.get(kind), state):
            return Step(Action.NONE, desired, state, "")
        planned = plan_child(desired, state, owner, changed_spec=False)
        if planned.action is Action.NONE and state is not None:
            known[kind] = state
        else:
            known.pop(kind, None)
        return planned


def plan(
    observed: Observed,
    images: ImageSettings,
    *,
    apply_always: bool,
    renders: Renders | None = None,
) -> Plan:
    """Decides (keeping an engine chosen for this spec), checks the engine parameters and
    plans each child. `apply_always` (a new spec, an operator restart) writes every child;
    otherwise only those missing or drifted."""
    meta = observed.body.get("metadata") or {}
    previous = observed.previous
    key, generation = (
        (str(meta.get("namespace") or ""), str(meta.get("name"))),
        meta.get("generation"),
    )
    source = (
        meta.get("uid"),
        generation,
        _items(meta.get("labels")),
        _items(meta.get("annotations")),
        observed.classes,
    )
    kept = (previous.engine, previous.decided_for) if previous else (None, None)
    # Without a generation (a manifest, not an API object) nothing tells two versions apart.
    rendered = renders.get(key, source, kept) if renders is not None and generation else None
    if rendered is None:
        rendered = _render(observed, images)
        if renders is not None and generation:
            renders.put(key, source, kept, rendered)
    if rendered.md is None or rendered.decision is None or not rendered.steps:
        return rendered  # refused, or no engine: nothing to compare
    live = observed.live or {}
    owner = rendered.md.metadata.uid or ""
    if renders is not None and generation and not apply_always:
        steps = tuple(
            renders.step(key, step.obj, live.get(step.obj["kind"]), owner)
            for step in rendered.steps
        )
    else:
        steps = tuple(
            plan_child(step.obj, live.get(step.obj["kind"]), owner, changed_spec=apply_always)
            for step in rendered.steps
        )
    return replace(rendered, steps=steps)


def _same_child(known: ChildState | None, state: ChildState) -> bool:
    """The same child with the same content, whatever its resourceVersion (a status write)."""
    return known is not None and known.unversioned() == state.unversioned()


def _items(mapping: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((mapping or {}).items()))


def _render(observed: Observed, images: ImageSettings) -> Plan:
    """The plan up to its children's steps (each left CREATE with no live state)."""
    try:
        md = ModelDeployment.from_object(dict(observed.body))
    except ValidationError as error:
        return Plan(None, None, invalid=describe(error))
    previous = observed.previous
    decided_for = fingerprint(md.spec)
    kept = previous.engine if previous and previous.decided_for == decided_for else None
    decision = decide_for_classes(md.spec, observed.classes, keep_engine=kept)
    if decision.engine is None:
        return Plan(md, decision, decided_for=decided_for)
    bad = param_problems(decision.engine, decision.engine_params)
    if bad:
        # The engine would exit at start: refuse before creating or changing anything.
        return Plan(md, decision, invalid=describe_params(bad), decided_for=decided_for)
    objects = children(md, decision, images)
    return Plan(
        md,
        decision,
        tuple(Step(Action.CREATE, obj, None, "") for obj in objects),
        cache=model_cache(md, decision, images),
        template_hash=template_hash(objects[-1]),
        decided_for=decided_for,
    )


def conclude(
    observed: Observed,
    planned: Plan,
    *,
    problem: ChildProblem | None,
    cache: Condition | None,
    applied: bool,
    now: datetime,
) -> Conclusion:
    """The status after the writes: `problem` is the first child that could not be brought
    in line, `cache` the model cache's condition (with spec.model.cache)."""
    previous = observed.previous
    meta = observed.body["metadata"]
    if planned.invalid is not None or planned.md is None or planned.decision is None:
        status = invalid_spec_status(
            meta["name"], meta.get("generation"), previous, planned.invalid or "", now=now
        )
        return _conclusion(previous, status, applied=False, problem=None)
    md, decision = planned.md, planned.decision
    status = desired_status(
        md,
        previous,
        decision,
        planned.template_hash,
        observed.deployment,
        observed.pods,
        problem=problem,
        now=now,
    )
    if cache is not None:
        status = _with_cache(status, cache, md.metadata.generation, now, waiting=problem is None)
    status = status.model_copy(update={"decided_for": planned.decided_for})
    return _conclusion(previous, status, applied=applied, problem=problem)


def _conclusion(
    previous: ModelDeploymentStatus | None,
    status: ModelDeploymentStatus,
    *,
    applied: bool,
    problem: ChildProblem | None,
) -> Conclusion:
    patch = status_patch(previous, status)
    events = transition_events(previous, status) if patch is not None else ()
    result: Result = "error" if problem else "changed" if applied or patch else "unchanged"
    return Conclusion(status, patch, events, result)


def _with_cache(
    status: ModelDeploymentStatus,
    cache: Condition,
    generation: int | None,
    now: datetime,
    *,
    waiting: bool,
) -> ModelDeploymentStatus:
    """The ModelCache condition; until the cache is filled (and the Deployment written),
    Available and Progressing say that the engine waits for it, and a failed download is
    Degraded with the runtime's reason."""
    conditions = cond.set_condition(status.conditions, cache)
    if cache.status == "True" or not waiting:
        return status.model_copy(update={"conditions": conditions})
    failed = cache.reason == cond.DOWNLOAD_FAILED
    states: list[tuple[str, ConditionStatus, str]] = [
        (cond.AVAILABLE, "False", cond.WAITING_FOR_MODEL_CACHE),
        (cond.PROGRESSING, "False" if failed else "True", cond.WAITING_FOR_MODEL_CACHE),
    ]
    if failed:
        states.append((cond.DEGRADED, "True", cond.MODEL_FETCH_FAILED))
    for type_, state, reason in states:
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
