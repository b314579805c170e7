"""Condition helpers: transitions keep their time only when the status really changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from unit_helpers import cpu, spec

from kubeinfer import conditions as c
from kubeinfer.api.v1alpha1 import ModelDeploymentSpec
from kubeinfer.decide import decide
from kubeinfer.nodes import node_facts

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_same_status_keeps_the_transition_time() -> None:
    first = c.availability(0, 1, generation=1, now=T0)
    again = c.availability(0, 2, generation=2, now=T1)
    (kept,) = c.set_condition((first,), again)
    assert kept.last_transition_time == "2025-01-02T03:04:05Z"
    assert (kept.message, kept.observed_generation) == ("0/2 replicas ready", 2)


def test_new_status_moves_the_transition_time() -> None:
    first = c.availability(0, 1, generation=1, now=T0)
    (now_ready,) = c.set_condition((first,), c.availability(1, 1, generation=1, now=T1))
    assert now_ready.status == "True"
    assert now_ready.reason == c.MINIMUM_REPLICAS_AVAILABLE
    assert now_ready.last_transition_time == c.timestamp(T1)


def test_other_types_are_left_alone_and_order_is_stable() -> None:
    progressing = c.condition(c.PROGRESSING, "True", c.DEPLOYING, "", generation=1, now=T0)
    available = c.availability(1, 1, generation=1, now=T0)
    updated = c.set_condition((progressing, available), c.availability(0, 1, generation=1, now=T1))
    assert [x.type for x in updated] == [c.PROGRESSING, c.AVAILABLE]
    assert updated[0] is progressing
    assert c.is_true(updated, c.PROGRESSING) and not c.is_true(updated, c.AVAILABLE)
    assert c.find(updated, c.DEGRADED) is None


def test_engine_selected_from_decisions() -> None:
    facts = [node_facts(cpu())]
    chosen = decide(ModelDeploymentSpec.model_validate(spec(sizeInBillions=1)), facts)
    assert c.engine_selected(chosen, generation=3, now=T0).reason == c.ENGINE_CHOSEN
    none = decide(ModelDeploymentSpec.model_validate(spec(format="mlx")), facts)
    assert c.engine_selected(none, generation=3, now=T0).reason == c.NO_ENGINE_MATCHES
    forced = decide(ModelDeploymentSpec.model_validate(spec(spec_engine="vllm")), facts)
    condition = c.engine_selected(forced, generation=3, now=T0)
    assert (condition.status, condition.reason) == ("False", c.REQUESTED_ENGINE_CANNOT_RUN)
    assert condition.message == forced.reason
    # The reason follows Decision.requested, not the wording of the message.
    reworded = forced.model_copy(update={"reason": "something else entirely"})
    assert c.engine_selected(reworded, generation=3, now=T0).reason == (
        c.REQUESTED_ENGINE_CANNOT_RUN
    )


def test_scaled_to_zero() -> None:
    assert c.availability(0, 0, generation=1, now=T0).reason == c.SCALED_TO_ZERO


def test_timestamps_are_utc() -> None:
    plus_two = datetime(2025, 1, 2, 7, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert c.timestamp(plus_two) == "2025-01-02T05:04:05Z"
