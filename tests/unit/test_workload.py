"""The workload's conditions from Deployment and Pod objects as the apiserver returns them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubeinfer import conditions as c
from kubeinfer.api.v1alpha1 import Condition
from kubeinfer.render.children import POD_TEMPLATE_HASH
from kubeinfer.workload import (
    DeploymentSummary,
    PodSummary,
    summarize_deployment,
    summarize_pod,
    workload_conditions,
)

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
CURRENT, OLD = "3f2a9c1d7b6e5a40", "9e8d7c6b5a493827"
SCHEDULER_MESSAGE = (
    "0/8 nodes are available: 2 Insufficient nvidia.com/gpu, 6 node(s) didn't match Pod's node "
    "affinity/selector. preemption: 0/8 nodes are available: 2 No preemption victims found for "
    "incoming pod, 6 Preemption is not helpful for scheduling."
)
KV_CACHE_FULL = (
    "llama.cpp: the KV cache is full — lower n_ctx, raise n_parallel or lower n_gpu_layers"
)


def deployment_object(
    *,
    generation: int = 2,
    observed: int = 2,
    replicas: int = 1,
    ready: int = 1,
    updated: int = 1,
    template_hash: str = CURRENT,
) -> dict[str, Any]:
    """A child Deployment as read back from the apiserver (trimmed to what matters)."""
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "replicas": replicas,
        "updatedReplicas": updated,
        "unavailableReplicas": replicas - ready,
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": 'ReplicaSet "qwen-gguf-cpu-7d9f8c6b5" has successfully progressed.',
                "lastUpdateTime": "2025-03-04T05:00:00Z",
                "lastTransitionTime": "2025-03-04T05:00:00Z",
            }
        ],
    }
    if ready:
        status |= {"readyReplicas": ready, "availableReplicas": ready}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "qwen-gguf-cpu",
            "namespace": "models",
            "uid": "5b0c1e0a-2f43-4f0a-8a8e-1f6d1c7b9e21",
            "generation": generation,
            "labels": {
                "app.kubernetes.io/name": "kubeinfer-runtime",
                "app.kubernetes.io/instance": "qwen-gguf-cpu",
                "app.kubernetes.io/managed-by": "kubeinfer",
            },
        },
        "spec": {
            "replicas": replicas,
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "kubeinfer-runtime",
                    "app.kubernetes.io/instance": "qwen-gguf-cpu",
                }
            },
            "template": {
                "metadata": {
                    "labels": {
                        "app.kubernetes.io/name": "kubeinfer-runtime",
                        "app.kubernetes.io/instance": "qwen-gguf-cpu",
                    },
                    "annotations": {POD_TEMPLATE_HASH: template_hash},
                },
                "spec": {"containers": [{"name": "runtime", "image": "r/llamacpp:0.1.0"}]},
            },
        },
        "status": status,
    }


def pod_object(
    name: str = "qwen-gguf-cpu-7d9f8c6b5-x2k4p",
    *,
    template_hash: str = CURRENT,
    phase: str = "Running",
    conditions: list[dict[str, Any]] | None = None,
    container: dict[str, Any] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """A runtime pod; `container` overrides its containerStatuses entry."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "models",
        "uid": "0c7e3c55-9a11-4c0e-b8a5-4e4e0f3b2d11",
        "labels": {
            "app.kubernetes.io/name": "kubeinfer-runtime",
            "app.kubernetes.io/instance": "qwen-gguf-cpu",
            "pod-template-hash": "7d9f8c6b5",
        },
        "annotations": {POD_TEMPLATE_HASH: template_hash},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "qwen-gguf-cpu-7d9f8c6b5",
                "uid": "f1d6c3a2-0b9e-4f7d-8c5a-3e2d1c0b9a87",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if deleting:
        metadata |= {"deletionTimestamp": "2025-03-04T05:06:00Z", "deletionGracePeriodSeconds": 30}
    running = {
        "name": "runtime",
        "image": "r/llamacpp:0.1.0",
        "imageID": "r/llamacpp@sha256:" + "0" * 64,
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": "2025-03-04T05:01:00Z"}},
        "lastState": {},
    }
    status: dict[str, Any] = {
        "phase": phase,
        "qosClass": "Burstable",
        "conditions": conditions
        if conditions is not None
        else [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": "2025-03-04T05:00:01Z",
            },
            {
                "type": "Ready",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": "2025-03-04T05:01:30Z",
            },
        ],
    }
    if phase != "Pending" or container is not None:
        status["containerStatuses"] = [running | (container or {})]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"nodeName": "cpu-0"},
        "status": status,
    }


