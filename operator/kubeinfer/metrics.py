"""The operator's Prometheus metrics (one registry, served by prometheus-client).

Per ModelDeployment, the way kube-state-metrics reports Deployments: one series per condition
and status (1 for the current status, 0 for the others) labelled with namespace and name, so
an alert names the object; the condition's reason separately (it changes more often). Scrape
them with honor_labels (the chart's ServiceMonitor does): `namespace` is the object's.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import NamedTuple

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubeinfer.api.v1alpha1 import ConditionStatus, ModelDeploymentStatus
from kubeinfer.nodes import NodeFacts

REGISTRY = CollectorRegistry()

RECONCILES = Counter(
    "kubeinfer_reconciles",
    "ModelDeployment reconciles by result (changed, unchanged, error; skipped: the same inputs "
    "as the last one, which changed nothing) and trigger.",
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


Key = tuple[str, str]
STATUSES: tuple[ConditionStatus, ...] = ("True", "False", "Unknown")


class ConditionsCollector(Collector):
    """The ModelDeployments' conditions, read at scrape time from the statuses the operator
    last wrote, so deleted objects drop out by themselves:

    kubeinfer_modeldeployments{condition, status}: how many (the fleet at a glance);
    kubeinfer_modeldeployment_status_condition{namespace, name, engine, condition, status};
    kubeinfer_modeldeployment_status_reason{namespace, name, condition, reason};
    kubeinfer_modeldeployment_replicas / _ready_replicas{namespace, name}.
    """

    def __init__(self, statuses: Callable[[], Iterable[tuple[Key, ModelDeploymentStatus]]]):
        self._statuses = statuses
        # Each object's samples, kept while its status is the same object (the operator
        # replaces a status when it writes one): a scrape of a quiet fleet builds nothing.
        self._built: dict[Key, tuple[ModelDeploymentStatus, _Samples]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = GaugeMetricFamily(
            "kubeinfer_modeldeployments",
            "ModelDeployments by condition and status.",
            labels=["condition", "status"],
        )
        families = _families()
        totals: dict[tuple[str, str], int] = {}
        built: dict[Key, tuple[ModelDeploymentStatus, _Samples]] = {}
        for key, status in sorted(self._statuses(), key=lambda item: item[0]):
            for condition in status.conditions:
                pair = (condition.type, condition.status)
                totals[pair] = totals.get(pair, 0) + 1
            found = self._built.get(key)
            if found is None or found[0] is not status:
                found = (status, _object_samples(key, status))
            built[key] = found
            for family, samples in zip(families, found[1], strict=True):
                family.samples.extend(samples.samples)
        self._built = built  # objects gone since the last scrape drop out
        for (type_, current), count in sorted(totals.items()):
            counts.add_metric([type_, current], count)
        yield from (counts, *families)


class _Samples(NamedTuple):
    """One family each: conditions, reasons, replicas, ready replicas."""

    conditions: GaugeMetricFamily
    reasons: GaugeMetricFamily
    replicas: GaugeMetricFamily
    ready: GaugeMetricFamily


def _families() -> _Samples:
    return _Samples(
        GaugeMetricFamily(
            "kubeinfer_modeldeployment_status_condition",
            "The current status of each ModelDeployment condition (1), the others 0.",
            labels=["namespace", "name", "engine", "condition", "status"],
        ),
        GaugeMetricFamily(
            "kubeinfer_modeldeployment_status_reason",
            "The reason of each ModelDeployment condition (always 1).",
            labels=["namespace", "name", "condition", "reason"],
        ),
        GaugeMetricFamily(
            "kubeinfer_modeldeployment_replicas",
            "Replicas of the ModelDeployment's Deployment.",
            labels=["namespace", "name"],
        ),
        GaugeMetricFamily(
            "kubeinfer_modeldeployment_ready_replicas",
            "Ready replicas of the ModelDeployment's Deployment.",
            labels=["namespace", "name"],
        ),
    )


def _object_samples(key: Key, status: ModelDeploymentStatus) -> _Samples:
    """One ModelDeployment's samples."""
    namespace, name = key
    own = _families()
    engine = status.engine or ""
    for condition in status.conditions:
        for value in STATUSES:
            own.conditions.add_metric(
                [namespace, name, engine, condition.type, value],
                1 if value == condition.status else 0,
            )
        own.reasons.add_metric([namespace, name, condition.type, condition.reason], 1)
    own.replicas.add_metric([namespace, name], status.replicas)
    own.ready.add_metric([namespace, name], status.ready_replicas)
    return own


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


class FailuresCollector(Collector):
    """kubeinfer_modeldeployment_reconcile_failures{namespace, name}: reconciles that failed in
    a row (a write refused, a child held by another object); 0 again after a success."""

    def __init__(self, failures: Callable[[], Iterable[tuple[Key, int]]]) -> None:
        self._failures = failures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kubeinfer_modeldeployment_reconcile_failures",
            "Reconciles of the ModelDeployment that failed in a row (absent after a success).",
            labels=["namespace", "name"],
        )
        for (namespace, name), count in sorted(self._failures()):
            family.add_metric([namespace, name], count)
        yield family


def register(
    statuses: Callable[[], Iterable[tuple[Key, ModelDeploymentStatus]]],
    nodes: Callable[[], Iterable[NodeFacts | None]],
    failures: Callable[[], Iterable[tuple[Key, int]]],
) -> None:
    """Adds the scrape-time collectors, the process metrics (CPU, memory, open files, start
    time) and kubeinfer_build_info to REGISTRY; called once, at operator start-up."""
    REGISTRY.register(ConditionsCollector(statuses))
    REGISTRY.register(NodesCollector(nodes))
    REGISTRY.register(FailuresCollector(failures))
    ProcessCollector(registry=REGISTRY)
    PlatformCollector(registry=REGISTRY)
    Info("kubeinfer_build", "The running kubeinfer operator.", registry=REGISTRY).info(
        {
            "version": _version("kubeinfer"),
            "kopf_version": _version("kopf"),
            "python_version": platform.python_version(),
        }
    )


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
