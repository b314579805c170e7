"""The operator's metrics as Prometheus scrapes them: per-ModelDeployment series that name the
object (so alerts can), process metrics and build info."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_status import HASH, decision_for, model_deployment, pod, rolled_out

from kubeinfer import metrics
from kubeinfer.status import desired_status

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_conditions_per_model_deployment_like_kube_state_metrics() -> None:
    md = model_deployment()
    running = desired_status(md, None, decision_for(md), HASH, rolled_out(), [pod()], now=NOW)
    failing = desired_status(
        md, None, decision_for(md), HASH, rolled_out(), [pod(failure="OOMKilled")], now=NOW
    )
    registry = CollectorRegistry()
    registry.register(
        metrics.ConditionsCollector(lambda: [(("models", "qwen"), running), (("b", "x"), failing)])
    )
    samples = scrape(registry)

    def condition(ns: str, name: str, type_: str, status: str) -> float:
        labels = {
            "namespace": ns,
            "name": name,
            "engine": "llama.cpp",
            "condition": type_,
            "status": status,
        }
        key = ("kubeinfer_modeldeployment_status_condition", tuple(sorted(labels.items())))
        return samples[key]

    assert condition("models", "qwen", "Ready", "True") == 1
    assert condition("models", "qwen", "Ready", "False") == 0
    assert condition("models", "qwen", "Ready", "Unknown") == 0
    assert condition("b", "x", "Degraded", "True") == 1
    reason = (
        "kubeinfer_modeldeployment_status_reason",
        (("condition", "Degraded"), ("name", "x"), ("namespace", "b"), ("reason", "EngineFailed")),
    )
    assert samples[reason] == 1
    replicas = (
        "kubeinfer_modeldeployment_ready_replicas",
        (("name", "qwen"), ("namespace", "models")),
    )
    assert samples[replicas] == 1
    total = ("kubeinfer_modeldeployments", (("condition", "Available"), ("status", "True")))
    assert samples[total] == 2


def test_a_scrape_shows_each_status_as_last_written_and_drops_deleted_objects() -> None:
    md = model_deployment()
    running = desired_status(md, None, decision_for(md), HASH, rolled_out(), [pod()], now=NOW)
    failing = desired_status(
        md, None, decision_for(md), HASH, rolled_out(), [pod(failure="OOMKilled")], now=NOW
    )
    current = {("models", "qwen"): running, ("b", "x"): running}
    registry = CollectorRegistry()
    registry.register(metrics.ConditionsCollector(lambda: list(current.items())))
    degraded = (
        "kubeinfer_modeldeployment_status_condition",
        tuple(
            sorted(
                {
                    "namespace": "b",
                    "name": "x",
                    "engine": "llama.cpp",
                    "condition": "Degraded",
                    "status": "True",
                }.items()
            )
        ),
    )
    assert scrape(registry)[degraded] == 0
    current[("b", "x")] = failing  # a status written since the last scrape
    assert scrape(registry)[degraded] == 1
    assert scrape(registry)[degraded] == 1  # and again, unchanged
    del current[("b", "x")]  # deleted
    assert not [key for key in scrape(registry) if ("name", "x") in key[1]]


def test_process_and_build_info(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    monkeypatch.setattr(metrics, "REGISTRY", registry)
    metrics.register(lambda: [], lambda: [], lambda: [(("ns", "md"), 3)])
    samples = scrape(registry)
    names = {name for name, _ in samples}
    assert {"process_resident_memory_bytes", "process_start_time_seconds"} <= names
    (info,) = [dict(labels) for name, labels in samples if name == "kubeinfer_build_info"]
    assert info["version"] == "0.1.0"
    assert set(info) == {"version", "kopf_version", "python_version"}
    failures = (
        "kubeinfer_modeldeployment_reconcile_failures",
        (("name", "md"), ("namespace", "ns")),
    )
    assert samples[failures] == 3
