"""Standard status conditions for ModelDeployment: types, reasons and pure helpers.

Conditions follow metav1.Condition and mean what a Deployment's do: Available is True while
the model is served (at least MIN_AVAILABLE_REPLICAS ready, or none asked for); Progressing
is True while a rollout moves or has completed, and False only past the progress deadline or
when nothing can be rolled out; Ready sums them up for kstatus, Flux and `kubectl wait`.
`set_condition` keeps lastTransitionTime when the status does not change, so rewriting the
same condition never looks like a transition.
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
MODEL_CACHE = "ModelCache"
READY = "Ready"

# Reasons (CamelCase, as Kubernetes expects)
ENGINE_CHOSEN = "EngineChosen"
NO_ENGINE_MATCHES = "NoEngineMatches"
REQUESTED_ENGINE_CANNOT_RUN = "RequestedEngineCannotRun"
INVALID_SPEC = "InvalidSpec"
DEPLOYING = "Deploying"
ROLLOUT_COMPLETE = "RolloutComplete"
# The child Deployment made no progress within its progressDeadlineSeconds.
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
UNSCHEDULABLE = "Unschedulable"
MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
SCALED_TO_ZERO = "ScaledToZero"
ENGINE_FAILED = "EngineFailed"
# The runtime could not fetch the model (hub refusal, bad revision, full disk).
MODEL_FETCH_FAILED = "ModelFetchFailed"
AS_EXPECTED = "AsExpected"
# The model cache (spec.model.cache): its download Job's state.
DOWNLOADING = "Downloading"
CACHE_READY = "Ready"
DOWNLOAD_FAILED = "DownloadFailed"
WAITING_FOR_MODEL_CACHE = "WaitingForModelCache"
# A child's name is held by an object this ModelDeployment does not control.
NAME_CONFLICT = "NameConflict"
# The API server refused a child (its message is in the condition).
APPLY_FAILED = "ApplyFailed"

# One ready replica serves the endpoint: scaling up, or replacing pods one by one, keeps the
# model Available (the READY column and `kubectl wait` do not flicker); Ready waits for all.
MIN_AVAILABLE_REPLICAS = 1


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
    reason = REQUESTED_ENGINE_CANNOT_RUN if decision.requested else NO_ENGINE_MATCHES
    return condition(
        ENGINE_SELECTED, "False", reason, decision.reason, generation=generation, now=now
    )


def availability(ready: int, desired: int, *, generation: int | None, now: datetime) -> Condition:
    """Available from replica counts: True while at least the minimum is ready (a Deployment
    scaled to 0 is available too: nothing is missing)."""
    if desired == 0:
        message = "spec.replicas is 0"
        return condition(AVAILABLE, "True", SCALED_TO_ZERO, message, generation=generation, now=now)
    message = f"{ready}/{desired} replicas ready"
    if ready >= min(desired, MIN_AVAILABLE_REPLICAS):
        return condition(
            AVAILABLE, "True", MINIMUM_REPLICAS_AVAILABLE, message, generation=generation, now=now
        )
    return condition(
        AVAILABLE, "False", REPLICAS_UNAVAILABLE, message, generation=generation, now=now
    )


def ready(conditions: Sequence[Condition], *, generation: int | None, now: datetime) -> Condition:
    """The summary: True when an engine was chosen, the rollout is complete, the model is
    available and nothing is degraded; otherwise False with the first blocking condition's
    reason and message (in the order a user fixes them)."""
    blocking = (
        (ENGINE_SELECTED, "False"),
        (DEGRADED, "True"),
        (PROGRESSING, "False"),
        (AVAILABLE, "False"),
    )
    for type_, bad in blocking:
        found = find(conditions, type_)
        if found is not None and found.status == bad:
            return condition(
                READY, "False", found.reason, found.message, generation=generation, now=now
            )
    progressing = find(conditions, PROGRESSING)
    if progressing is not None and progressing.reason != ROLLOUT_COMPLETE:
        return condition(
            READY,
            "False",
            progressing.reason,
            progressing.message,
            generation=generation,
            now=now,
        )
    available = find(conditions, AVAILABLE)
    scaled_to_zero = available is not None and available.reason == SCALED_TO_ZERO
    reason = SCALED_TO_ZERO if scaled_to_zero else ROLLOUT_COMPLETE
    message = available.message if available is not None else ""
    return condition(READY, "True", reason, message, generation=generation, now=now)
