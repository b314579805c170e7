"""kopf wiring: indexes over the cluster, and thin handlers that call `reconcile`.

Every trigger funnels into one reconcile per ModelDeployment, serialised by a lock per
object: spec changes and restarts (create/update/resume) re-apply the children; events of
the child Deployment and pods queue a status refresh (bursts share one); node changes
re-evaluate only the ModelDeployments that are still waiting for an engine. Nothing here
lists objects: the indexes, fed by kopf's watches, hold what a reconcile reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from prometheus_client import start_http_server

from kubeinfer import metrics
from kubeinfer.api.v1alpha1 import GROUP, PLURAL, VERSION, ModelDeploymentStatus
from kubeinfer.kube import Kube
from kubeinfer.nodes import NodeClass, NodeFacts, node_classes, node_facts
from kubeinfer.reconcile import Outcome, parse_status, reconcile
from kubeinfer.render import ImageSettings
from kubeinfer.workload import summarize_deployment, summarize_pod

MD = (GROUP, VERSION, PLURAL)
PREFIX = "kubeinfer.io"
MANAGED = {"app.kubernetes.io/managed-by": "kubeinfer"}
INSTANCE = "app.kubernetes.io/instance"
Key = tuple[str, str]
# Node changes within this window share one re-evaluation of the waiting ModelDeployments.
NODE_SETTLE_SECONDS = 1.0
# Child events within this window share one status refresh (a rollout is a burst of them).
CHILD_SETTLE_SECONDS = 0.5
# A refresh that failed (the API briefly unavailable) is tried again after this long.
RETRY_SECONDS = 5.0
logger = logging.getLogger(__name__)


@dataclass
class Controller:
    """What every handler shares. kopf hands each object a shallow copy of the memo, so
    state that is reassigned (not only mutated) must live in one object they all point to."""

    kube: Kube
    images: ImageSettings
    locks: defaultdict[Key, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    # The status each ModelDeployment was last given: newer than a watch snapshot can be.
    statuses: dict[Key, ModelDeploymentStatus] = field(default_factory=dict)
    node_facts: dict[str, NodeFacts | None] = field(default_factory=dict)
    # Grouped once per change of the nodes, not once per reconcile.
    node_classes: tuple[NodeClass, ...] | None = None
    nodes_dirty: bool = False  # nodes changed since waiting ModelDeployments last looked
    node_pass: asyncio.Task[None] | None = None
    queued: set[Key] = field(default_factory=set)  # refreshes waiting to run
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # keeps them referenced

    def set_node(self, name: str, facts: NodeFacts | None) -> None:
        if self.node_facts.get(name) != facts:
            self.node_facts[name] = facts
            self.node_classes = None
            self.nodes_dirty = True

    def classes(self) -> tuple[NodeClass, ...]:
        if self.node_classes is None:
            self.node_classes = node_classes(f for f in self.node_facts.values() if f)
        return self.node_classes


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = memo.get("watch_timeout", 300)
    settings.watching.client_timeout = memo.get("watch_timeout", 300) + 30
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    settings.execution.max_workers = memo.get("workers", 16)
    # kopf keeps a worker per object for a while after its last event; with thousands of
    # pods and nodes, short-lived workers keep memory flat.
    settings.batching.idle_timeout = 1.0
    # Reconciles block on HTTP calls; a wider pool than the CPU count keeps them flowing.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=memo.get("workers", 16), thread_name_prefix="reconcile")
    )
    ctl = Controller(kube=Kube.connect(), images=memo.get("images") or ImageSettings())
    memo.controller = ctl
    metrics.REGISTRY.register(metrics.ConditionsCollector(lambda: ctl.statuses.values()))
    metrics.REGISTRY.register(metrics.NodesCollector(lambda: ctl.node_facts.values()))
    if memo.get("metrics_port"):
        start_http_server(memo.metrics_port, registry=metrics.REGISTRY)


# --- indexes: what reconciles read instead of asking the API -------------------------------


@kopf.index("nodes")
async def node_index(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Indexing nodes makes kopf start the handlers only once it has seen them all; the
    facts the decisions use are kept by the controller, updated here before any handler."""
    memo.controller.set_node(name, node_facts(body))


@kopf.index(*MD)
async def md_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace or "", name): _snapshot(body)}


@kopf.index(*MD)
async def waiting_index(
    namespace: str | None, name: str, status: kopf.Status, **_: Any
) -> dict[str, Key]:
    return {} if status.get("engine") else {"waiting": (namespace or "", name)}


# kopf runs sync handlers in threads: these are async so that they run in the event loop,
# where they may touch the controller and queue work. The children's indexers also queue
# their owner's status refresh: kopf calls them for every event anyway, and a separate watch
# handler per event would double the work.


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
async def deployment_index(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **indexes: Any
) -> dict[Key, Any]:
    key = (namespace or "", labels.get(INSTANCE, ""))
    _queue_refresh(memo.controller, key, indexes, trigger="child")
    return {key: summarize_deployment(body)}


@kopf.index("pods", labels=MANAGED)
async def pod_index(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **indexes: Any
) -> dict[Key, Any]:
    key = (namespace or "", labels.get(INSTANCE, ""))
    _queue_refresh(memo.controller, key, indexes, trigger="child")
    return {key: summarize_pod(body)}


# --- handlers ------------------------------------------------------------------------------


