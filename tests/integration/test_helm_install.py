"""The Helm chart against a real apiserver: install, what it creates, RBAC that works, uninstall.

The operator pod itself does not run here (KWOK plays the kubelet); the test checks the objects
the chart creates and that the apiserver grants the operator's ServiceAccount its rules.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from waiting import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubeinfer"
CRD_NAME = "modeldeployments.kubeinfer.io"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


def crd_exists(api_client: client.ApiClient) -> bool:
    try:
        client.ApiextensionsV1Api(api_client).read_custom_resource_definition(CRD_NAME)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


@pytest.fixture
def release(
    kube_env: dict[str, str], namespace: str, api_client: client.ApiClient
) -> Iterator[str]:
    """The chart installed into the test's namespace under a release name of its own.

    The CRD is cluster-scoped and shared with other tests: installed from the chart only when
    absent (an identical CRD is harmless), and never removed (Helm leaves CRDs in place).
    """
    name = f"ki-{namespace.rsplit('-', 1)[-1]}"
    skip_crds = ["--skip-crds"] if crd_exists(api_client) else []
    installed = run(["helm", "install", name, str(CHART), "-n", namespace, *skip_crds], kube_env)
    assert "kubeinfer 0.1.0 is installed" in installed.stdout  # NOTES.txt
    try:
        yield name
    finally:
        subprocess.run(
            ["helm", "uninstall", name, "-n", namespace, "--wait", "--timeout", "60s"],
            env=kube_env,
            capture_output=True,
            check=False,
        )


def can_i(kube_env: dict[str, str], account: str, *request: str) -> bool:
    result = subprocess.run(
        ["kubectl", "auth", "can-i", "--as", account, *request],
        env=kube_env,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() == "yes"


def test_install_creates_the_operator_and_uninstall_removes_it(
    kube_env: dict[str, str], namespace: str, api_client: client.ApiClient, release: str
) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    fullname = f"{release}-kubeinfer"

    assert crd_exists(api_client)
    account = core.read_namespaced_service_account(fullname, namespace)
    assert account.metadata.labels["app.kubernetes.io/instance"] == release
    role = rbac.read_cluster_role(fullname)
    rules_file = yaml.safe_load((CHART / "files" / "clusterrole-rules.yaml").read_text())
    assert len(role.rules) == len(rules_file)
    binding = rbac.read_cluster_role_binding(fullname)
    assert (binding.subjects[0].name, binding.subjects[0].namespace) == (fullname, namespace)

    deployment = apps.read_namespaced_deployment(fullname, namespace)
    assert deployment.spec.strategy.type == "Recreate"
    (container,) = deployment.spec.template.spec.containers
    assert container.image == "ghcr.io/kubeinfer/operator:0.1.0"
    images = core.read_namespaced_config_map(f"{fullname}-images", namespace)
    assert "llamaCpp" in yaml.safe_load(images.data["images.yaml"])
    service = core.read_namespaced_service(f"{fullname}-metrics", namespace)
    assert [(p.name, p.port) for p in service.spec.ports] == [("metrics", 9090)]

    # The apiserver's authorizer grants exactly what the rules say, to this release's account.
    operator = f"system:serviceaccount:{namespace}:{fullname}"
    assert can_i(kube_env, operator, "watch", "modeldeployments.kubeinfer.io", "-A")
    assert can_i(kube_env, operator, "patch", "modeldeployments.kubeinfer.io/status", "-A")
    assert can_i(kube_env, operator, "create", "deployments.apps", "-n", "default")
    assert can_i(kube_env, operator, "list", "nodes")
    assert not can_i(kube_env, operator, "delete", "deployments.apps", "-n", "default")
    assert not can_i(kube_env, operator, "get", "secrets", "-n", namespace)

    run(["helm", "uninstall", release, "-n", namespace, "--wait", "--timeout", "60s"], kube_env)

    def gone() -> bool:
        try:
            rbac.read_cluster_role(fullname)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for("the release's ClusterRole to be deleted", gone)
    assert not apps.list_namespaced_deployment(namespace).items
    assert crd_exists(api_client), "helm uninstall must leave the shared CRD in place"


def test_upgrade_with_new_runtime_images_updates_the_config_map(
    kube_env: dict[str, str], namespace: str, api_client: client.ApiClient, release: str
) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    fullname = f"{release}-kubeinfer"

    def checksum() -> str:
        deployment = apps.read_namespaced_deployment(fullname, namespace)
        value: str = deployment.spec.template.metadata.annotations["checksum/images"]
        return value

    before = checksum()
    run(
        [
            "helm",
            "upgrade",
            release,
            str(CHART),
            "-n",
            namespace,
            "--reuse-values",
            "--set",
            "runtimeImages.vllm.cuda=registry.local/vllm:0.11.0-cu128",
        ],
        kube_env,
    )
    images = yaml.safe_load(
        core.read_namespaced_config_map(f"{fullname}-images", namespace).data["images.yaml"]
    )
    assert images["vllm"]["cuda"] == "registry.local/vllm:0.11.0-cu128"
    assert images["vllm"]["rocm"].endswith("runtime-vllm-rocm:0.1.0")  # the other variant kept
    assert checksum() != before
