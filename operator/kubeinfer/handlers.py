"""kopf wiring: the ModelDeployments' watch and indexes, informers for everything else, and
thin handlers that feed the refresh queue.

Every trigger funnels into one reconcile per ModelDeployment, serialised by a lock per
object. A ModelDeployment's own events (kopf's watch) queue a refresh at once; one whose
spec is new to the operator (a generation it has not applied, or the first look after a
start) re-applies every child, as kopf's create/update/resume handlers would, without their
bookkeeping writes on the object. The nodes, the children (Deployment, Service), the pods
and the model caches (Job, PVC) are followed by informers of kubeinfer's own
(kubeinfer.informer), which keep only what reconciles read (kubeinfer.watched): a child's or
a pod's change queues its ModelDeployment's refresh (bursts share one), which repairs
whatever differs; a refresh that would read exactly what the last one (which wrote nothing)
read is skipped; node changes re-evaluate only the ModelDeployments waiting for an engine. A
periodic, jittered resync reads each ModelDeployment's children from the API instead, which
catches what the watches missed. A refresh whose write failed is tried again with
exponential back-off.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar, cast

import kopf
from prometheus_client import start_http_server

from kubeinfer import conditions as cond
from kubeinfer import metrics
from kubeinfer.api.v1alpha1 import GROUP, PLURAL, VERSION, ModelDeploymentStatus
from kubeinfer.drift import ChildState
from kubeinfer.informer import Informer
from kubeinfer.kube import CHILD_KINDS, Kube, api_message
from kubeinfer.logs import RECONCILING
from kubeinfer.nodes import NodeClass, NodeFacts, node_classes, node_facts
from kubeinfer.plan import Observed, Renders
from kubeinfer.reconcile import Outcome, parse_status, reconcile, remove_old_config_maps
from kubeinfer.refresh import Key, RefreshQueue, Request
from kubeinfer.render import ImageSettings
from kubeinfer.render.cache import cache_name_of
from kubeinfer.watched import KINDS, MANAGED, Summary, Watched, collection, summarize
from kubeinfer.workload import DeploymentSummary

MD = (GROUP, VERSION, PLURAL)
K = TypeVar("K")
V = TypeVar("V")
# Node changes within this window share one re-evaluation of the waiting ModelDeployments.
NODE_SETTLE_SECONDS = 1.0
# Every ModelDeployment's children are read from the API this often (each at its own random
# moment within the period), in case the watches missed an event.
RESYNC_SECONDS = 300.0
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Views:
    """kopf's index of the ModelDeployments. It is a live view (kopf updates it in place), so
    one serves every handler."""

    mds: kopf.Index[Key, dict[str, Any]]

    @classmethod
    def of(cls, indexes: Mapping[str, Any]) -> Views:
        return cls(mds=indexes["md_index"])


def first(index: kopf.Index[K, V], key: K) -> V | None:
    store = index.get(key)
    return next(iter(store), None) if store else None


@dataclass
class Controller:
    """What every handler shares. kopf hands each object a shallow copy of the memo, so
    state that is reassigned (not only mutated) must live in one object they all point to."""

    kube: Kube
    images: ImageSettings
    locks: defaultdict[Key, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    # The status each ModelDeployment was last given: newer than a watch snapshot can be.
    statuses: dict[Key, ModelDeploymentStatus] = field(default_factory=dict)
    # The generation whose children were last applied whole, by ModelDeployment.
    applied: dict[Key, int | None] = field(default_factory=dict)
    # What a reconcile that wrote nothing last read, by ModelDeployment: the same again is a
    # fixed point (a pod's or Deployment's status tick that changes no summary), not rerun.
    settled: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    renders: Renders = field(default_factory=Renders)  # each one's last rendering
    node_facts: dict[str, NodeFacts | None] = field(default_factory=dict)
    # ModelDeployments decided without an engine: node changes make them try again.
    waiting: set[Key] = field(default_factory=set)
    # Grouped once per change of the nodes, not once per reconcile.
    node_classes: tuple[NodeClass, ...] | None = None
    nodes_dirty: bool = False  # nodes changed since waiting ModelDeployments last looked
    node_pass: asyncio.Task[None] | None = None
    resync_seconds: float = RESYNC_SECONDS
    resync: asyncio.Task[None] | None = None
    views: Views | None = None  # set by the first indexer kopf calls
    kopf_context: contextvars.Context | None = None  # set with the views
    queue: RefreshQueue = field(init=False)
    # The ModelDeployments using each model cache (a PVC and Job shared by name).
    cache_users: defaultdict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))
    caches: dict[Key, str] = field(default_factory=dict)  # ModelDeployment -> its cache
    # Children, pods and model caches as the informers last reported them.
    watched: Watched = field(default_factory=Watched)
    informers: list[Informer[Any]] = field(default_factory=list)
    # Refreshes wait until every informer has listed its collection once.
    unlisted: set[str] = field(default_factory=set)
    listed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.queue = RefreshQueue(self._refresh)

    def seen(self, indexes: Mapping[str, Any]) -> Views:
        if self.views is None:
            self.views = Views.of(indexes)
            # kopf's event poster finds its queue in context variables it sets around its
            # handlers; refreshes queued by the informers run outside them.
            self.kopf_context = contextvars.copy_context()
            # Started here, where the indexes are at hand (startup handlers get none).
            self.resync = asyncio.create_task(_resync_forever(self))
        return self.views

    def refresh(self, key: Key) -> None:
        """Queues a refresh of a ModelDeployment (its children's event, its cache's)."""
        self.queue.queue(key, "child")

    def watched_changed(self, kind: str, ref: tuple[str, str], summary: Summary | None) -> None:
        """An informer's report: files it, and refreshes whom it concerns (a child's or a
        pod's ModelDeployment; the users of a model cache whose Job, PVC or pod it is)."""
        owner = self.watched.update(kind, ref, summary)
        if owner is None:
            return
        if kind in ("Deployment", "Service", "Pod"):
            self.refresh(owner)
        self.refresh_cache_users(owner)

    def informer_listed(self, name: str) -> None:
        self.unlisted.discard(name)
        if not self.unlisted:
            self.listed.set()

    def refresh_cache_users(self, cache: Key) -> None:
        for user in sorted(self.cache_users.get(cache, ())):
            self.refresh((cache[0], user))

    def use_cache(self, key: Key, cache: str | None) -> None:
        old = self.caches.pop(key, None)
        if old is not None:
            self.cache_users[(key[0], old)].discard(key[1])
        if cache is not None:
            self.caches[key] = cache
            self.cache_users[(key[0], cache)].add(key[1])

    def set_node(self, name: str, facts: NodeFacts | None) -> None:
        """A node's facts as the node watch saw them (None: gone). New or relabelled nodes
        make the ModelDeployments still waiting for an engine try again."""
        if self.node_facts.get(name) == facts:
            return  # a heartbeat: nothing the decision reads has changed
        if facts is None:
            self.node_facts.pop(name, None)
        else:
            self.node_facts[name] = facts
        self.node_classes = None
        self.nodes_dirty = True
        # Nodes come in bursts (start-up lists them all, a scale-up adds many): one pass
        # over the waiting ModelDeployments per burst, not one per node.
        if self.views is not None and (self.node_pass is None or self.node_pass.done()):
            self.node_pass = asyncio.create_task(_reevaluate_waiting(self))

    def classes(self) -> tuple[NodeClass, ...]:
        if self.node_classes is None:
            self.node_classes = node_classes(f for f in self.node_facts.values() if f)
        return self.node_classes

    def spec_is_new(self, key: Key, snapshot: Mapping[str, Any]) -> bool:
        """A generation not applied yet (or none since the operator started): every child is
        applied, so that fields a new spec or a new operator version drops are removed too."""
        generation = snapshot["metadata"].get("generation")
        return key not in self.applied or self.applied[key] != generation

    def forget(self, key: Key) -> None:
        self.applied.pop(key, None)
        self.settled.pop(key, None)
        self.renders.forget(key)
        self.statuses.pop(key, None)
        self.waiting.discard(key)
        self.use_cache(key, None)
        self.locks.pop(key, None)
        self.queue.forget(key)

    async def _refresh(self, request: Request) -> bool:
        """One queued refresh; True when it left nothing to try again."""
        await self.listed.wait()  # decisions need every node, reconciles every child
        if self.views is None:
            return True
        try:
            outcome = await _run(self, self.views, request.key, request.trigger, request.verify)
        except Exception as error:
            # One line naming the object; the status could not be written either.
            delay = self.queue.failed(request.key, request.trigger)
            key = "/".join(request.key)
            logger.warning(
                "refreshing %s failed: %s; trying again in %.0fs", key, api_message(error), delay
            )
            return True  # counted and scheduled here, with the error's line
        # None: the owner is gone (garbage collection takes the children)
        return outcome is None or outcome.problem is None


