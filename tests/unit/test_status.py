"""The whole ModelDeployment status, and the merge patch that writes it only when it changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from unit_helpers import cpu, h100, spec

from kubeinfer import conditions as c
from kubeinfer.api.v1alpha1 import ModelDeployment, ModelDeploymentStatus
from kubeinfer.decide import Decision, decide
from kubeinfer.nodes import node_facts
from kubeinfer.status import (
    desired_status,
    invalid_spec_status,
    status_patch,
    transition_events,
)
from kubeinfer.workload import DeploymentSummary, PodSummary

T0 = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
T1 = T0 + timedelta(minutes=3)
HASH = "3f2a9c1d7b6e5a40"
GGUF = {"format": "gguf", "quantization": "Q4_K_M", "file": "m.gguf", "sizeInBillions": 1}
NODES = [node_facts(cpu("cpu-0")), node_facts(cpu("cpu-1")), node_facts(h100("h100-0"))]


def model_deployment(generation: int = 4, **model: Any) -> ModelDeployment:
    return ModelDeployment.from_object(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": "qwen",
                "namespace": "models",
                "generation": generation,
                "uid": "0b8f3c2e-5d2a-4f5e-9a51-6a3c1d2e4f70",
            },
            "spec": spec(**(model or {**GGUF, "spec_resources": {"gpus": 0}})),
        }
    )


def decision_for(md: ModelDeployment) -> Decision:
    return decide(md.spec, NODES)


def rolled_out(replicas: int = 1) -> DeploymentSummary:
    return DeploymentSummary(
        generation=2,
        observed_generation=2,
        replicas=replicas,
        ready_replicas=replicas,
        updated_replicas=replicas,
        template_hash=HASH,
    )


def pod(name: str = "qwen-7d9f8c6b5-x2k4p", **kw: Any) -> PodSummary:
    fields: dict[str, Any] = {
        "template_hash": HASH,
        "phase": "Running",
        "unschedulable": None,
        "failure": None,
        "deleting": False,
    }
    return PodSummary(name=name, **(fields | kw))


def running_status(md: ModelDeployment, now: datetime = T0) -> ModelDeploymentStatus:
    return desired_status(md, None, decision_for(md), HASH, rolled_out(), [pod()], now=now)


def types(status: ModelDeploymentStatus) -> list[str]:
    return [x.type for x in status.conditions]


# ------------------------------------------------------------------------------ desired_status


def test_status_of_a_running_deployment() -> None:
    md = model_deployment()
    status = running_status(md)
    assert status.engine == "llama.cpp"
    assert status.endpoint == "http://qwen.models.svc:8000/v1"
    assert status.placement is not None and status.placement.accelerator == "cpu"
    assert status.candidates == decision_for(md).candidates
    assert (status.replicas, status.ready_replicas) == (1, 1)
    assert status.selector == (
        "app.kubernetes.io/instance=qwen,app.kubernetes.io/name=kubeinfer-runtime"
    )
    assert status.observed_generation == 4
    assert types(status) == [c.ENGINE_SELECTED, c.AVAILABLE, c.PROGRESSING, c.DEGRADED, c.READY]
    assert all(x.observed_generation == 4 for x in status.conditions)
    assert c.is_true(status.conditions, c.ENGINE_SELECTED)
    assert c.is_true(status.conditions, c.AVAILABLE)
    assert not c.is_true(status.conditions, c.DEGRADED)
    ready = c.find(status.conditions, c.READY)
    assert ready is not None and (ready.status, ready.reason) == ("True", c.ROLLOUT_COMPLETE)


def test_before_the_deployment_exists() -> None:
    md = model_deployment()
    status = desired_status(md, None, decision_for(md), HASH, None, [], now=T0)
    assert status.engine == "llama.cpp"
    # The replicas the Deployment was just given: seeing it adds nothing to write.
    assert (status.replicas, status.ready_replicas) == (1, 0)
    progressing = c.find(status.conditions, c.PROGRESSING)
    assert progressing is not None and progressing.reason == c.DEPLOYING
    seen = DeploymentSummary(1, 1, 1, 0, 1, HASH)
    assert (
        status_patch(status, desired_status(md, status, decision_for(md), HASH, seen, [], now=T0))
        is None
    )


def test_no_engine_is_neither_available_nor_progressing() -> None:
    """A spec change that no engine can run drops the workload's report and endpoint; the
    READY column and `kubectl wait --for=condition=Available` still get an answer."""
    running = running_status(model_deployment())
    md = model_deployment(generation=5, format="mlx")  # MLX needs Apple silicon: none here
    decision = decision_for(md)
    assert decision.engine is None
    # The old Deployment is still there until it is cleaned up; it must not be reported on.
    status = desired_status(md, running, decision, None, rolled_out(), [pod()], now=T1)
    assert types(status) == [c.ENGINE_SELECTED, c.AVAILABLE, c.PROGRESSING, c.READY]
    for condition in status.conditions:
        assert (condition.status, condition.reason) == ("False", c.NO_ENGINE_MATCHES)
        assert condition.message == decision.reason
        assert condition.observed_generation == 5
        assert condition.last_transition_time == c.timestamp(T1)
    assert (status.engine, status.endpoint, status.placement) == (None, None, None)
    assert status.candidates == decision.candidates


def test_a_forced_engine_that_cannot_run_says_so() -> None:
    md = model_deployment(spec_engine="vllm", spec_resources={"gpus": 1})  # no GPU node fits
    decision = decide(md.spec, [node_facts(cpu())])
    status = desired_status(md, None, decision, None, None, [], now=T0)
    assert {(x.type, x.status, x.reason) for x in status.conditions} == {
        (type_, "False", c.REQUESTED_ENGINE_CANNOT_RUN)
        for type_ in (c.ENGINE_SELECTED, c.AVAILABLE, c.PROGRESSING, c.READY)
    }


@pytest.mark.parametrize(
    ("deployment", "pods", "replicas", "expected"),
    [
        (None, [], 1, ("False", c.REPLICAS_UNAVAILABLE)),
        (rolled_out(), [pod()], 1, ("True", c.ROLLOUT_COMPLETE)),
        (rolled_out(0), [], 0, ("True", c.SCALED_TO_ZERO)),
        (rolled_out(), [pod(failure="OOMKilled")], 1, ("False", c.ENGINE_FAILED)),
        # Scaling 1 -> 2: still Available, not yet Ready.
        (
            DeploymentSummary(3, 3, 2, 1, 2, HASH),
            [pod(), pod("b", phase="Pending")],
            2,
            ("False", c.DEPLOYING),
        ),
    ],
    ids=["creating", "rolled-out", "scaled-to-zero", "failing", "scaling-up"],
)
def test_ready_sums_up(
    deployment: DeploymentSummary | None,
    pods: list[PodSummary],
    replicas: int,
    expected: tuple[str, str],
) -> None:
    md = model_deployment()
    md = md.model_copy(update={"spec": md.spec.model_copy(update={"replicas": replicas})})
    status = desired_status(md, None, decision_for(md), HASH, deployment, pods, now=T0)
    ready = c.find(status.conditions, c.READY)
    assert ready is not None and (ready.status, ready.reason) == expected


def test_an_invalid_spec_is_not_ready_and_keeps_the_workloads_report() -> None:
    running = running_status(model_deployment())
    status = invalid_spec_status("qwen", 5, running, "spec.engineParams.x: unknown", now=T1)
    assert c.is_true(status.conditions, c.AVAILABLE)  # the previous spec still serves
    ready = c.find(status.conditions, c.READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", c.INVALID_SPEC)
    assert status.observed_generation == 5
    fresh = invalid_spec_status("qwen", 1, None, "spec.engineParams.x: unknown", now=T1)
    available = c.find(fresh.conditions, c.AVAILABLE)
    assert available is not None and (available.status, available.reason) == (
        "False",
        c.INVALID_SPEC,
    )


def test_transition_times_are_kept_while_nothing_changes() -> None:
    md = model_deployment()
    first = running_status(md, now=T0)
    again = desired_status(md, first, decision_for(md), HASH, rolled_out(), [pod()], now=T1)
    assert again == first
    assert status_patch(first, again) is None


def test_a_changed_condition_moves_only_its_own_time() -> None:
    md = model_deployment()
    first = running_status(md, now=T0)
    failing = pod(failure="llama.cpp: out of memory — lower n_ctx or n_gpu_layers")
    later = desired_status(md, first, decision_for(md), HASH, rolled_out(), [failing], now=T1)
    degraded = c.find(later.conditions, c.DEGRADED)
    assert degraded is not None and degraded.status == "True"
    assert degraded.last_transition_time == c.timestamp(T1)
    ready = c.find(later.conditions, c.READY)  # the summary follows Degraded
    assert ready is not None and ready.last_transition_time == c.timestamp(T1)
    unchanged = [x for x in later.conditions if x.type not in (c.DEGRADED, c.READY)]
    assert {x.last_transition_time for x in unchanged} == {c.timestamp(T0)}
    assert types(later) == types(first)


# ------------------------------------------------------------------------------ status_patch


def test_first_status_is_written_whole() -> None:
    status = running_status(model_deployment())
    patch = status_patch(None, status)
    assert patch == status.model_dump(mode="json", by_alias=True)
    assert patch is not None and patch["engine"] == "llama.cpp"
    assert "readyReplicas" in patch and "observedGeneration" in patch  # wire (camelCase) names


def test_equal_status_gives_no_patch() -> None:
    status = running_status(model_deployment())
    copy = ModelDeploymentStatus.model_validate(status.model_dump(mode="json", by_alias=True))
    assert status_patch(status, copy) is None


def test_only_changed_fields_are_sent() -> None:
    md = model_deployment()
    first = running_status(md)
    later = first.model_copy(update={"ready_replicas": first.ready_replicas + 1})
    assert status_patch(first, later) == {"readyReplicas": first.ready_replicas + 1}


def test_removed_values_are_nulled_so_the_merge_patch_deletes_them() -> None:
    running = running_status(model_deployment())
    md = model_deployment(generation=5, format="mlx")
    gone = desired_status(md, running, decision_for(md), None, None, [], now=T1)
    patch = status_patch(running, gone)
    assert patch is not None
    for key in ("engine", "endpoint", "placement"):
        assert key in patch and patch[key] is None, key
    # Lists are replaced whole by a merge patch: Degraded (of the old workload) disappears.
    assert [x["type"] for x in patch["conditions"]] == [
        c.ENGINE_SELECTED,
        c.AVAILABLE,
        c.PROGRESSING,
        c.READY,
    ]
    assert patch["observedGeneration"] == 5


def test_keys_the_new_status_lacks_are_nulled() -> None:
    """A status written by another version can carry keys this one does not write."""

    class OlderStatus(ModelDeploymentStatus):
        retired_field: str | None = "left over"

    current = OlderStatus.model_validate(running_status(model_deployment()).model_dump())
    patch = status_patch(current, running_status(model_deployment()))
    assert patch == {"retired_field": None}


def test_events_announce_a_new_engine_once() -> None:
    md = model_deployment()
    first = running_status(md)
    events = transition_events(None, first)
    assert [(e.warning, e.reason) for e in events] == [(False, "EngineSelected")]
    assert events[0].message.startswith("llama.cpp")
    assert transition_events(first, running_status(md, now=T1)) == ()


def test_events_warn_when_a_condition_turns_bad_and_not_again() -> None:
    md = model_deployment()
    healthy = running_status(md)
    failing_pod = pod(failure="KV cache full — lower n_ctx")
    failing = desired_status(
        md, healthy, decision_for(md), HASH, rolled_out(), [failing_pod], now=T1
    )
    events = transition_events(healthy, failing)
    assert [(e.warning, e.reason) for e in events] == [(True, c.ENGINE_FAILED)]
    assert "KV cache full" in events[0].message
    assert transition_events(failing, failing) == ()


def test_events_warn_about_pods_the_scheduler_cannot_place() -> None:
    md = model_deployment()
    stuck = pod(phase="Pending", unschedulable="0/8 nodes are available: Insufficient cpu")
    status = desired_status(md, None, decision_for(md), HASH, None, [stuck], now=T0)
    reasons = [e.reason for e in transition_events(None, status) if e.warning]
    assert c.UNSCHEDULABLE in reasons
