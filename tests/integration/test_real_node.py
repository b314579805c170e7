"""ModelDeployments in real pods: the images built here, on the real node's kubelet and
containerd, answering OpenAI requests through their Service. Skipped, with the reason, where
the machine cannot run a real node (see hack/controlplane/realnode.sh)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import REAL_NODE_LABEL, REAL_NODE_TOLERATION
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_operator import Cluster
from waiting import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubeinfer"
DEMO_VALUES = ROOT / "hack" / "demo" / "operator-values.yaml"  # on the real node
GGUF = {"name": "tiny-llama", "format": "gguf", "quantization": "F32", "file": "tiny-llama.gguf"}
HF = {"name": "tiny-llama", "format": "pytorch"}
# Real pods start engines on 2 cores: llama.cpp in about a second, transformers in tens.
READY_TIMEOUT = 240


def real_md(name: str, claim: str, model: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A ModelDeployment pinned to the real node, reading its weights from `claim`."""
    uri = f"pvc://{claim}" if model["format"] == "gguf" else f"pvc://{claim}/hf"
    return {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {**model, "uri": uri},
            "resources": {"gpus": 0, "cpu": "100m", "memory": "2Gi"},
            "nodeSelector": dict(REAL_NODE_LABEL),
            "tolerations": [dict(REAL_NODE_TOLERATION)],
            **spec,
        },
    }


def chat(base_url: str) -> str | None:
    """One short greedy chat completion, or None while the address does not answer yet
    (a ClusterIP routes a moment after the pod is Ready, once kube-proxy has synced)."""
    api = openai.OpenAI(base_url=base_url, api_key="unused", timeout=30, max_retries=0)
    try:
        reply = api.chat.completions.create(
            model="tiny-llama",
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=8,
            temperature=0,
        )
    except openai.APIConnectionError:
        return None
    return reply.choices[0].message.content or "<empty>"


def service_url(cluster: Cluster, name: str) -> str:
    ip = cluster.core.read_namespaced_service(name, cluster.ns).spec.cluster_ip
    return f"http://{ip}:8000/v1"


def answers_through_service(cluster: Cluster, name: str) -> str:
    started = time.monotonic()
    wait_for(
        f"{name} Available",
        lambda: cluster.condition_is(name, "Available", "True"),
        timeout=READY_TIMEOUT,
    )
    pods = cluster.running_pods(name)
    assert pods and all((p.spec.node_name or "").startswith("real") for p in pods)
    url = service_url(cluster, name)
    text = wait_for(f"an answer from {url}", lambda: chat(url), timeout=30)
    print(f"{name}: Available -> answer through the Service in {time.monotonic() - started:.1f}s")
    return text


def test_llama_cpp_answers_through_its_service(
    cluster: Cluster, model_claim: str, kube_env: dict[str, str]
) -> None:
    applied = time.monotonic()
    cluster.create(real_md("tiny-gguf", model_claim, GGUF, engineParams={"n_ctx": 256}))
    assert answers_through_service(cluster, "tiny-gguf")
    print(f"apply -> first answer (llama.cpp): {time.monotonic() - applied:.1f}s")
    assert cluster.md("tiny-gguf")["status"]["engine"] == "llama.cpp"


def test_transformers_answers_through_its_service(cluster: Cluster, model_claim: str) -> None:
    applied = time.monotonic()
    cluster.create(real_md("tiny-hf", model_claim, HF))
    assert answers_through_service(cluster, "tiny-hf")
    print(f"apply -> first answer (transformers): {time.monotonic() - applied:.1f}s")
    assert cluster.md("tiny-hf")["status"]["engine"] == "transformers"


def test_two_real_replicas_both_serve_and_delete_leaves_nothing(
    cluster: Cluster, model_claim: str
) -> None:
    cluster.create(real_md("tiny-two", model_claim, GGUF, replicas=2))
    wait_for(
        "2 ready replicas",
        lambda: (cluster.md("tiny-two").get("status") or {}).get("readyReplicas") == 2,
        timeout=READY_TIMEOUT,
    )
    pods = cluster.running_pods("tiny-two", count=2)
    assert len({p.status.pod_ip for p in pods}) == 2
    for pod in pods:
        url = f"http://{pod.status.pod_ip}:8000/v1"
        assert wait_for(f"an answer from pod {pod.metadata.name}", lambda u=url: chat(u))

    cluster.custom.delete_namespaced_custom_object(
        "kubeinfer.io", "v1alpha1", cluster.ns, "modeldeployments", "tiny-two"
    )
    wait_for("the pods gone", lambda: not cluster.pods("tiny-two"), timeout=90)
    for read in (
        cluster.apps.read_namespaced_deployment,
        cluster.core.read_namespaced_service,
    ):
        wait_for(f"{read.__name__} 404", lambda r=read: _gone(r, "tiny-two", cluster.ns))


def _gone(read: Any, name: str, namespace: str) -> bool:
    try:
        read(name, namespace)
    except ApiException as error:
        return error.status == 404
    return False


def test_a_misspelt_nested_parameter_is_refused_before_any_pod(
    cluster: Cluster, model_claim: str
) -> None:
    # llama.cpp's own parameter catalog knows sampling.top_k: the operator names the key and
    # its close match, and creates nothing (no pod that would crash-loop on it).
    cluster.create(real_md("tiny-typo", model_claim, GGUF, engineParams={"sampling.top_kk": 5}))
    refused = wait_for(
        "InvalidSpec naming the key",
        lambda: cluster.condition_is("tiny-typo", "EngineSelected", "False"),
        timeout=30,
    )
    assert refused["reason"] == "InvalidSpec", refused
    assert "spec.engineParams.sampling.top_kk" in refused["message"], refused
    assert "sampling.top_k" in refused["message"].replace("sampling.top_kk", ""), refused
    assert cluster.deployment("tiny-typo") is None and not cluster.pods("tiny-typo")


def test_an_engine_that_cannot_start_is_degraded_with_its_diagnosis(
    cluster: Cluster, model_claim: str
) -> None:
    # The KV cache for 2^27 tokens (64 GiB) cannot be allocated: llama.cpp fails at load,
    # the runtime writes its diagnosis to the termination message and exits.
    cluster.create(real_md("tiny-big-ctx", model_claim, GGUF, engineParams={"n_ctx": 1 << 27}))
    degraded = wait_for(
        "Degraded with the runtime's diagnosis",
        lambda: cluster.condition_is("tiny-big-ctx", "Degraded", "True"),
        timeout=READY_TIMEOUT,
    )
    assert "n_ctx" in degraded["message"], degraded


def test_a_prompt_over_the_context_is_refused_and_diagnosed(
    cluster: Cluster, model_claim: str
) -> None:
    cluster.create(real_md("tiny-ctx", model_claim, GGUF, engineParams={"n_ctx": 64}))
    answers_through_service(cluster, "tiny-ctx")
    api = openai.OpenAI(base_url=service_url(cluster, "tiny-ctx"), api_key="unused", timeout=30)
    with pytest.raises(openai.BadRequestError, match="exceeds the available context size"):
        api.completions.create(
            model="tiny-llama", prompt="The quick brown fox. " * 40, max_tokens=4
        )
    # The runtime recognised it: its metrics (the Service's metrics port) count the diagnosis.
    ip = cluster.core.read_namespaced_service("tiny-ctx", cluster.ns).spec.cluster_ip
    import urllib.request

    def counted() -> bool:
        with urllib.request.urlopen(f"http://{ip}:9090/metrics", timeout=5) as reply:
            body = reply.read().decode()
        return 'kubeinfer_runtime_diagnoses_total{kind="context_exceeded"} 1.0' in body

    assert wait_for("the diagnosis counted", counted, timeout=15)


@pytest.fixture
def cluster(operator, api_client: client.ApiClient, namespace: str) -> Cluster:  # type: ignore[no-untyped-def]
    return Cluster(api_client, namespace)


def test_the_chart_runs_the_operator_as_a_pod_that_reconciles(
    operator: Any,
    api_client: client.ApiClient,
    namespace: str,
    model_claim: str,
    kube_env: dict[str, str],
) -> None:
    """helm install: the operator image, as a pod on the real node under the chart's own
    ServiceAccount and RBAC, reaches the API server and makes a model answer."""
    release = f"ki-{namespace.rsplit('-', 1)[-1]}"
    helm = ["helm", "install", release, str(CHART), "-n", namespace, "--skip-crds"]
    values = ["-f", str(DEMO_VALUES), "--set", f"operator.watchNamespaces={{{namespace}}}"]
    operator.stop()  # the session's operator process would reconcile the same objects
    try:
        installed = subprocess.run(
            [*helm, *values, "--wait", "--timeout", "180s"],
            env=kube_env,
            capture_output=True,
            text=True,
        )
        assert installed.returncode == 0, installed.stderr
        cluster = Cluster(api_client, namespace)
        (pod,) = cluster.core.list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/instance={release}"
        ).items
        assert pod.spec.node_name.startswith("real") and pod.status.phase == "Running"
        assert pod.spec.service_account_name == f"{release}-kubeinfer"

        # With the process stopped, only the pod can have made this model answer.
        cluster.create(real_md("tiny-by-pod", model_claim, GGUF))
        assert answers_through_service(cluster, "tiny-by-pod")
        # Its log, read through the kubelet, shows no request its namespaced RBAC refused.
        log = cluster.core.read_namespaced_pod_log(pod.metadata.name, namespace)
        assert "Initial authentication has finished" in log
        assert "forbidden" not in log.lower(), log[-2000:]
    finally:
        subprocess.run(
            ["helm", "uninstall", release, "-n", namespace, "--wait", "--timeout", "60s"],
            env=kube_env,
            capture_output=True,
        )
        operator.start()


def test_nothing_addressed_to_the_cluster_ranges_leaves_the_machine(real_node: str) -> None:
    # A ClusterIP no Service holds (or one kube-proxy has not programmed yet) and a pod
    # address no pod holds: routed to the bridge, so nothing beyond this machine answers.
    import socket

    for address in ("198.19.255.254", "198.18.200.200"):
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(2)
            s.connect((address, 80))