def unschedulable_pod(name: str = "qwen-gguf-cpu-7d9f8c6b5-p8zq2", **kw: Any) -> dict[str, Any]:
    return pod_object(
        name,
        phase="Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": SCHEDULER_MESSAGE,
                "lastProbeTime": None,
                "lastTransitionTime": "2025-03-04T05:00:01Z",
            }
        ],
        **kw,
    )


def crash_looping(message: str | None, exit_code: int = 1, **terminated: Any) -> dict[str, Any]:
    """containerStatuses of a runtime that exited and waits to be restarted."""
    last: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": "Error",
        "startedAt": "2025-03-04T05:02:00Z",
        "finishedAt": "2025-03-04T05:02:09Z",
        "containerID": "containerd://" + "a" * 64,
        **terminated,
    }
    if message is not None:
        last["message"] = message
    return {
        "ready": False,
        "started": False,
        "restartCount": 4,
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 1m20s restarting failed container=runtime "
                "pod=qwen-gguf-cpu-7d9f8c6b5-x2k4p_models(0c7e3c55-9a11-4c0e-b8a5-4e4e0f3b2d11)",
            }
        },
        "lastState": {"terminated": last},
    }


def conditions_for(
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    *,
    desired_replicas: int = 1,
) -> dict[str, Condition]:
    found = workload_conditions(
        summarize_deployment(deployment) if deployment else None,
        [summarize_pod(p) for p in pods],
        desired_hash=CURRENT,
        desired_replicas=desired_replicas,
        generation=5,
        now=NOW,
    )
    assert [x.type for x in found] == [c.AVAILABLE, c.PROGRESSING, c.DEGRADED]
    for condition in found:
        assert condition.observed_generation == 5
        assert condition.last_transition_time == "2025-03-04T05:06:07Z"
    return {x.type: x for x in found}


def status_reason(condition: Condition) -> tuple[str, str]:
    return condition.status, condition.reason


# ------------------------------------------------------------------------------ summaries


def test_deployment_summary() -> None:
    summary = summarize_deployment(
        deployment_object(generation=3, observed=2, replicas=2, ready=1, updated=1)
    )
    assert summary == DeploymentSummary(
        generation=3,
        observed_generation=2,
        replicas=2,
        ready_replicas=1,
        updated_replicas=1,
        template_hash=CURRENT,
    )


def test_a_just_created_deployment_has_no_status_yet() -> None:
    body = deployment_object()
    del body["status"]
    del body["spec"]["replicas"]  # the apiserver defaults it to 1
    summary = summarize_deployment(body)
    assert (summary.replicas, summary.ready_replicas, summary.updated_replicas) == (1, 0, 0)
    assert summary.observed_generation == 0


def test_pod_summaries() -> None:
    assert summarize_pod(pod_object()) == PodSummary(
        name="qwen-gguf-cpu-7d9f8c6b5-x2k4p",
        template_hash=CURRENT,
        phase="Running",
        unschedulable=None,
        failure=None,
        deleting=False,
    )
    pending = summarize_pod(unschedulable_pod())
    assert (pending.phase, pending.unschedulable) == ("Pending", SCHEDULER_MESSAGE)
    assert summarize_pod(pod_object(deleting=True)).deleting


def test_a_pod_with_no_status_yet_is_pending() -> None:
    body = pod_object()
    del body["status"]
    summary = summarize_pod(body)
    assert (summary.phase, summary.unschedulable, summary.failure) == ("Pending", None, None)


@pytest.mark.parametrize(
    ("container", "failure"),
    [
        # The runtime's diagnosis, the last line of its termination message.
        (crash_looping(f"engine output follows\n{KV_CACHE_FULL}\n"), KV_CACHE_FULL),
        # A crash without a message: the exit code at least.
        (crash_looping(None, exit_code=2), "runtime exited with code 2"),
        # Killed by the kernel for exceeding its memory limit: the reason says it, also over
        # the log tail the kubelet puts in the message (FallbackToLogsOnError).
        *(
            (
                crash_looping(message, exit_code=137, reason="OOMKilled"),
                "runtime exited with code 137 (OOMKilled) — raise spec.resources.memory, "
                "or lower the context length (n_ctx / max_model_len)",
            )
            for message in (None, "INFO kubeinfer-runtime: n_gpu_layers: no GPU devices\n")
        ),
        # Exited cleanly but keeps being restarted: the kubelet's back-off is the news.
        (
            crash_looping(None, exit_code=0, reason="Completed"),
            "CrashLoopBackOff: back-off 1m20s restarting failed container=runtime "
            "pod=qwen-gguf-cpu-7d9f8c6b5-x2k4p_models(0c7e3c55-9a11-4c0e-b8a5-4e4e0f3b2d11)",
        ),
        # Terminated right now (not restarted yet), with the diagnosis.
        (
            {
                "ready": False,
                "state": {
                    "terminated": {"exitCode": 1, "reason": "Error", "message": KV_CACHE_FULL}
                },
            },
            KV_CACHE_FULL,
        ),
        (
            {
                "ready": False,
                "state": {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": 'Back-off pulling image "r/llamacpp:0.1.0"',
                    }
                },
            },
            'ImagePullBackOff: Back-off pulling image "r/llamacpp:0.1.0"',
        ),
        (
            {"ready": False, "state": {"waiting": {"reason": "CreateContainerConfigError"}}},
            "CreateContainerConfigError: container cannot start",
        ),
        # Starting up is not a failure.
        ({"ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}, None),
        # Restarted after a crash and loading the model again: the crash is still the news.
        (
            {
                "ready": False,
                "restartCount": 1,
                "lastState": {"terminated": {"exitCode": 1, "message": KV_CACHE_FULL}},
            },
            KV_CACHE_FULL,
        ),
        # Ready again after a crash: recovered, although lastState keeps the old crash.
        (
            {
                "ready": True,
                "restartCount": 1,
                "lastState": {"terminated": {"exitCode": 1, "message": KV_CACHE_FULL}},
            },
            None,
        ),
    ],
    ids=[
        "diagnosis",
        "exit-code",
        "oom-killed",
        "oom-killed-with-log-tail",
        "clean-exit-backoff",
        "terminated-now",
        "image-pull",
        "config-error",
        "creating",
        "restarting",
        "recovered",
    ],
)
def test_pod_failures(container: dict[str, Any], failure: str | None) -> None:
    assert summarize_pod(pod_object(container=container)).failure == failure


# ------------------------------------------------------------------------------ conditions


ROLLING_OUT = "rolling out the current spec"


def test_no_deployment_yet() -> None:
    found = conditions_for(None, [])
    assert status_reason(found[c.PROGRESSING]) == ("True", c.DEPLOYING)
    assert found[c.PROGRESSING].message == "rolling out the current spec: 0/1 replicas ready"
    assert status_reason(found[c.AVAILABLE]) == ("False", c.REPLICAS_UNAVAILABLE)
    assert status_reason(found[c.DEGRADED]) == ("False", c.AS_EXPECTED)


def test_rollout_complete() -> None:
    found = conditions_for(
        deployment_object(replicas=2, ready=2, updated=2),
        [pod_object("a"), pod_object("b")],
        desired_replicas=2,
    )
    assert status_reason(found[c.AVAILABLE]) == ("True", c.MINIMUM_REPLICAS_AVAILABLE)
    assert found[c.AVAILABLE].message == "2/2 replicas ready"
    assert status_reason(found[c.PROGRESSING]) == ("True", c.ROLLOUT_COMPLETE)
    assert status_reason(found[c.DEGRADED]) == ("False", c.AS_EXPECTED)


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        (deployment_object(replicas=2, ready=1, updated=1), f"{ROLLING_OUT}: 1/2 replicas ready"),
        # The Deployment controller has not seen the latest spec yet.
        (deployment_object(generation=3, observed=2), f"{ROLLING_OUT}: 1/1 replicas ready"),
        # The Deployment still runs the previous pod template.
        (deployment_object(template_hash=OLD), f"{ROLLING_OUT}: 1/1 replicas ready"),
        # Observed, its pod made, nothing ready: as before the Deployment was seen.
        (deployment_object(ready=0), f"{ROLLING_OUT}: 0/1 replicas ready"),
    ],
    ids=["half-updated", "not-observed", "old-template", "not-ready"],
)
def test_deploying(deployment: dict[str, Any], message: str) -> None:
    found = conditions_for(
        deployment, [pod_object()], desired_replicas=deployment["spec"]["replicas"]
    )
    assert status_reason(found[c.PROGRESSING]) == ("True", c.DEPLOYING)
    assert found[c.PROGRESSING].message == message


