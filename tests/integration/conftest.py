"""The operator under test: the CRD installed, and `kubeinfer operator` running as a local
process under its own ServiceAccount and the chart's minimal ClusterRole (not as admin)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "modeldeployments.kubeinfer.io.yaml"
IDENTITY = ROOT / "hack" / "operator-identity.sh"
OPERATOR_NAMESPACE = "kubeinfer-system"
OPERATOR_NAME = "kubeinfer-operator-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """Starts, kills and restarts the operator; keeps its log for failure reports."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig, self.log = kubeconfig, log
        self.metrics_port, self.liveness_port = _free_port(), _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "kubeinfer"),
                    "operator",
                    "--metrics-port",
                    str(self.metrics_port),
                    "--liveness-port",
                    str(self.liveness_port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"operator exited:\n{self.log.read_text()[-3000:]}"
            try:
                with socket.create_connection(("127.0.0.1", self.liveness_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"operator did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything (a crash, an evicted pod)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as reply:
            return str(reply.read().decode())


def _operator_kubeconfig(admin_kubeconfig: str, path: Path) -> None:
    """A kubeconfig holding a token of the operator's ServiceAccount (hack/operator-identity.sh,
    as the demo and the benchmark make it)."""
    subprocess.run(
        ["bash", str(IDENTITY), str(path), OPERATOR_NAME, OPERATOR_NAMESPACE, "2h"],
        env={**os.environ, "KUBECONFIG": admin_kubeconfig},
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def crd_installed(kube_env: dict[str, str]) -> None:
    subprocess.run(
        ["kubectl", "apply", "--server-side", "--force-conflicts", "-f", str(CRD)],
        env=kube_env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "kubectl",
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/modeldeployments.kubeinfer.io",
        ],
        env=kube_env,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def operator(
    crd_installed: None,
    api_client: client.ApiClient,
    kubeconfig: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("operator")
    operator_kubeconfig = workdir / "kubeconfig"
    _operator_kubeconfig(kubeconfig, operator_kubeconfig)
    process = OperatorProcess(operator_kubeconfig, workdir / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        # An RBAC denial means the ClusterRole lacks a rule (namespaces that tests delete
        # refuse writes too, but those name no user).
        denials = re.findall(
            r'User "system:serviceaccount:[^"]+" cannot [^"]+', process.log.read_text()
        )
        assert not denials, denials[:3]


# The real node (hack/controlplane/realnode.sh): a kubelet and containerd on this machine,
# labelled and tainted so that only pods that ask for it land there.
REAL_NODE_LABEL = {"kubeinfer.io/node-kind": "real"}
REAL_NODE_TOLERATION = {
    "key": "kubeinfer.io/real-node",
    "operator": "Exists",
    "effect": "NoSchedule",
}
CLUSTER_STATE = Path(os.environ.get("KUBEINFER_CLUSTER_DIR", ROOT / ".cache" / "cluster"))
NODE_MODELS = Path(os.environ.get("KUBEINFER_CACHE", Path.home() / ".cache" / "kubeinfer")) / "node"


@pytest.fixture(scope="session")
def real_node(api_client: client.ApiClient) -> str:
    """The name of a Ready real node, or a skip saying why there is none."""
    selector = ",".join(f"{k}={v}" for k, v in REAL_NODE_LABEL.items())
    for node in client.CoreV1Api(api_client).list_node(label_selector=selector).items:
        conditions = node.status.conditions or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            return str(node.metadata.name)
    skipped = CLUSTER_STATE / "real-node.skipped"
    reason = (
        skipped.read_text().strip() if skipped.exists() else f"no Ready node labelled {selector}"
    )
    pytest.skip(f"no real node: {reason}")


@pytest.fixture(scope="session")
def tiny_models_dir(real_node: str) -> Path:
    """The tiny models on the real node's disk (this machine's), built once per machine."""
    import tiny_model

    return tiny_model.build(NODE_MODELS / "models").gguf_path.parent


def local_volume(
    name: str,
    path: Path,
    node: str,
    *,
    access_mode: str,
    storage_class: str,
    claim_ref: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A local PersistentVolume of 1Gi at `path` on `node` (this cluster has no provisioner),
    labelled for the tests."""
    spec: dict[str, Any] = {
        "capacity": {"storage": "1Gi"},
        "accessModes": [access_mode],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": storage_class,
        "local": {"path": str(path)},
        "nodeAffinity": {
            "required": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                        ]
                    }
                ]
            }
        },
    }
    if claim_ref:
        spec["claimRef"] = claim_ref
    return {"metadata": {"name": name, "labels": {"kubeinfer.io/test": "true"}}, "spec": spec}


@pytest.fixture
def model_claim(
    api_client: client.ApiClient, namespace: str, real_node: str, tiny_models_dir: Path
) -> Iterator[str]:
    """A PVC `tiny-models` bound to a local PersistentVolume on the real node holding the
    tiny models (tiny-llama.gguf, hf/), as a platform team would pre-provision weights."""
    core = client.CoreV1Api(api_client)
    claim, volume = "tiny-models", f"{namespace}-tiny-models"
    core.create_persistent_volume(
        local_volume(
            volume,
            tiny_models_dir,
            real_node,
            access_mode="ReadOnlyMany",
            storage_class="",
            claim_ref={"namespace": namespace, "name": claim},
        )
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    try:
        yield claim
    finally:
        core.delete_persistent_volume(volume)
