"""The operator's own API calls on the real control plane: the node list-and-watch that keeps
only each node's facts, and the plain-HTTP client under it (kubeinfer.kube)."""

from __future__ import annotations

import contextlib
import json
import queue
import uuid
from typing import Any

import pytest

from kubeinfer.informer import Informer
from kubeinfer.kube import ApiError, Kube, login
from kubeinfer.nodes import NodeFacts, node_facts

pytestmark = pytest.mark.cluster
NODES = "/api/v1/nodes"


@pytest.fixture
def kube(kubeconfig: str) -> Kube:
    return Kube(login(kubeconfig))


def _node(name: str, product: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.memory": "81559",
                "nvidia.com/gpu.count": "8",
                "nvidia.com/gpu.present": "true",
            },
        },
        # Tainted: nothing of the other tests lands on it.
        "spec": {"taints": [{"key": "test.kubeinfer.io/node-watch", "effect": "NoSchedule"}]},
    }


def _next(events: queue.Queue[tuple[str, NodeFacts | None]], name: str) -> NodeFacts | None:
    while True:
        seen, facts = events.get(timeout=30)
        if seen == name:
            return facts


def test_nodes_are_listed_page_by_page_and_followed(kube: Kube) -> None:
    everything = [n for page, _ in kube.list(NODES) for n in page]
    pages = list(kube.list(NODES, page=2))
    assert len(pages) == (len(everything) + 1) // 2
    assert sorted(n["metadata"]["name"] for page, _ in pages for n in page) == sorted(
        n["metadata"]["name"] for n in everything
    )

    events: queue.Queue[tuple[str, NodeFacts | None]] = queue.Queue()
    listed: queue.Queue[int] = queue.Queue()
    watch = Informer(kube, NODES, node_facts, lambda ref, f: events.put((ref[1], f)), listed.put)
    watch.start()
    name = f"node-watch-{uuid.uuid4().hex[:6]}"
    try:
        assert listed.get(timeout=30) == len(everything)
        kube.request("POST", NODES, body=_node(name, "NVIDIA-H100-80GB-HBM3"))
        facts = _next(events, name)
        assert facts is not None
        assert facts.profile.gpu_product == "NVIDIA-H100-80GB-HBM3"
        assert facts.profile.gpu_count == 8

        relabel = {"metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-L4"}}}
        kube.request(
            "PATCH", f"{NODES}/{name}", body=relabel, content_type="application/merge-patch+json"
        )
        facts = _next(events, name)
        while facts is not None and facts.profile.gpu_product != "NVIDIA-L4":
            facts = _next(events, name)  # status updates of the node may come in between
        assert facts is not None

        kube.request("DELETE", f"{NODES}/{name}")
        while (facts := _next(events, name)) is not None:
            pass  # the deletion reports None
    finally:
        watch.stop()
        # Never left behind: the control plane's start-up waits for every node to be Ready.
        with contextlib.suppress(ApiError):
            kube.request("DELETE", f"{NODES}/{name}")


def test_api_errors_carry_the_servers_message(kube: Kube, crd_installed: None) -> None:
    assert kube.read("Deployment", "no-such-namespace", "nothing") is None
    with pytest.raises(ApiError) as raised:
        kube.patch_status("no-such-namespace", "nothing", {"replicas": 1})
    assert raised.value.status == 404
    assert '"nothing" not found (404)' in raised.value.message


def test_old_per_model_config_maps_are_removed_once(
    kube: Kube, namespace: str, crd_installed: None
) -> None:
    """Before 0.2 each model had a ConfigMap; an upgraded operator deletes those (and only
    those: a ModelDeployment controls them)."""
    from test_operator import model_deployment

    from kubeinfer.api.v1alpha1 import GROUP, PLURAL, VERSION
    from kubeinfer.reconcile import remove_old_config_maps

    # Asks for a node no cluster has: an operator running meanwhile makes it nothing.
    md = model_deployment("old", nodeSelector={"test.kubeinfer.io/none": "x"})
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    created = json.loads(kube.request("POST", path, body=md).data)
    owner = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "name": "old",
        "uid": created["metadata"]["uid"],
        "controller": True,
    }
    labels = {
        "app.kubernetes.io/managed-by": "kubeinfer",
        "app.kubernetes.io/component": "model-server",
    }
    config_maps = f"/api/v1/namespaces/{namespace}/configmaps"
    for name, meta in (
        ("old", {"labels": labels, "ownerReferences": [owner]}),
        ("users-own", {"labels": labels}),  # labelled alike, but no ModelDeployment's
        ("unlabelled", {"ownerReferences": [owner]}),
    ):
        kube.request("POST", config_maps, body={"metadata": {"name": name, **meta}})

    assert remove_old_config_maps(kube, [namespace]) == 1
    left = {c["metadata"]["name"] for page, _ in kube.list(config_maps) for c in page}
    assert {"users-own", "unlabelled"} <= left and "old" not in left
    assert remove_old_config_maps(kube, [namespace]) == 0