def test_unschedulable_carries_the_schedulers_message() -> None:
    found = conditions_for(deployment_object(ready=0, updated=1), [unschedulable_pod()])
    message = f"pod qwen-gguf-cpu-7d9f8c6b5-p8zq2 cannot be scheduled: {SCHEDULER_MESSAGE}"
    assert status_reason(found[c.AVAILABLE]) == ("False", c.UNSCHEDULABLE)
    assert found[c.AVAILABLE].message == message
    # Still progressing: a node may join or a pod make room before the deadline.
    assert status_reason(found[c.PROGRESSING]) == ("True", c.UNSCHEDULABLE)
    assert found[c.PROGRESSING].message == message
    assert status_reason(found[c.DEGRADED]) == ("False", c.AS_EXPECTED)


def test_past_the_progress_deadline_progressing_turns_false() -> None:
    stalled = deployment_object(ready=0, updated=1)
    stalled["status"]["conditions"] = [
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "qwen-gguf-cpu-7d9f8c6b5" has timed out progressing.',
        }
    ]
    found = conditions_for(stalled, [unschedulable_pod()])
    assert status_reason(found[c.PROGRESSING]) == ("False", c.PROGRESS_DEADLINE_EXCEEDED)
    assert found[c.PROGRESSING].message == (
        'ReplicaSet "qwen-gguf-cpu-7d9f8c6b5" has timed out progressing.; '
        f"pod qwen-gguf-cpu-7d9f8c6b5-p8zq2 cannot be scheduled: {SCHEDULER_MESSAGE}"
    )


def test_a_scale_up_keeps_the_model_available() -> None:
    """Like a Deployment's MinimumReplicasAvailable: the new replicas are not awaited."""
    found = conditions_for(
        deployment_object(generation=3, observed=3, replicas=3, ready=1, updated=3),
        [pod_object("a"), unschedulable_pod("b"), pod_object("c", phase="Pending")],
        desired_replicas=3,
    )
    assert status_reason(found[c.AVAILABLE]) == ("True", c.MINIMUM_REPLICAS_AVAILABLE)
    assert found[c.AVAILABLE].message == "1/3 replicas ready"
    assert status_reason(found[c.PROGRESSING]) == ("True", c.UNSCHEDULABLE)


