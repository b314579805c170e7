"""The Argo CD health check (integrations/argocd/health.lua), run by a real Lua interpreter on
statuses the operator computes, as Argo CD would run it on the live object."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lupa import LuaRuntime
from test_status import HASH, decision_for, model_deployment, pod, rolled_out

from kubeinfer.api.v1alpha1 import ModelDeploymentStatus
from kubeinfer.status import desired_status, invalid_spec_status
from kubeinfer.workload import DeploymentSummary

HEALTH_LUA = Path(__file__).parents[2] / "integrations" / "argocd" / "health.lua"
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    # Argo CD runs the script as a chunk with `obj` set and reads the returned table.
    result = lua.execute(HEALTH_LUA.read_text())
    return str(result["status"]), str(result["message"])


def live_object(status: ModelDeploymentStatus | None, generation: int = 4) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "qwen", "namespace": "models", "generation": generation},
    }
    if status is not None:
        obj["status"] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return obj


def status_of(deployment: DeploymentSummary | None, pods: list[Any], **model: Any) -> Any:
    md = model_deployment(**model)
    return desired_status(md, None, decision_for(md), HASH, deployment, pods, now=NOW)


@pytest.mark.parametrize(
    ("obj", "expected", "message"),
    [
        (live_object(status_of(rolled_out(), [pod()])), "Healthy", "1/1 replicas ready"),
        (
            live_object(status_of(None, [])),
            "Progressing",
            "ReplicasUnavailable: 0/1 replicas ready",
        ),
        (
            live_object(status_of(DeploymentSummary(2, 2, 2, 1, 2, HASH), [pod()])),
            "Progressing",
            "Deploying: rolling out the current spec: 1/2 replicas ready",
        ),
        (
            live_object(status_of(rolled_out(), [pod(failure="runtime exited with code 1")])),
            "Degraded",
            "EngineFailed: pod qwen-7d9f8c6b5-x2k4p: runtime exited with code 1",
        ),
        (
            live_object(status_of(None, [], format="mlx")),  # no Apple silicon node
            "Degraded",
            "NoEngineMatches: ",
        ),
        (
            live_object(invalid_spec_status("qwen", 4, None, "spec.engineParams.x", now=NOW)),
            "Degraded",
            "InvalidSpec: the spec is invalid",
        ),
        (live_object(None), "Progressing", "Waiting for the kubeinfer operator"),
        (
            live_object(status_of(rolled_out(), [pod()]), generation=5),
            "Progressing",
            "Waiting for the kubeinfer operator to observe the latest spec",
        ),
    ],
    ids=[
        "healthy",
        "creating",
        "scaling",
        "engine-failed",
        "missing-engine",
        "invalid-spec",
        "no-status",
        "new-generation",
    ],
)
def test_health(obj: dict[str, Any], expected: str, message: str) -> None:
    status, text = health(obj)
    assert status == expected
    assert text.startswith(message)


def test_past_the_progress_deadline_is_degraded() -> None:
    stalled = DeploymentSummary(2, 2, 1, 0, 1, HASH, deadline_exceeded="timed out progressing")
    status, text = health(live_object(status_of(stalled, [pod(phase="Pending")])))
    assert (status, text.split(":")[0]) == ("Degraded", "ProgressDeadlineExceeded")