class _NoDiffBase(kopf.DiffBaseStorage):
    """kubeinfer has no change handlers, so nothing ever compares an object with its last
    handled state; kopf would still deep-copy every object of every event to build that
    state (a fifth of the operator's CPU under load). Nothing is built, kept or written."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = logging.INFO
    # Events are kubeinfer's own (transitions, with the API server's words); kopf would also
    # post each of its log lines ("Handler ... succeeded"), a write each.
    settings.posting.loggers = False
    settings.persistence.diffbase_storage = _NoDiffBase()
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
    _start_informers(ctl, memo.get("namespaces") or [None])
    # ConfigMaps an earlier kubeinfer made per model (the runtime config is in the pod
    # template now): removed once, in the background.
    memo.cleanup = asyncio.create_task(
        asyncio.to_thread(remove_old_config_maps, ctl.kube, memo.get("namespaces") or [])
    )
    metrics.register(
        lambda: list(ctl.statuses.items()),
        lambda: list(ctl.node_facts.values()),
        lambda: list(ctl.queue.failures.items()),
    )
    if memo.get("metrics_port"):
        start_http_server(memo.metrics_port, registry=metrics.REGISTRY)


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf logs in as the operator's own calls do (kubeinfer.kube.login), read again at
    each login (kopf asks again after a 401: a rotated token)."""
    found = memo.controller.kube.credentials
    return kopf.ConnectionInfo(
        server=found.server,
        ca_path=found.ca_path,
        ca_data=found.ca_data,
        insecure=found.insecure,
        token=found.current_token(),
        certificate_path=found.cert_path,
        private_key_path=found.key_path,
        default_namespace=found.default_namespace,
    )