def test_a_pending_new_pod_does_not_hide_that_the_old_ones_serve() -> None:
    """A rolling update to a bigger GPU request: old pods still serve, the new one waits."""
    found = conditions_for(
        deployment_object(generation=3, observed=3, replicas=1, ready=1, updated=1),
        [pod_object("old", template_hash=OLD), unschedulable_pod("new")],
    )
    assert status_reason(found[c.AVAILABLE]) == ("True", c.MINIMUM_REPLICAS_AVAILABLE)
    assert status_reason(found[c.PROGRESSING]) == ("True", c.UNSCHEDULABLE)
    assert "pod new cannot be scheduled: 0/8 nodes are available" in found[c.PROGRESSING].message


def test_degraded_with_the_runtimes_diagnosis() -> None:
    failing = pod_object(
        "qwen-gguf-cpu-7d9f8c6b5-x2k4p", container=crash_looping(f"loading model\n{KV_CACHE_FULL}")
    )
    found = conditions_for(deployment_object(ready=0), [failing])
    assert status_reason(found[c.DEGRADED]) == ("True", c.ENGINE_FAILED)
    assert found[c.DEGRADED].message == f"pod qwen-gguf-cpu-7d9f8c6b5-x2k4p: {KV_CACHE_FULL}"
    assert status_reason(found[c.AVAILABLE]) == ("False", c.REPLICAS_UNAVAILABLE)


def test_a_model_the_runtime_cannot_fetch_is_named() -> None:
    why = (
        "cannot fetch hf://org/gated/m.gguf from https://huggingface.co: org/gated is gated and "
        "no HF_TOKEN is set — put a token allowed to read it in a Secret and pass it as HF_TOKEN"
    )
    found = conditions_for(deployment_object(ready=0), [pod_object(container=crash_looping(why))])
    assert status_reason(found[c.DEGRADED]) == ("True", c.MODEL_FETCH_FAILED)
    assert "is gated and no HF_TOKEN is set" in found[c.DEGRADED].message


def test_crash_loop_without_a_message_is_degraded() -> None:
    failing = pod_object(container=crash_looping(None, exit_code=0, reason="Completed"))
    found = conditions_for(deployment_object(ready=0), [failing])
    assert status_reason(found[c.DEGRADED]) == ("True", c.ENGINE_FAILED)
    assert "CrashLoopBackOff: back-off 1m20s" in found[c.DEGRADED].message


def test_the_first_failing_pod_by_name_is_reported() -> None:
    pods = [
        pod_object("qwen-b", container=crash_looping("b failed")),
        pod_object("qwen-a", container=crash_looping("a failed")),
    ]
    found = conditions_for(deployment_object(replicas=2, ready=0), pods, desired_replicas=2)
    assert found[c.DEGRADED].message == "pod qwen-a: a failed"
    reversed_ = conditions_for(
        deployment_object(replicas=2, ready=0), pods[::-1], desired_replicas=2
    )
    assert reversed_ == found


def test_pods_of_an_old_template_or_being_deleted_are_ignored() -> None:
    pods = [
        pod_object("old-crashing", template_hash=OLD, container=crash_looping(KV_CACHE_FULL)),
        unschedulable_pod("old-pending", template_hash=OLD),
        pod_object("going", container=crash_looping(KV_CACHE_FULL), deleting=True),
        pod_object("current"),
    ]
    found = conditions_for(deployment_object(), pods)
    assert status_reason(found[c.DEGRADED]) == ("False", c.AS_EXPECTED)
    assert status_reason(found[c.PROGRESSING]) == ("True", c.ROLLOUT_COMPLETE)
    assert status_reason(found[c.AVAILABLE]) == ("True", c.MINIMUM_REPLICAS_AVAILABLE)


def test_scaled_to_zero() -> None:
    found = conditions_for(
        deployment_object(replicas=0, ready=0, updated=0), [], desired_replicas=0
    )
    assert status_reason(found[c.AVAILABLE]) == ("True", c.SCALED_TO_ZERO)
    assert status_reason(found[c.PROGRESSING]) == ("True", c.ROLLOUT_COMPLETE)
