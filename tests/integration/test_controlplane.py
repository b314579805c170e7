"""The proving ground itself: the real control plane schedules, garbage-collects and serves
kubectl and helm. Everything else in the integration suite stands on these facts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kubernetes import client
from waiting import wait_for

pytestmark = pytest.mark.cluster

H100 = "NVIDIA-H100-80GB-HBM3"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def gpu_pod(name: str, gpus: int) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": H100},
            "tolerations": [GPU_TOLERATION],
            "containers": [
                {
                    "name": "main",
                    "image": "example.invalid/cuda:1",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def test_api_answers_with_simulated_gpu_nodes(api_client) -> None:
    nodes = client.CoreV1Api(api_client).list_node().items
    products = {n.metadata.labels.get("nvidia.com/gpu.product") for n in nodes}
    assert {H100, "NVIDIA-L4"} <= products
    h100 = next(n for n in nodes if n.metadata.labels.get("nvidia.com/gpu.product") == H100)
    assert h100.status.allocatable["nvidia.com/gpu"] == "8"


def test_deployment_runs_pods_and_owner_deletion_collects_them(api_client, namespace) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]},
                },
            },
        },
    )

    def running_pods() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return pods if len(pods) == 2 and all(p.status.phase == "Running" for p in pods) else []

    pods = wait_for("2 Running pods", running_pods)
    assert all(p.spec.node_name for p in pods)

    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    wait_for(
        "the ReplicaSet and pods to be garbage-collected",
        lambda: (
            not apps.list_namespaced_replica_set(namespace).items
            and not core.list_namespaced_pod(namespace).items
        ),
    )


def test_scheduler_places_gpu_pods_by_product_and_capacity(api_client, namespace) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, gpu_pod("fits", 2))
    core.create_namespaced_pod(namespace, gpu_pod("too-big", 9))

    placed = wait_for(
        "the 2-GPU pod to be scheduled",
        lambda: core.read_namespaced_pod("fits", namespace).spec.node_name,
    )
    node = core.read_node(placed)
    assert node.metadata.labels["nvidia.com/gpu.product"] == H100

    def unschedulable_condition() -> client.V1PodCondition | None:
        conditions = core.read_namespaced_pod("too-big", namespace).status.conditions or []
        return next(
            (c for c in conditions if c.type == "PodScheduled" and c.status == "False"), None
        )

    condition = wait_for("the 9-GPU pod's scheduling condition", unschedulable_condition)
    assert condition.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in condition.message
    assert core.read_namespaced_pod("too-big", namespace).status.phase == "Pending"


def test_kubectl_and_helm_use_the_written_kubeconfig(kube_env, namespace, tmp_path: Path) -> None:
    listed = subprocess.run(
        ["kubectl", "get", "nodes", "-L", "nvidia.com/gpu.product", "-o", "json"],
        env=kube_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(json.loads(listed.stdout)["items"]) >= 8

    chart = tmp_path / "throwaway"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: throwaway\nversion: 0.1.0\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    subprocess.run(
        ["helm", "install", "demo", str(chart), "-n", namespace, "--set", "greeting=hi", "--wait"],
        env=kube_env,
        check=True,
        capture_output=True,
        text=True,
    )
    got = subprocess.run(
        [
            "kubectl",
            "get",
            "configmap",
            "demo-settings",
            "-n",
            namespace,
            "-o",
            "jsonpath={.data.greeting}",
        ],
        env=kube_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert got.stdout == "hi"
    subprocess.run(
        ["helm", "uninstall", "demo", "-n", namespace],
        env=kube_env,
        check=True,
        capture_output=True,
    )
