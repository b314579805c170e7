"""The operator's Prometheus metrics (one registry, served by prometheus-client)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubeinfer.api.v1alpha1 import ModelDeploymentStatus
from kubeinfer.nodes import NodeFacts

REGISTRY = CollectorRegistry()

RECONCILES = Counter(
    "kubeinfer_reconciles",
    "ModelDeployment reconciles by result and trigger.",
    ["result", "trigger"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "kubeinfer_reconcile_duration_seconds",
    "Time of one reconcile (decide, render, apply, status).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
DECISIONS = Counter(
    "kubeinfer_decisions",
    "Engine decisions that changed a ModelDeployment's engine.",
    ["engine"],
    registry=REGISTRY,
)


class ConditionsCollector(Collector):
    """kubeinfer_modeldeployments{condition, status}: counted at scrape time from the
    statuses the operator last wrote, so deleted objects drop out by themselves."""

    def __init__(self, statuses: Callable[[], Iterable[ModelDeploymentStatus]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kubeinfer_modeldeployments",
            "ModelDeployments by condition and status.",
            labels=["condition", "status"],
        )
        counts: dict[tuple[str, str], int] = {}
        for status in list(self._statuses()):
            for condition in status.conditions:
                key = (condition.type, condition.status)
                counts[key] = counts.get(key, 0) + 1
        for (type_, value), count in sorted(counts.items()):
            family.add_metric([type_, value], count)
        yield family


class NodesCollector(Collector):
    """kubeinfer_nodes{gpu_vendor, gpu_product, schedulable}: the nodes as the operator
    sees them (what its decisions are made on), counted at scrape time."""

    def __init__(self, nodes: Callable[[], Iterable[NodeFacts | None]]) -> None:
        self._nodes = nodes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kubeinfer_nodes",
            "Nodes the operator sees, by GPU vendor and product and whether pods may land.",
            labels=["gpu_vendor", "gpu_product", "schedulable"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for facts in list(self._nodes()):
            if facts is None:
                continue
            p = facts.profile
            key = (p.gpu_vendor, p.gpu_product or "", str(p.schedulable).lower())
            counts[key] = counts.get(key, 0) + 1
        for labels, count in sorted(counts.items()):
            family.add_metric(list(labels), count)
        yield family
