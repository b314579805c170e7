"""What the informers keep (kubeinfer.watched): summaries filed by owner, deletions by
reference, and whom each report concerns."""

from __future__ import annotations

from typing import Any

from kubeinfer.watched import Watched, collection, summarize

NS = "models"


def obj(kind: str, name: str, owner: str, **extra: Any) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": owner, "app.kubernetes.io/managed-by": "kubeinfer"}
    meta = {"name": name, "namespace": NS, "uid": f"{name}-uid", "labels": labels}
    return {"kind": kind, "metadata": meta, "spec": {}, **extra}


def test_children_pods_and_jobs_are_filed_under_their_owner() -> None:
    watched = Watched()
    deployment = obj("Deployment", "qwen", "qwen", status={"readyReplicas": 1})
    assert watched.update("Deployment", (NS, "qwen"), summarize("Deployment", deployment)) == (
        NS,
        "qwen",
    )
    watched.update("Service", (NS, "qwen"), summarize("Service", obj("Service", "qwen", "qwen")))
    for pod in ("qwen-a", "qwen-b"):
        watched.update("Pod", (NS, pod), summarize("Pod", obj("Pod", pod, "qwen")))
    job = obj("Job", "cache-1", "cache-1")
    assert watched.update("Job", (NS, "cache-1"), summarize("Job", job)) == (NS, "cache-1")

    assert set(watched.live((NS, "qwen"))) == {"Deployment", "Service"}
    summary = watched.deployments[(NS, "qwen")]
    assert summary.ready_replicas == 1
    assert sorted(p.name for p in watched.pods_of((NS, "qwen"))) == ["qwen-a", "qwen-b"]
    assert (NS, "cache-1") in watched.jobs


def test_a_deletion_reported_by_reference_finds_its_owner() -> None:
    watched = Watched()
    watched.update("Pod", (NS, "qwen-a"), summarize("Pod", obj("Pod", "qwen-a", "qwen")))
    watched.update(
        "Deployment", (NS, "qwen"), summarize("Deployment", obj("Deployment", "qwen", "qwen"))
    )
    assert watched.update("Pod", (NS, "qwen-a"), None) == (NS, "qwen")
    assert watched.pods_of((NS, "qwen")) == () and (NS, "qwen") not in watched.pods
    assert watched.update("Deployment", (NS, "qwen"), None) == (NS, "qwen")
    assert watched.live((NS, "qwen")) == {} and (NS, "qwen") not in watched.deployments
    assert watched.update("Pod", (NS, "never-seen"), None) is None


def test_a_relabelled_pod_leaves_its_former_owner() -> None:
    watched = Watched()
    watched.update("Pod", (NS, "p"), summarize("Pod", obj("Pod", "p", "qwen")))
    assert watched.update("Pod", (NS, "p"), summarize("Pod", obj("Pod", "p", "other"))) == (
        NS,
        "other",
    )
    assert watched.pods_of((NS, "qwen")) == ()
    assert [p.name for p in watched.pods_of((NS, "other"))] == ["p"]


def test_collections_in_all_namespaces_or_one() -> None:
    assert collection("Deployment") == "/apis/apps/v1/deployments"
    assert collection("Pod", "ml") == "/api/v1/namespaces/ml/pods"
