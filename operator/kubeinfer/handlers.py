"""kopf wiring: indexes over the cluster, and thin handlers that call `reconcile`.

Every trigger funnels into one reconcile per ModelDeployment, serialised by a lock per
object: spec changes and restarts (create/update/resume) re-apply the children; events of
the child Deployment and pods refresh the status; node changes re-evaluate only the
ModelDeployments that are still waiting for an engine. Nothing here lists objects: the
indexes, fed by kopf's watches, hold what a reconcile reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kopf
from prometheus_client import start_http_server

from kubeinfer import conditions as cond
from kubeinfer import metrics
from kubeinfer.api.v1alpha1 import GROUP, PLURAL, VERSION
from kubeinfer.kube import Kube
from kubeinfer.nodes import node_facts
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
logger = logging.getLogger(__name__)


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
    # Reconciles block on HTTP calls; a wider pool than the CPU count keeps them flowing.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=memo.get("workers", 16), thread_name_prefix="reconcile")
    )
    memo.kube = Kube.connect()
    memo.images = memo.get("images") or ImageSettings()
    memo.locks = defaultdict(asyncio.Lock)
    memo.conditions = {}
    # The status each ModelDeployment was last given: newer than a watch snapshot can be.
    memo.statuses = {}
    memo.node_facts = {}
    memo.nodes_dirty = False
    memo.node_pass = None
    metrics.REGISTRY.register(metrics.ConditionsCollector(lambda: memo.conditions))
    if memo.get("metrics_port"):
        start_http_server(memo.metrics_port, registry=metrics.REGISTRY)


# --- indexes: what reconciles read instead of asking the API -------------------------------


@kopf.index("nodes")
def node_index(body: kopf.Body, **_: Any) -> dict[str, Any]:
    return {"all": node_facts(body)}


@kopf.index(*MD)
def md_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): _snapshot(body)}


@kopf.index(*MD)
def waiting_index(namespace: str, name: str, status: kopf.Status, **_: Any) -> dict[str, Key]:
    return {} if status.get("engine") else {"waiting": (namespace, name)}


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def deployment_index(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, labels.get(INSTANCE, "")): summarize_deployment(body)}


@kopf.index("pods", labels=MANAGED)
def pod_index(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, labels.get(INSTANCE, "")): summarize_pod(body)}


# --- handlers ------------------------------------------------------------------------------


@kopf.on.resume(*MD, backoff=5)
@kopf.on.create(*MD, backoff=5)
@kopf.on.update(*MD, backoff=5)
async def on_spec(
    body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **indexes: Any
) -> None:
    """A new or changed spec, or an operator restart: decide, apply everything, report."""
    await _run(memo, (namespace, name), _snapshot(body), indexes, apply_always=True, trigger="spec")


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("pods", labels=MANAGED)
async def on_child(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **indexes: Any) -> None:
    """A child changed: refresh the owner's status (and restore a missing Deployment)."""
    key = (namespace, labels.get(INSTANCE, ""))
    await _refresh(memo, key, indexes, trigger="child")


@kopf.on.event("nodes")
async def on_node(
    name: str, body: kopf.Body, type: str | None, memo: kopf.Memo, **indexes: Any
) -> None:
    """New or relabelled nodes: ModelDeployments still waiting for an engine try again."""
    facts = None if type == "DELETED" else node_facts(body)
    if memo.node_facts.get(name) == facts:
        return  # a heartbeat: nothing the decision reads has changed
    memo.node_facts[name] = facts
    # Nodes come in bursts (start-up lists them all, a scale-up adds many): one pass over the
    # waiting ModelDeployments per burst, not one per node.
    memo.nodes_dirty = True
    if memo.node_pass is None or memo.node_pass.done():
        memo.node_pass = asyncio.create_task(_reevaluate_waiting(memo, indexes))


@kopf.on.event(*MD)
def forget_deleted(namespace: str, name: str, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        memo.conditions.pop((namespace, name), None)
        memo.statuses.pop((namespace, name), None)
        memo.locks.pop((namespace, name), None)


async def _reevaluate_waiting(memo: kopf.Memo, indexes: dict[str, Any]) -> None:
    """Refreshes the waiting ModelDeployments until no node has changed since the last pass
    (the indexes are live views, so a pass sees every node that arrived before it)."""
    while memo.nodes_dirty:
        await asyncio.sleep(NODE_SETTLE_SECONDS)
        memo.nodes_dirty = False
        for key in sorted(set(indexes["waiting_index"].get("waiting", ()))):
            try:
                await _refresh(memo, key, indexes, trigger="nodes")
            except Exception:
                logger.exception("re-evaluating %s/%s after a node change failed", *key)


# --- the shared path -----------------------------------------------------------------------


async def _refresh(memo: kopf.Memo, key: Key, indexes: dict[str, Any], *, trigger: str) -> None:
    store = indexes["md_index"].get(key)
    snapshot = next(iter(store), None) if store else None
    if snapshot is None:
        return  # the owner is gone; garbage collection takes the children
    await _run(memo, key, snapshot, indexes, apply_always=False, trigger=trigger)


async def _run(
    memo: kopf.Memo,
    key: Key,
    body: dict[str, Any],
    indexes: dict[str, Any],
    *,
    apply_always: bool,
    trigger: str,
) -> None:
    async with memo.locks[key]:
        # Read the indexes here, in the event loop, and hand plain lists to the thread.
        nodes = list(indexes["node_index"].get("all", ()))
        deployments = indexes["deployment_index"].get(key)
        deployment = next(iter(deployments), None) if deployments else None
        pods = list(indexes["pod_index"].get(key, ()))
        previous = memo.statuses.get(key) or parse_status(body.get("status"))
        started = time.perf_counter()
        try:
            outcome: Outcome = await asyncio.to_thread(
                reconcile, body, previous, nodes, deployment, pods, kube=memo.kube, images=memo.images,
                apply_always=apply_always, now=datetime.now(UTC),
            )
        except Exception:
            metrics.RECONCILES.labels("error", trigger).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        metrics.RECONCILES.labels("changed" if outcome.status_written or outcome.applied else "unchanged", trigger).inc()
        memo.statuses[key] = outcome.status
    memo.conditions[key] = {c.type: c.status for c in outcome.status.conditions}
    _post_events(body, outcome)


def _post_events(body: dict[str, Any], outcome: Outcome) -> None:
    decision = outcome.decision
    selected = cond.find(outcome.status.conditions, cond.ENGINE_SELECTED)
    if decision is not None and decision.engine and decision.engine != outcome.previous_engine:
        metrics.DECISIONS.labels(decision.engine).inc()
        kopf.info(body, reason="EngineSelected", message=decision.reason)
    elif outcome.status_written and selected is not None and selected.status == "False":
        kopf.warn(body, reason=selected.reason, message=selected.message)


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