def _start_informers(ctl: Controller, namespaces: list[str] | list[None]) -> None:
    """Nodes (their facts), and kubeinfer's children, pods and model caches (summaries), each
    reported into the event loop."""
    loop = asyncio.get_running_loop()

    def call(callback: Callable[..., object], *args: Any) -> None:
        loop.call_soon_threadsafe(callback, *args)

    def start(name: str, informer: Informer[Any]) -> None:
        ctl.unlisted.add(name)
        ctl.informers.append(informer)
        informer.start()

    def listed(name: str) -> Callable[[int], object]:
        return lambda _: call(ctl.informer_listed, name)

    start(
        "nodes",
        Informer(
            ctl.kube,
            "/api/v1/nodes",
            node_facts,
            lambda ref, facts: call(ctl.set_node, ref[1], facts),
            listed("nodes"),
        ),
    )
    for kind in KINDS:
        for namespace in namespaces:
            name = f"{kind} {namespace or '*'}"
            start(
                name,
                Informer(
                    ctl.kube,
                    collection(kind, namespace),
                    partial(summarize, kind),
                    partial(call, ctl.watched_changed, kind),
                    listed(name),
                    selector=MANAGED,
                ),
            )


@kopf.on.cleanup()
async def stop_informers(memo: kopf.Memo, **_: Any) -> None:
    for informer in memo.controller.informers:
        informer.stop()


# --- indexes: what reconciles read instead of asking the API -------------------------------


@kopf.index(*MD)
async def md_index(
    namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **indexes: Any
) -> dict[Key, dict[str, Any]]:
    """The ModelDeployments as reconciles read them; also files which model cache each uses
    and whether it waits for an engine (one index: each costs kopf a handler call an event)."""
    ctl: Controller = memo.controller
    ctl.seen(indexes)
    key = (namespace or "", name)
    ctl.use_cache(key, cache_name_of(body.get("spec") or {}))
    # One with no status yet is left to its own first reconcile (a burst of new nodes must
    # not reconcile every new ModelDeployment ahead of it).
    status = body.get("status") or {}
    if status.get("observedGeneration") is not None and not status.get("engine"):
        ctl.waiting.add(key)
    else:
        ctl.waiting.discard(key)
    return {key: _snapshot(body)}