@kopf.on.resume(*MD, backoff=5)
@kopf.on.create(*MD, backoff=5)
@kopf.on.update(*MD, backoff=5)
async def on_spec(
    body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **indexes: Any
) -> None:
    """A new or changed spec, or an operator restart: decide, apply everything, report."""
    key = (namespace or "", name)
    await _run(memo.controller, key, _snapshot(body), indexes, apply_always=True, trigger="spec")


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("pods", labels=MANAGED)
async def on_child_deleted(
    namespace: str | None, labels: kopf.Labels, type: str | None, memo: kopf.Memo, **indexes: Any
) -> None:
    """kopf runs no indexer for a deletion: a deleted child (a Deployment removed by hand,
    an evicted pod) queues the owner's refresh here."""
    if type == "DELETED":
        key = (namespace or "", labels.get(INSTANCE, ""))
        _queue_refresh(memo.controller, key, indexes, trigger="child")


@kopf.on.event("nodes")
async def on_node(name: str, type: str | None, memo: kopf.Memo, **indexes: Any) -> None:
    """New or relabelled nodes: ModelDeployments still waiting for an engine try again."""
    ctl: Controller = memo.controller
    if type == "DELETED":
        ctl.set_node(name, None)  # kopf runs no indexer for a deletion
    if not ctl.nodes_dirty:
        return  # a heartbeat: nothing the decision reads has changed
    # Nodes come in bursts (start-up lists them all, a scale-up adds many): one pass over the
    # waiting ModelDeployments per burst, not one per node.
    if ctl.node_pass is None or ctl.node_pass.done():
        ctl.node_pass = asyncio.create_task(_reevaluate_waiting(ctl, indexes))


@kopf.on.event(*MD)
async def forget_deleted(
    namespace: str | None, name: str, type: str | None, memo: kopf.Memo, **_: Any
) -> None:
    if type == "DELETED":
        ctl: Controller = memo.controller
        key = (namespace or "", name)
        ctl.statuses.pop(key, None)
        ctl.locks.pop(key, None)


async def _reevaluate_waiting(ctl: Controller, indexes: dict[str, Any]) -> None:
    """Refreshes the waiting ModelDeployments until no node has changed since the last pass
    (the indexes are live views, so a pass sees every node that arrived before it)."""
    while ctl.nodes_dirty:
        await asyncio.sleep(NODE_SETTLE_SECONDS)
        ctl.nodes_dirty = False
        for key in sorted(set(indexes["waiting_index"].get("waiting", ()))):
            _queue_refresh(ctl, key, indexes, trigger="nodes", settle=0)


# --- the shared path -----------------------------------------------------------------------


def _queue_refresh(
    ctl: Controller,
    key: Key,
    indexes: dict[str, Any],
    *,
    trigger: str,
    settle: float = CHILD_SETTLE_SECONDS,
) -> None:
    """At most one queued refresh per ModelDeployment: later events join it, and it reads
    the indexes as they are when it runs. Events during a run queue the next one."""
    if key in ctl.queued:
        return
    ctl.queued.add(key)
    task = asyncio.create_task(_queued_refresh(ctl, key, indexes, trigger, settle))
    ctl.tasks.add(task)
    task.add_done_callback(ctl.tasks.discard)


async def _queued_refresh(
    ctl: Controller, key: Key, indexes: dict[str, Any], trigger: str, settle: float
) -> None:
    await asyncio.sleep(settle)
    ctl.queued.discard(key)
    store = indexes["md_index"].get(key)
    snapshot = next(iter(store), None) if store else None
    if snapshot is None:
        return  # the owner is gone; garbage collection takes the children
    try:
        await _run(ctl, key, snapshot, indexes, apply_always=False, trigger=trigger)
    except Exception:
        logger.exception("refreshing %s/%s failed; trying again in %ss", *key, RETRY_SECONDS)
        _queue_refresh(ctl, key, indexes, trigger=trigger, settle=RETRY_SECONDS)


async def _run(
    ctl: Controller,
    key: Key,
    body: dict[str, Any],
    indexes: dict[str, Any],
    *,
    apply_always: bool,
    trigger: str,
) -> None:
    async with ctl.locks[key]:
        # Read the indexes here, in the event loop, and hand plain values to the thread.
        classes = ctl.classes()
        deployments = indexes["deployment_index"].get(key)
        deployment = next(iter(deployments), None) if deployments else None
        pods = list(indexes["pod_index"].get(key, ()))
        previous = ctl.statuses.get(key) or parse_status(body.get("status"))
        started = time.perf_counter()
        try:
            outcome: Outcome = await asyncio.to_thread(
                reconcile,
                body,
                previous,
                classes,
                deployment,
                pods,
                kube=ctl.kube,
                images=ctl.images,
                apply_always=apply_always,
                now=datetime.now(UTC),
            )
        except Exception:
            metrics.RECONCILES.labels("error", trigger).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        changed = outcome.status_written or outcome.applied
        metrics.RECONCILES.labels("changed" if changed else "unchanged", trigger).inc()
        ctl.statuses[key] = outcome.status
    _post_events(body, outcome)


def _post_events(body: dict[str, Any], outcome: Outcome) -> None:
    for event in outcome.events:
        if event.reason == "EngineSelected" and outcome.status.engine:
            metrics.DECISIONS.labels(outcome.status.engine).inc()
        post = kopf.warn if event.warning else kopf.info
        post(_as_body(body), reason=event.reason, message=event.message)


def _as_body(snapshot: dict[str, Any]) -> kopf.Body:
    """A snapshot as kopf's event poster wants it (it reads apiVersion, kind and metadata)."""
    return kopf.Body(cast(kopf.RawBody, snapshot))


def _snapshot(body: kopf.Body | dict[str, Any]) -> dict[str, Any]:
    """A plain copy of what a reconcile reads (and what events need to name the object)."""
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "generation", "labels")
            if key in meta
        },
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }
