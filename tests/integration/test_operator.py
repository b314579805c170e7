"""The operator on the real control plane: decisions become running children, status tells
the truth, and nothing is lost or orphaned across spec changes, deletions and crashes."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from waiting import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "kubeinfer.io", "v1alpha1", "modeldeployments"
H100 = "NVIDIA-H100-80GB-HBM3"
# The pod template's annotation that holds the runtime's config document (a downwardAPI
# volume makes it the file the runtime reads).
RUNTIME_CONFIG = "kubeinfer.io/runtime-config"


def model_deployment(name: str, **spec: Any) -> dict[str, Any]:
    model = {
        "name": "qwen2.5-instruct",
        "format": "gguf",
        "quantization": "Q4_K_M",
        "sizeInBillions": 0.5,
        "uri": "hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        "file": "qwen2.5-0.5b-instruct-q4_k_m.gguf",
    }
    model.update(spec.pop("model", {}))
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": model, **spec},
    }


class Cluster:
    """The handful of reads and writes the tests need, over the real API."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec}
        )

    def md(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name))

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        conditions = (self.md(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), None)

    def condition_is(self, name: str, type_: str, status: str) -> dict[str, Any] | None:
        found = self.condition(name, type_)
        return found if found and found["status"] == status else None

    def deployment(self, name: str) -> client.V1Deployment | None:
        try:
            return self.apps.read_namespaced_deployment(name, self.ns)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def pods(self, name: str) -> list[client.V1Pod]:
        selector = f"app.kubernetes.io/instance={name}"
        return list(self.core.list_namespaced_pod(self.ns, label_selector=selector).items)

    def running_pods(self, name: str, count: int = 1) -> list[client.V1Pod]:
        pods = [
            p
            for p in self.pods(name)
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp
        ]
        return pods if len(pods) == count else []

    def runtime_config(self, name: str) -> dict[str, Any]:
        """The runtime's config document, as the Deployment's pod template carries it."""
        template = self.apps.read_namespaced_deployment(name, self.ns).spec.template
        return dict(yaml.safe_load(template.metadata.annotations[RUNTIME_CONFIG]))

    def foreign_service(self, name: str) -> client.V1Service:
        """A Service of the user's (no owner) that holds the name a ModelDeployment's
        Service would have."""
        return self.core.create_namespaced_service(
            self.ns,
            {
                "metadata": {"name": name},
                "spec": {"selector": {"app": "mine"}, "ports": [{"port": 80}]},
            },
        )


def schedulable_gpu_nodes_seen(operator: Any) -> int:
    """How many schedulable GPU nodes (NVIDIA or AMD) the operator's own metrics say it sees."""
    pattern = r'kubeinfer_nodes\{gpu_product="[^"]*",gpu_vendor="(?:nvidia|amd)",'
    pattern += r'schedulable="true"\} (\S+)'
    return int(sum(float(count) for count in re.findall(pattern, operator.metrics())))


@contextmanager
def gpu_nodes_cordoned(cluster: Cluster, operator: Any) -> Iterator[None]:
    """Every GPU node (NVIDIA and AMD: vLLM runs on both) unschedulable for a while: a
    cluster without usable GPUs. Waits until the operator has seen each change, so what
    follows races nothing."""
    gpu = [
        n.metadata.name
        for n in cluster.core.list_node().items
        if {"nvidia.com/gpu", "amd.com/gpu"} & set(n.status.allocatable or {})
    ]
    for name in gpu:
        cluster.core.patch_node(name, {"spec": {"unschedulable": True}})
    try:
        wait_for(
            "the operator to see the cordon", lambda: schedulable_gpu_nodes_seen(operator) == 0
        )
        yield
    finally:
        for name in gpu:
            cluster.core.patch_node(name, {"spec": {"unschedulable": False}})
        wait_for(
            "the operator to see the GPU nodes back",
            lambda: schedulable_gpu_nodes_seen(operator) == len(gpu),
        )


@pytest.fixture
def cluster(operator, api_client, namespace) -> Cluster:  # type: ignore[no-untyped-def]
    return Cluster(api_client, namespace)


def test_gguf_model_runs_on_llama_cpp_and_kubectl_shows_it(cluster: Cluster, kube_env) -> None:
    cluster.create(model_deployment("qwen", resources={"gpus": 0}))
    wait_for("Available", lambda: cluster.condition_is("qwen", "Available", "True"))
    pods = cluster.running_pods("qwen")
    assert pods
    node = cluster.core.read_node(pods[0].spec.node_name)
    assert node.metadata.labels["kubernetes.io/arch"] == "amd64"
    assert "nvidia.com/gpu.present" not in node.metadata.labels

    md = cluster.md("qwen")
    assert md["status"]["engine"] == "llama.cpp"
    assert cluster.runtime_config("qwen")["engine"] == "llama.cpp"
    listed = subprocess.run(
        ["kubectl", "get", "md", "qwen", "-n", cluster.ns],
        env=kube_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, row = listed.splitlines()
    assert header.split()[:4] == ["NAME", "ENGINE", "READY", "ENDPOINT"]
    assert row.split()[1:4] == ["llama.cpp", "True", f"http://qwen.{cluster.ns}.svc:8000/v1"]


def test_vllm_listed_model_on_eight_h100s_runs_tensor_parallel(cluster: Cluster) -> None:
    cluster.create(
        model_deployment(
            "llama",
            model={
                "name": "llama-3.3-instruct",
                "format": "pytorch",
                "quantization": "none",
                "sizeInBillions": 70,
                "file": None,
            },
            resources={"gpus": 8},
        )
    )
    pods = wait_for("a Running vLLM pod", lambda: cluster.running_pods("llama"))
    assert cluster.md("llama")["status"]["engine"] == "vllm"
    assert cluster.runtime_config("llama")["params"]["tensor_parallel_size"] == 8
    node = cluster.core.read_node(pods[0].spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == H100
    limits = pods[0].spec.containers[0].resources.limits
    assert limits["nvidia.com/gpu"] == "8"


def test_pytorch_model_pinned_to_amd_gpus_runs_vllm_on_rocm(cluster: Cluster) -> None:
    model = {"format": "pytorch", "quantization": "none", "sizeInBillions": 7, "file": None}
    cluster.create(model_deployment("qwen-amd", model=model, resources={"gpuProduct": "MI300X"}))
    pods = wait_for(
        "a Running vLLM pod on the MI300X node", lambda: cluster.running_pods("qwen-amd")
    )
    assert cluster.md("qwen-amd")["status"]["placement"]["accelerator"] == "rocm"
    container = pods[0].spec.containers[0]
    assert container.image == "ghcr.io/kubeinfer/runtime-vllm-rocm:0.1.0"
    assert container.resources.limits["amd.com/gpu"] == "1"
    node = cluster.core.read_node(pods[0].spec.node_name)
    assert node.metadata.labels["amd.com/gpu.product-name"] == "AMD-Instinct-MI300X"


def test_model_outside_vllm_list_falls_back_to_transformers(cluster: Cluster) -> None:
    cluster.create(
        model_deployment(
            "phi",
            model={
                "name": "phi-3-mini",
                "format": "pytorch",
                "quantization": "none",
                "sizeInBillions": 4,
                "file": None,
            },
            resources={"gpus": 1},
        )
    )
    wait_for("Available", lambda: cluster.condition_is("phi", "Available", "True"))
    status = cluster.md("phi")["status"]
    assert status["engine"] == "transformers"
    vllm = next(c for c in status["candidates"] if c["engine"] == "vllm")
    assert not vllm["matched"] and "supported list" in vllm["reason"]


def test_forced_vllm_without_gpu_nodes_waits_then_runs_when_they_return(
    cluster: Cluster, operator
) -> None:
    with gpu_nodes_cordoned(cluster, operator):
        cluster.create(
            model_deployment(
                "forced",
                model={
                    "name": "qwen2.5-instruct",
                    "format": "pytorch",
                    "file": None,
                    "quantization": "none",
                    "sizeInBillions": 7,
                },
                engine="vllm",
                resources={"gpus": 1},
            )
        )
        selected = wait_for(
            "EngineSelected False",
            lambda: cluster.condition_is("forced", "EngineSelected", "False"),
        )
        assert selected["reason"] == "RequestedEngineCannotRun"
        assert "vllm" in selected["message"]
        assert cluster.deployment("forced") is None
    # The nodes came back: the waiting ModelDeployment is re-evaluated without a spec change.
    wait_for(
        "EngineSelected True", lambda: cluster.condition_is("forced", "EngineSelected", "True")
    )
    assert cluster.md("forced")["status"]["engine"] == "vllm"
    wait_for("the Deployment", lambda: cluster.deployment("forced"))


def test_more_gpus_than_any_node_leaves_pods_pending_with_the_schedulers_reason(
    cluster: Cluster,
) -> None:
    cluster.create(
        model_deployment(
            "huge",
            model={
                "name": "llama-3.1-instruct",
                "format": "pytorch",
                "file": None,
                "quantization": "none",
                "sizeInBillions": 405,
            },
            resources={"gpus": 9},
        )
    )
    available = wait_for(
        "Available False/Unschedulable",
        lambda: (
            (c := cluster.condition("huge", "Available")) and c["reason"] == "Unschedulable" and c
        ),
    )
    assert "Insufficient nvidia.com/gpu" in available["message"]
    assert all(p.status.phase == "Pending" for p in cluster.pods("huge"))
    # A Deployment's meaning: still progressing until the progress deadline, not Ready.
    progressing = cluster.condition("huge", "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "Unschedulable")
    assert cluster.condition_is("huge", "Ready", "False")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"model": {"format": "gguf", "file": None}},
            "spec.model.file is required when spec.model.format is gguf",
        ),
        (
            {"engine": "mlx", "model": {"format": "pytorch", "file": None}},
            "spec.engine mlx needs spec.model.format",
        ),
        ({"model": {"format": "onnx"}}, "spec.model.format"),
        ({"replicas": -1}, "spec.replicas"),
        (
            {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
            "spec.tolerations[*].value must be empty when operator is Exists",
        ),
        (
            {"tolerations": [{"key": "k", "tolerationSeconds": 5}]},
            "spec.tolerations[*].tolerationSeconds needs effect NoExecute",
        ),
        ({"nodeSelector": {"pool": "has space"}}, "spec.nodeSelector.pool"),
    ],
)
def test_invalid_manifests_are_refused_at_the_door(cluster: Cluster, spec, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiException) as refused:
        cluster.create(model_deployment("bad", **spec))
    assert refused.value.status == 422
    assert message in refused.value.body
    assert cluster.deployment("bad") is None


def test_spec_change_rolls_out_and_delete_removes_children(cluster: Cluster) -> None:
    variable = {"name": "KUBEINFER_TEST", "value": "1"}
    cluster.create(model_deployment("roll", resources={"gpus": 0}, env=[variable]))
    wait_for("Available", lambda: cluster.condition_is("roll", "Available", "True"))
    first = cluster.deployment("roll")
    first_hash = first.spec.template.metadata.annotations["kubeinfer.io/pod-template-hash"]
    assert first.spec.template.spec.containers[0].env[-1].name == "KUBEINFER_TEST"

    # The new spec also drops the variable: the Deployment must lose it (it was made by a
    # create, whose fields an apply prunes only once they are handed to it).
    cluster.patch_spec("roll", {"engineParams": {"n_ctx": 8192}, "env": None})

    def rolled() -> str | None:
        current = cluster.deployment("roll")
        value = current.spec.template.metadata.annotations["kubeinfer.io/pod-template-hash"]
        return value if value != first_hash else None

    wait_for("a new pod template", rolled)
    assert cluster.runtime_config("roll")["params"]["n_ctx"] == 8192
    env = cluster.deployment("roll").spec.template.spec.containers[0].env
    assert "KUBEINFER_TEST" not in [e.name for e in env]
    wait_for(
        "the rollout to finish",
        lambda: (
            cluster.condition_is("roll", "Ready", "True")
            and cluster.md("roll")["status"]["observedGeneration"] == 2
            and cluster.condition_is("roll", "Available", "True")
        ),
    )

    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, PLURAL, "roll")
    wait_for(
        "children to be garbage-collected",
        lambda: (
            cluster.deployment("roll") is None
            and not cluster.pods("roll")
            and not [
                s
                for s in cluster.core.list_namespaced_service(cluster.ns).items
                if s.metadata.name == "roll"
            ]
        ),
    )


