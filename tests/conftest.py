"""Session fixtures for the proving ground.

The control plane starts once per session (hack/controlplane/up.sh, built on first use), unless
KUBECONFIG names a reachable cluster (kind, k3d, a real one), which is then used as it is. A
control plane this session started is stopped at the end (KUBEINFER_KEEP_CLUSTER=1 keeps it).
Every test that asks for `namespace` gets its own, deleted afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTROLPLANE = ROOT / "hack" / "controlplane"
CLUSTER_STATE = Path(os.environ.get("KUBEINFER_CLUSTER_DIR", ROOT / ".cache" / "cluster"))


def _kubectl() -> str:
    built = ROOT / "bin" / "kubectl"
    return str(built) if built.exists() else "kubectl"


def _reachable(kubeconfig: str) -> bool:
    result = subprocess.run(
        [_kubectl(), "--kubeconfig", kubeconfig, "--request-timeout=5s", "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
    )
    return result.returncode == 0


def _local_apiserver_running() -> bool:
    pidfile = CLUSTER_STATE / "kube-apiserver.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[str]:
    """Path of a kubeconfig for a reachable cluster."""
    given = os.environ.get("KUBEINFER_TEST_KUBECONFIG") or os.environ.get("KUBECONFIG")
    if given and _reachable(given):
        yield given
        return
    already_up = _local_apiserver_running()
    up = subprocess.run(
        ["bash", str(CONTROLPLANE / "up.sh")], stdout=subprocess.PIPE, text=True, check=True
    )
    match = re.search(r"^export KUBECONFIG=(.+)$", up.stdout, re.MULTILINE)
    assert match, f"up.sh printed no kubeconfig: {up.stdout}"
    try:
        yield match.group(1)
    finally:
        if not already_up and os.environ.get("KUBEINFER_KEEP_CLUSTER") != "1":
            subprocess.run(["bash", str(CONTROLPLANE / "down.sh")], check=False)


@pytest.fixture(scope="session")
def kube_env(kubeconfig: str) -> dict[str, str]:
    """Environment for kubectl/helm subprocesses aimed at the test cluster."""
    return {**os.environ, "KUBECONFIG": kubeconfig, "PATH": f"{ROOT / 'bin'}:{os.environ['PATH']}"}


@pytest.fixture(scope="session")
def api_client(kubeconfig: str):  # type: ignore[no-untyped-def]
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture
def namespace(api_client, request: pytest.FixtureRequest) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A namespace of the test's own, deleted (with everything in it) afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"kubeinfer.io/test": "true"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")
