"""Standard status conditions for ModelDeployment: types, reasons and pure helpers.

Conditions follow metav1.Condition. `set_condition` keeps lastTransitionTime when the
status does not change, so rewriting the same condition never looks like a transition.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from kubeinfer.api.v1alpha1 import Condition, ConditionStatus
from kubeinfer.decide import Decision

# Types
ENGINE_SELECTED = "EngineSelected"
PROGRESSING = "Progressing"
AVAILABLE = "Available"
DEGRADED = "Degraded"

# Reasons (CamelCase, as Kubernetes expects)
ENGINE_CHOSEN = "EngineChosen"
NO_ENGINE_MATCHES = "NoEngineMatches"
REQUESTED_ENGINE_CANNOT_RUN = "RequestedEngineCannotRun"
INVALID_SPEC = "InvalidSpec"
DEPLOYING = "Deploying"
ROLLOUT_COMPLETE = "RolloutComplete"
UNSCHEDULABLE = "Unschedulable"
MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
SCALED_TO_ZERO = "ScaledToZero"
ENGINE_FAILED = "EngineFailed"
AS_EXPECTED = "AsExpected"
# A child's name is held by an object this ModelDeployment does not control.
NAME_CONFLICT = "NameConflict"
# The API server refused a child (its message is in the condition).
APPLY_FAILED = "ApplyFailed"


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC, second precision, as Kubernetes writes times."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime,
) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=timestamp(now),
    )


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def set_condition(conditions: Sequence[Condition], new: Condition) -> tuple[Condition, ...]:
    """`conditions` with `new` in place of the same type (appended when absent).

    The previous lastTransitionTime is kept when the status is unchanged.
    """
    old = find(conditions, new.type)
    if old is not None and old.status == new.status:
        new = new.model_copy(update={"last_transition_time": old.last_transition_time})
    if old is None:
        return (*conditions, new)
    return tuple(new if c.type == new.type else c for c in conditions)


def engine_selected(decision: Decision, *, generation: int | None, now: datetime) -> Condition:
    """EngineSelected from a decision: True with the engine, or False with why not."""
    if decision.engine is not None:
        return condition(
            ENGINE_SELECTED, "True", ENGINE_CHOSEN, decision.reason, generation=generation, now=now
        )
    forced = decision.reason.startswith("spec.engine asks for")
    reason = REQUESTED_ENGINE_CANNOT_RUN if forced else NO_ENGINE_MATCHES
    return condition(
        ENGINE_SELECTED, "False", reason, decision.reason, generation=generation, now=now
    )


def availability(ready: int, desired: int, *, generation: int | None, now: datetime) -> Condition:
    """Available from replica counts: True when every desired replica is ready."""
    if desired == 0:
        return condition(
            AVAILABLE, "False", SCALED_TO_ZERO, "spec.replicas is 0", generation=generation, now=now
        )
    if ready >= desired:
        message = f"{ready}/{desired} replicas ready"
        return condition(
            AVAILABLE, "True", MINIMUM_REPLICAS_AVAILABLE, message, generation=generation, now=now
        )
    message = f"{ready}/{desired} replicas ready"
    return condition(
        AVAILABLE, "False", REPLICAS_UNAVAILABLE, message, generation=generation, now=now
    )