def test_runtime_failure_reaches_degraded_with_the_diagnosis(cluster: Cluster) -> None:
    cluster.create(model_deployment("sick", resources={"gpus": 0}))
    pod = wait_for("a Running pod", lambda: cluster.running_pods("sick"))[0]
    diagnosis = (
        "KV cache full: the prompt does not fit the KV cache - reduce n_ctx, "
        "raise n_parallel, or lower n_gpu_layers"
    )
    # What the kubelet reports after the runtime wrote its termination message and exited.
    cluster.core.patch_namespaced_pod_status(
        pod.metadata.name,
        cluster.ns,
        {
            "status": {
                "containerStatuses": [
                    {
                        "name": "runtime",
                        "image": pod.spec.containers[0].image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 1,
                        "started": False,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                        "lastState": {
                            "terminated": {"exitCode": 1, "reason": "Error", "message": diagnosis}
                        },
                    }
                ],
            }
        },
    )
    degraded = wait_for("Degraded True", lambda: cluster.condition_is("sick", "Degraded", "True"))
    assert degraded["reason"] == "EngineFailed"
    assert diagnosis in degraded["message"]

    def warning_event() -> list[client.CoreV1Event]:
        events = cluster.core.list_namespaced_event(
            cluster.ns, field_selector="involvedObject.name=sick,type=Warning"
        ).items
        return [e for e in events if e.reason == "EngineFailed" and diagnosis in e.message]

    wait_for("a Warning event with the diagnosis", warning_event)


def test_operator_killed_mid_reconcile_converges_without_duplicates(
    cluster: Cluster, operator
) -> None:
    names = [f"burst-{i}" for i in range(12)]
    for name in names:
        cluster.create(model_deployment(name, resources={"gpus": 0}))
    operator.kill()
    operator.start()
    for name in names:
        wait_for(f"{name} Available", lambda n=name: cluster.condition_is(n, "Available", "True"))

    uids = {cluster.md(n)["metadata"]["uid"] for n in names}
    for kind, items in (
        ("Deployment", cluster.apps.list_namespaced_deployment(cluster.ns).items),
        ("Service", cluster.core.list_namespaced_service(cluster.ns).items),
    ):
        assert sorted(o.metadata.name for o in items) == sorted(names), kind
        assert {o.metadata.owner_references[0].uid for o in items} == uids, kind
    # The runtime config travels in the pod template: no ConfigMap of kubeinfer's.
    config_maps = cluster.core.list_namespaced_config_map(cluster.ns).items
    assert [c.metadata.name for c in config_maps if c.metadata.name != "kube-root-ca.crt"] == []
    assert len(cluster.apps.list_namespaced_replica_set(cluster.ns).items) == len(names)


def test_new_node_with_matching_labels_gives_a_waiting_deployment_its_engine(
    cluster: Cluster,
) -> None:
    cluster.create(
        model_deployment(
            "mlx",
            model={
                "name": "qwen2.5-instruct",
                "format": "mlx",
                "quantization": "Int4",
                "file": None,
            },
        )
    )
    selected = wait_for(
        "EngineSelected False", lambda: cluster.condition_is("mlx", "EngineSelected", "False")
    )
    assert "mlx" in selected["message"]
    mac = f"mac-{cluster.ns}"[:63]
    cluster.core.create_node(
        {
            "metadata": {
                "name": mac,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {
                    "kubernetes.io/os": "darwin",
                    "kubernetes.io/arch": "arm64",
                    "kubernetes.io/hostname": mac,
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": {"cpu": "12", "memory": "64Gi", "pods": "110"},
                "capacity": {"cpu": "12", "memory": "64Gi", "pods": "110"},
            },
        }
    )
    try:
        wait_for(
            "EngineSelected True", lambda: cluster.condition_is("mlx", "EngineSelected", "True")
        )
        assert cluster.md("mlx")["status"]["engine"] == "mlx"
        deployment = wait_for("the Deployment", lambda: cluster.deployment("mlx"))
        assert deployment.spec.template.spec.node_selector["kubernetes.io/os"] == "darwin"
    finally:
        cluster.core.delete_node(mac)


def test_operator_metrics_count_reconciles_and_decisions(cluster: Cluster, operator) -> None:
    cluster.create(model_deployment("metered", resources={"gpus": 0}))
    wait_for("Available", lambda: cluster.condition_is("metered", "Available", "True"))
    text = operator.metrics()
    assert 'kubeinfer_decisions_total{engine="llama.cpp"}' in text
    assert 'kubeinfer_reconciles_total{result="changed",trigger="spec"}' in text
    assert "kubeinfer_reconcile_duration_seconds_count" in text
    assert 'kubeinfer_modeldeployments{condition="Available",status="True"}' in text


def test_new_gpu_nodes_and_scaling_keep_the_engine_until_the_spec_changes(
    cluster: Cluster, operator
) -> None:
    with gpu_nodes_cordoned(cluster, operator):
        # A vLLM-listed model, but no usable GPU node: transformers on CPU.
        cluster.create(
            model_deployment(
                "steady",
                model={
                    "name": "qwen2.5-instruct",
                    "format": "pytorch",
                    "file": None,
                    "quantization": "none",
                    "sizeInBillions": 0.5,
                },
            )
        )
        wait_for("Available", lambda: cluster.condition_is("steady", "Available", "True"))
        assert cluster.md("steady")["status"]["engine"] == "transformers"

    # The GPUs are back and vLLM would now be preferred; scaling must not switch engines.
    cluster.patch_spec("steady", {"replicas": 2})
    wait_for("2 ready replicas", lambda: cluster.md("steady")["status"].get("readyReplicas") == 2)
    assert cluster.md("steady")["status"]["engine"] == "transformers"
    assert cluster.deployment("steady").metadata.labels["kubeinfer.io/engine"] == "transformers"

    # A real spec change decides again.
    cluster.patch_spec("steady", {"engineParams": {"max_model_len": 4096}})
    wait_for("the switch to vLLM", lambda: cluster.md("steady")["status"]["engine"] == "vllm")


def test_spec_the_apiserver_accepts_but_kubeinfer_cannot_read_changes_nothing(
    cluster: Cluster,
) -> None:
    # YAML reads `1: x` as the key "1": the apiserver cannot refuse it (no CEL over free-form
    # maps), so the operator does, naming the field, and creates nothing.
    cluster.create(model_deployment("odd", resources={"gpus": 0}, engineParams={"1": "x"}))
    selected = wait_for(
        "EngineSelected False", lambda: cluster.condition_is("odd", "EngineSelected", "False")
    )
    assert selected["reason"] == "InvalidSpec"
    assert "spec.engineParams.1" in selected["message"]
    assert cluster.deployment("odd") is None