@kopf.on.event(*MD)
async def on_model_deployment(
    namespace: str | None, name: str, type: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Runs after the indexes took the event in. A new spec (or one not seen since the start)
    is reconciled at once; the operator's own status writes come back here and are let be."""
    ctl: Controller = memo.controller
    key = (namespace or "", name)
    if type == "DELETED":
        ctl.forget(key)
        return
    snapshot = first(ctl.views.mds, key) if ctl.views else None
    if snapshot is not None and ctl.spec_is_new(key, snapshot):
        ctl.queue.queue(key, "spec", settle=0)


async def _reevaluate_waiting(ctl: Controller) -> None:
    """Refreshes the waiting ModelDeployments until no node has changed since the last pass
    (the node facts are current, so a pass sees every node that arrived before it)."""
    while ctl.nodes_dirty:
        await asyncio.sleep(NODE_SETTLE_SECONDS)
        ctl.nodes_dirty = False
        for key in sorted(ctl.waiting):
            ctl.queue.queue(key, "nodes", settle=0)


# --- the shared path -----------------------------------------------------------------------


async def _resync_forever(ctl: Controller) -> None:
    """Each period, every ModelDeployment gets one refresh that reads its children from the
    API, at a random moment within the period (so they never come all at once)."""
    while True:
        views = ctl.views
        keys = list(views.mds) if views else []
        moments = sorted((random.uniform(0, ctl.resync_seconds), key) for key in keys)
        waited = 0.0
        for moment, key in moments:
            await asyncio.sleep(moment - waited)
            waited = moment
            if views is not None and key in views.mds:
                ctl.queue.queue(key, "resync", settle=0, verify=True)
        await asyncio.sleep(ctl.resync_seconds - waited)


async def _run(
    ctl: Controller, views: Views, key: Key, trigger: str, verify: bool
) -> Outcome | None:
    # Log lines of this reconcile name the object and why it runs (the thread inherits it).
    RECONCILING.set(({"namespace": key[0], "name": key[1]}, f"refresh:{trigger}"))
    async with ctl.locks[key]:
        # The object as it is now (it may have changed while this waited for the lock), and
        # whether its spec is new, decided under the lock: refreshes queued behind the one
        # applying a new spec find it applied.
        body = first(views.mds, key)
        if body is None:
            return None
        apply_always = ctl.spec_is_new(key, body)
        # Read the indexes here, in the event loop, and hand plain values to the thread.
        cache = ctl.caches.get(key)
        cache_key = (key[0], cache or "")
        observed = Observed(
            body=body,
            previous=ctl.statuses.get(key) or parse_status(body.get("status")),
            classes=ctl.classes(),
            deployment=ctl.watched.deployments.get(key),
            pods=ctl.watched.pods_of(key),
            live=ctl.watched.live(key),
        )
        cache_job = ctl.watched.jobs.get(cache_key) if cache else None
        cache_pods = ctl.watched.pods_of(cache_key) if cache else ()
        inputs = _inputs(observed)
        # Never skipped: a model cache's reconcile reads its claim from the API (its
        # deletion, its filled mark), which no input here shows.
        skippable = not (verify or apply_always or cache or trigger == "timer")
        if skippable and ctl.settled.get(key) == inputs:
            metrics.RECONCILES.labels("skipped", trigger).inc()
            return None
        ctl.settled.pop(key, None)
        started = time.perf_counter()
        try:
            if verify:
                live, deployment = await asyncio.to_thread(_read_children, ctl.kube, key)
                observed = replace(observed, live=live, deployment=deployment)
            outcome: Outcome = await asyncio.to_thread(
                reconcile,
                observed,
                kube=ctl.kube,
                images=ctl.images,
                apply_always=apply_always,
                now=datetime.now(UTC),
                cache_job=cache_job,
                cache_pods=cache_pods,
                renders=ctl.renders,
            )
        except Exception:
            metrics.RECONCILES.labels("error", trigger).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        done = outcome.conclusion
        metrics.RECONCILES.labels(done.result, trigger).inc()
        ctl.statuses[key] = done.status
        if done.result == "unchanged" and not verify and outcome.requeue_after is None:
            ctl.settled[key] = inputs
        if apply_always and outcome.problem is None:
            ctl.applied[key] = body["metadata"].get("generation")
        ctl.queue.look_again(key, outcome.requeue_after)
    _post_events(ctl, body, outcome)
    return outcome


def _inputs(observed: Observed) -> tuple[Any, ...]:
    """What a reconcile's outcome depends on, comparable with ==: the children without their
    resourceVersion (a status write changes it, not what kubeinfer wrote)."""
    live = observed.live or {}
    children = tuple((kind, state.unversioned()) for kind, state in sorted(live.items()))
    meta = observed.body["metadata"]
    return (
        meta.get("resourceVersion"),
        meta.get("generation"),
        observed.classes,  # recomputed (a new tuple) when the nodes change
        observed.deployment,
        tuple(observed.pods),
        children,
    )


def _read_children(kube: Kube, key: Key) -> tuple[dict[str, ChildState], DeploymentSummary | None]:
    """The children as the API has them now (a resync: the watches may have missed events),
    summarized as the informers summarize them."""
    live: dict[str, ChildState] = {}
    deployment = None
    for kind in CHILD_KINDS:
        body = kube.read(kind, *key)
        found = summarize(kind, body) if body is not None else None
        if found is None or found.owner != key[1] or found.child is None:
            continue  # absent, or not one of kubeinfer's (a create finds out which)
        live[kind] = found.child
        deployment = found.deployment or deployment
    return live, deployment


def _post_events(ctl: Controller, body: dict[str, Any], outcome: Outcome) -> None:
    done = outcome.conclusion
    for event in done.events:
        if event.reason == cond.ENGINE_SELECTED and done.status.engine:
            metrics.DECISIONS.labels(done.status.engine).inc()
        post = kopf.warn if event.warning else kopf.info
        if ctl.kopf_context is not None:
            ctl.kopf_context.run(post, _as_body(body), reason=event.reason, message=event.message)


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
            for key in ("name", "namespace", "uid", "generation", "resourceVersion", "labels")
            if key in meta
        },
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }
