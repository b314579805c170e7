"""kopf wiring: indexes over the cluster, and thin handlers that call `reconcile`.

Every trigger funnels into one reconcile per ModelDeployment, serialised by a lock per
object: spec changes and restarts (create/update/resume) re-apply the children; events of
any child (Deployment, Service, ConfigMap) and of the pods queue a refresh (bursts share one)
that repairs whatever differs; node changes re-evaluate only the ModelDeployments that are
still waiting for an engine. The indexes, fed by kopf's watches, hold what a reconcile reads;
a periodic, jittered resync reads each ModelDeployment's children from the API instead, which
catches what the watches missed (a deletion while the API server was away). A refresh whose
write failed is tried again with exponential back-off.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from prometheus_client import start_http_server

from kubeinfer import metrics
from kubeinfer.api.v1alpha1 import GROUP, PLURAL, VERSION, ModelDeploymentStatus
from kubeinfer.cache import summarize_job
from kubeinfer.drift import ChildState, child_state
from kubeinfer.kube import CHILD_KINDS, Kube, api_message
from kubeinfer.nodes import NodeClass, NodeFacts, node_classes, node_facts
from kubeinfer.reconcile import Outcome, parse_status, reconcile
from kubeinfer.render import ImageSettings
from kubeinfer.render.cache import cache_name_of
from kubeinfer.workload import DeploymentSummary, summarize_deployment, summarize_pod

MD = (GROUP, VERSION, PLURAL)
PREFIX = "kubeinfer.io"
MANAGED = {"app.kubernetes.io/managed-by": "kubeinfer"}
INSTANCE = "app.kubernetes.io/instance"
Key = tuple[str, str]
# Node changes within this window share one re-evaluation of the waiting ModelDeployments.
NODE_SETTLE_SECONDS = 1.0
# Child events within this window share one status refresh (a rollout is a burst of them).
CHILD_SETTLE_SECONDS = 0.5
# A refresh that failed is tried again after 1, 2, 4 ... seconds, at most 5 minutes apart.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0
# Every ModelDeployment's children are read from the API this often (each at its own random
# moment within the period), in case the watches missed an event.
RESYNC_SECONDS = 300.0
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
    verify: set[Key] = field(default_factory=set)  # ... that read the children from the API
    failures: dict[Key, int] = field(default_factory=dict)  # failed refreshes in a row
    retries: dict[Key, asyncio.Task[None]] = field(default_factory=dict)  # their next tries
    # Refreshes a reconcile asked for later (Outcome.requeue_after), one per ModelDeployment.
    timers: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # keeps them referenced
    resync_seconds: float = RESYNC_SECONDS
    resync: asyncio.Task[None] | None = None
    # The ModelDeployments using each model cache (a PVC and Job shared by name).
    cache_users: defaultdict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))
    caches: dict[Key, str] = field(default_factory=dict)  # ModelDeployment -> its cache

    def use_cache(self, key: Key, cache: str | None) -> None:
        old = self.caches.pop(key, None)
        if old is not None:
            self.cache_users[(key[0], old)].discard(key[1])
        if cache is not None:
            self.caches[key] = cache
            self.cache_users[(key[0], cache)].add(key[1])

    def set_node(self, name: str, facts: NodeFacts | None) -> None:
        if self.node_facts.get(name) != facts:
            self.node_facts[name] = facts
            self.node_classes = None
            self.nodes_dirty = True

    def classes(self) -> tuple[NodeClass, ...]:
        if self.node_classes is None:
            self.node_classes = node_classes(f for f in self.node_facts.values() if f)
        return self.node_classes


class HashedDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf keeps the last handled spec in an annotation to notice changes; a digest of it
    does that as well, and stays small where a copy of a large spec would overflow the
    256 KiB the API server allows for all annotations. (kopf's diffs then say only that
    something changed, which is all on_spec reads.)"""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        digest = hashlib.sha256(json.dumps(essence, sort_keys=True).encode()).hexdigest()
        return cast(kopf.BodyEssence, {"sha256": digest})


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = HashedDiffBase(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    # Watching given namespaces (exact names): nothing to discover, and the chart's namespaced
    # RBAC grants no cluster-wide list of namespaces (kopf would retry it for half a minute).
    settings.scanning.disabled = bool(memo.get("namespaced"))
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
    ctl = Controller(
        kube=Kube.connect(),
        images=memo.get("images") or ImageSettings(),
        resync_seconds=memo.get("resync_seconds") or RESYNC_SECONDS,
    )
    memo.controller = ctl
    metrics.register(
        lambda: list(ctl.statuses.items()),
        lambda: list(ctl.node_facts.values()),
        lambda: list(ctl.failures.items()),
    )
    if memo.get("metrics_port"):
        start_http_server(memo.metrics_port, registry=metrics.REGISTRY)


# --- indexes: what reconciles read instead of asking the API -------------------------------


@kopf.index("nodes")
async def node_index(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Indexing nodes makes kopf start the handlers only once it has seen them all; the
    facts the decisions use are kept by the controller, updated here before any handler."""
    memo.controller.set_node(name, node_facts(body))


@kopf.index(*MD)
async def md_index(
    namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **indexes: Any
) -> dict[Key, Any]:
    ctl: Controller = memo.controller
    if ctl.resync is None:
        # Started here, where the indexes are at hand (startup handlers get none).
        ctl.resync = asyncio.create_task(_resync_forever(ctl, indexes))
    key = (namespace or "", name)
    ctl.use_cache(key, cache_name_of(body.get("spec") or {}))
    return {key: _snapshot(body)}


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


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
async def deployment_state_index(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, ChildState]:
    return {(namespace or "", labels.get(INSTANCE, "")): child_state(body)}


@kopf.index("services", labels=MANAGED)
async def service_index(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **indexes: Any
) -> dict[Key, ChildState]:
    key = (namespace or "", labels.get(INSTANCE, ""))
    _queue_refresh(memo.controller, key, indexes, trigger="child")
    return {key: child_state(body)}


@kopf.index("configmaps", labels=MANAGED)
async def configmap_index(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **indexes: Any
) -> dict[Key, ChildState]:
    key = (namespace or "", labels.get(INSTANCE, ""))
    _queue_refresh(memo.controller, key, indexes, trigger="child")
    return {key: child_state(body)}


@kopf.index("batch", "v1", "jobs", labels=MANAGED)
async def job_index(
    namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **indexes: Any
) -> dict[Key, Any]:
    """Model cache download Jobs: each event refreshes the ModelDeployments using the cache."""
    key = (namespace or "", name)
    _queue_cache_users(memo.controller, key, indexes)
    return {key: summarize_job(body)}


def _queue_cache_users(ctl: Controller, cache: Key, indexes: dict[str, Any]) -> None:
    for user in sorted(ctl.cache_users.get(cache, ())):
        _queue_refresh(ctl, (cache[0], user), indexes, trigger="child")


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
    ctl: Controller = memo.controller
    key = (namespace or "", name)
    outcome = await _run(ctl, key, _snapshot(body), indexes, apply_always=True, trigger="spec")
    if outcome.problem is not None:
        _retry_later(ctl, key, indexes, "spec", None, None)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("services", labels=MANAGED)
@kopf.on.event("configmaps", labels=MANAGED)
@kopf.on.event("pods", labels=MANAGED)
@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def on_child_deleted(
    namespace: str | None, labels: kopf.Labels, type: str | None, memo: kopf.Memo, **indexes: Any
) -> None:
    """kopf runs no indexer for a deletion: a deleted child (removed by hand, an evicted
    pod, a download Job) queues the owner's refresh here."""
    if type == "DELETED":
        key = (namespace or "", labels.get(INSTANCE, ""))
        _queue_refresh(memo.controller, key, indexes, trigger="child")
        _queue_cache_users(memo.controller, key, indexes)


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
        ctl.use_cache(key, None)
        ctl.locks.pop(key, None)
        ctl.failures.pop(key, None)
        _cancel_retry(ctl, key)
        _cancel_timer(ctl, key)


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


async def _resync_forever(ctl: Controller, indexes: dict[str, Any]) -> None:
    """Each period, every ModelDeployment gets one refresh that reads its children from the
    API, at a random moment within the period (so they never come all at once)."""
    while True:
        keys = list(indexes["md_index"])
        moments = sorted((random.uniform(0, ctl.resync_seconds), key) for key in keys)
        waited = 0.0
        for moment, key in moments:
            await asyncio.sleep(moment - waited)
            waited = moment
            if key in indexes["md_index"]:
                ctl.verify.add(key)
                _queue_refresh(ctl, key, indexes, trigger="resync", settle=0)
        await asyncio.sleep(ctl.resync_seconds - waited)


async def _queued_refresh(
    ctl: Controller, key: Key, indexes: dict[str, Any], trigger: str, settle: float
) -> None:
    await asyncio.sleep(settle)
    ctl.queued.discard(key)
    store = indexes["md_index"].get(key)
    snapshot = next(iter(store), None) if store else None
    if snapshot is None:
        return  # the owner is gone; garbage collection takes the children
    verify = key in ctl.verify
    ctl.verify.discard(key)
    try:
        outcome = await _run(
            ctl, key, snapshot, indexes, apply_always=False, trigger=trigger, verify=verify
        )
    except Exception as error:
        # One line naming the object; the status could not be written either.
        _retry_later(ctl, key, indexes, trigger, f"refreshing {key[0]}/{key[1]} failed", error)
        return
    if outcome.problem is not None:
        _retry_later(ctl, key, indexes, trigger, None, None)


def _retry_later(
    ctl: Controller,
    key: Key,
    indexes: dict[str, Any],
    trigger: str,
    what: str | None,
    error: Exception | None,
) -> None:
    """The next try waits apart from the event queue: child events meanwhile still refresh
    at once, and a success cancels it."""
    failures = ctl.failures.get(key, 0) + 1
    ctl.failures[key] = failures
    delay = min(RETRY_FIRST_SECONDS * 2 ** (failures - 1), RETRY_MAX_SECONDS)
    if what is not None and error is not None:
        logger.warning("%s: %s; trying again in %.0fs", what, api_message(error), delay)
    if key in ctl.retries and not ctl.retries[key].done():
        return

    async def later() -> None:
        await asyncio.sleep(delay)
        ctl.retries.pop(key, None)
        _queue_refresh(ctl, key, indexes, trigger=trigger, settle=0)

    ctl.retries[key] = asyncio.create_task(later())


def _look_again(ctl: Controller, key: Key, indexes: dict[str, Any], after: float | None) -> None:
    """One refresh `after` seconds from now, apart from the event queue (a wait of minutes
    must not hold back the refreshes that events queue); the latest reconcile's wish
    replaces an earlier one, None cancels it."""
    _cancel_timer(ctl, key)
    if after is None:
        return

    async def later() -> None:
        await asyncio.sleep(after)
        ctl.timers.pop(key, None)
        _queue_refresh(ctl, key, indexes, trigger="timer", settle=0)

    ctl.timers[key] = asyncio.create_task(later())


def _cancel_timer(ctl: Controller, key: Key) -> None:
    timer = ctl.timers.pop(key, None)
    if timer is not None:
        timer.cancel()


def _cancel_retry(ctl: Controller, key: Key) -> None:
    retry = ctl.retries.pop(key, None)
    if retry is not None:
        retry.cancel()


async def _run(
    ctl: Controller,
    key: Key,
    body: dict[str, Any],
    indexes: dict[str, Any],
    *,
    apply_always: bool,
    trigger: str,
    verify: bool = False,
) -> Outcome:
    async with ctl.locks[key]:
        # Read the indexes here, in the event loop, and hand plain values to the thread.
        classes = ctl.classes()
        deployment = _first(indexes["deployment_index"], key)
        live = {
            kind: state
            for kind, index in zip(
                CHILD_KINDS,
                ("configmap_index", "service_index", "deployment_state_index"),
                strict=True,
            )
            if (state := _first(indexes[index], key)) is not None
        }
        pods = list(indexes["pod_index"].get(key, ()))
        cache = ctl.caches.get(key)
        cache_key = (key[0], cache or "")
        cache_job = _first(indexes["job_index"], cache_key) if cache else None
        cache_pods = list(indexes["pod_index"].get(cache_key, ())) if cache else []
        previous = ctl.statuses.get(key) or parse_status(body.get("status"))
        started = time.perf_counter()
        try:
            if verify:
                live, deployment = await asyncio.to_thread(_read_children, ctl.kube, key)
            outcome: Outcome = await asyncio.to_thread(
                reconcile,
                body,
                previous,
                classes,
                deployment,
                pods,
                live,
                kube=ctl.kube,
                images=ctl.images,
                apply_always=apply_always,
                now=datetime.now(UTC),
                cache_job=cache_job,
                cache_pods=cache_pods,
            )
        except Exception:
            metrics.RECONCILES.labels("error", trigger).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        changed = outcome.status_written or outcome.applied
        result = "error" if outcome.problem else "changed" if changed else "unchanged"
        metrics.RECONCILES.labels(result, trigger).inc()
        ctl.statuses[key] = outcome.status
        _look_again(ctl, key, indexes, outcome.requeue_after)
        if outcome.problem is None:
            ctl.failures.pop(key, None)
            _cancel_retry(ctl, key)
    _post_events(body, outcome)
    return outcome


def _first(index: Any, key: Key) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store else None


def _read_children(kube: Kube, key: Key) -> tuple[dict[str, ChildState], DeploymentSummary | None]:
    """The children as the API has them now (a resync: the watches may have missed events)."""
    live: dict[str, ChildState] = {}
    deployment = None
    for kind in CHILD_KINDS:
        body = kube.read(kind, *key)
        if body is None or (body.get("metadata", {}).get("labels") or {}).get(INSTANCE) != key[1]:
            continue  # absent, or not one of kubeinfer's (a create finds out which)
        live[kind] = child_state(body)
        if kind == "Deployment":
            deployment = summarize_deployment(body)
    return live, deployment


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
