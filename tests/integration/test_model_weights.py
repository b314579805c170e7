"""Model weights from a hub, on the real node: a token from a Secret, a shared cache filled
once by a download Job, pinned revisions. The hub is tests/hub_server.py on the node's bridge
address (pods reach the host there), serving the tiny GGUF and counting the bytes it sends."""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REAL_NODE_LABEL, REAL_NODE_TOLERATION, local_volume
from hub_server import Hub, Repo, serve
from kubernetes import client
from test_operator import Cluster
from test_real_node import READY_TIMEOUT, chat, service_url
from waiting import wait_for

pytestmark = pytest.mark.cluster

BRIDGE = "198.18.0.1"  # the real node's bridge: the host, as pods see it
TOKEN = "hf_" + secrets.token_hex(16)
GGUF = "tiny-llama.gguf"


@pytest.fixture
def hub(tiny_models_dir: Path) -> Iterator[Hub]:
    repos = {
        "kubeinfer/tiny": Repo(tiny_models_dir, revisions=("main", "v1")),
        "kubeinfer/tiny-gated": Repo(tiny_models_dir, gated=True),
    }
    with serve(repos, TOKEN, host=BRIDGE) as running:
        yield running


@pytest.fixture
def cache_class(api_client: client.ApiClient, namespace: str, real_node: str) -> Iterator[str]:
    """Local PersistentVolumes on the real node for the caches' claims (this cluster has no
    provisioner): a class of the test's own, two volumes (two sources)."""
    core = client.CoreV1Api(api_client)
    klass = f"cache-{namespace}"[:63]
    folders = [Path(tempfile.mkdtemp(prefix="kubeinfer-cache-")) for _ in range(2)]
    for index, folder in enumerate(folders):
        folder.chmod(0o777)  # the runtime runs as uid 1000
        volume = local_volume(
            f"{klass}-{index}",
            folder,
            real_node,
            access_mode="ReadWriteOnce",
            storage_class=klass,
        )
        core.create_persistent_volume(volume)
    try:
        yield klass
    finally:
        for index, folder in enumerate(folders):
            core.delete_persistent_volume(f"{klass}-{index}")
            shutil.rmtree(folder, ignore_errors=True)


def hub_md(name: str, hub: Hub, klass: str, uri: str, **spec: Any) -> dict[str, Any]:
    env = [{"name": "HF_ENDPOINT", "value": hub.url}, *spec.pop("env", [])]
    return {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "name": "tiny-llama",
                "format": "gguf",
                "quantization": "F32",
                "uri": uri,
                "file": GGUF,
                "cache": {"size": "1Gi", "storageClassName": klass},
            },
            "engineParams": {"n_ctx": 256},
            "resources": {"gpus": 0, "cpu": "100m", "memory": "2Gi"},
            "nodeSelector": dict(REAL_NODE_LABEL),
            "tolerations": [dict(REAL_NODE_TOLERATION)],
            "env": env,
            **spec,
        },
    }


TOKEN_ENV = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}


@pytest.fixture
def cluster(operator, api_client: client.ApiClient, namespace: str) -> Cluster:  # type: ignore[no-untyped-def]
    return Cluster(api_client, namespace)


def test_a_gated_model_from_a_secret_cached_once_and_the_token_nowhere(
    cluster: Cluster, operator: Any, hub: Hub, cache_class: str, tiny_models_dir: Path
) -> None:
    size = (tiny_models_dir / GGUF).stat().st_size
    uri = "hf://kubeinfer/tiny-gated"
    # Without a token: the download Job fails, and the condition says why.
    cluster.create(hub_md("gated", hub, cache_class, uri))
    failed = wait_for(
        "ModelCache DownloadFailed",
        lambda: _reason_is(cluster, "gated", "ModelCache", "DownloadFailed"),
        timeout=READY_TIMEOUT,
    )
    assert "is gated and no HF_TOKEN is set" in failed["message"], failed
    assert cluster.condition_is("gated", "Degraded", "True")["reason"] == "ModelFetchFailed"
    assert cluster.deployment("gated") is None  # no engine pod before the weights are there

    # HF_TOKEN from a Secret that is not there yet: the spec change runs the Job again, and it
    # waits for the Secret, saying so.
    cluster.patch_spec("gated", {"env": [{"name": "HF_ENDPOINT", "value": hub.url}, TOKEN_ENV]})
    waiting = wait_for(
        "ModelCache naming the missing Secret",
        lambda: (
            (c := _reason_is(cluster, "gated", "ModelCache", "Downloading"))
            and 'secret "hf" not found' in c["message"]
            and c
        ),
        timeout=READY_TIMEOUT,
    )
    print(f"waiting for the Secret: {waiting['message']}")
    cluster.core.create_namespaced_secret(
        cluster.ns, {"metadata": {"name": "hf"}, "stringData": {"token": TOKEN}}
    )
    started = time.monotonic()
    wait_for(
        "Available",
        lambda: cluster.condition_is("gated", "Available", "True"),
        timeout=READY_TIMEOUT,
    )
    cold = time.monotonic() - started
    assert cluster.condition_is("gated", "ModelCache", "True")
    url = service_url(cluster, "gated")
    assert wait_for(f"an answer from {url}", lambda: chat(url), timeout=30)
    assert hub.bytes_served() == size

    # A second ModelDeployment of the same weights: the cache is there, nothing is fetched.
    started = time.monotonic()
    cluster.create(hub_md("gated-too", hub, cache_class, uri, env=[TOKEN_ENV]))
    wait_for(
        "Available",
        lambda: cluster.condition_is("gated-too", "Available", "True"),
        timeout=READY_TIMEOUT,
    )
    warm = time.monotonic() - started
    print(f"apply -> Available: cold cache {cold:.1f}s (download Job included), warm {warm:.1f}s")

    # Two replicas and a pod restart: still one download.
    cluster.patch_spec("gated", {"replicas": 2})
    wait_for(
        "2 ready",
        lambda: (cluster.md("gated").get("status") or {}).get("readyReplicas") == 2,
        timeout=READY_TIMEOUT,
    )
    victim = cluster.running_pods("gated", count=2)[0]
    cluster.core.delete_namespaced_pod(victim.metadata.name, cluster.ns)
    wait_for(
        "the replacement ready",
        lambda: (
            len(cluster.running_pods("gated", count=2)) == 2
            and victim.metadata.name
            not in {p.metadata.name for p in cluster.running_pods("gated", count=2)}
            and (cluster.md("gated").get("status") or {}).get("readyReplicas") == 2
        ),
        timeout=READY_TIMEOUT,
    )
    assert hub.bytes_served() == size, hub.served
    print(f"hub bytes: {hub.bytes_served()} for 3 engine pods and a restart ({size} a copy)")

    # The token: in the Secret and nowhere else, in no object and no log.
    assert _objects_holding(cluster, TOKEN) == ["Secret/hf"]
    logs = [
        cluster.core.read_namespaced_pod_log(p.metadata.name, cluster.ns)
        for p in cluster.core.list_namespaced_pod(cluster.ns).items
        if p.status.phase in ("Running", "Succeeded", "Failed")
    ]
    assert logs and not any(TOKEN in log for log in logs)
    assert TOKEN not in operator.log.read_text()


def test_pinned_revisions_cold_cache_and_no_cache(
    cluster: Cluster, hub: Hub, cache_class: str, tiny_models_dir: Path
) -> None:
    size = (tiny_models_dir / GGUF).stat().st_size
    # A revision the repo does not have: named in the condition, nothing served.
    cluster.create(hub_md("bad-rev", hub, cache_class, "hf://kubeinfer/tiny@v9"))
    failed = wait_for(
        "ModelCache DownloadFailed",
        lambda: _reason_is(cluster, "bad-rev", "ModelCache", "DownloadFailed"),
        timeout=READY_TIMEOUT,
    )
    assert "kubeinfer/tiny has no revision 'v9'" in failed["message"], failed
    assert hub.bytes_served() == 0

    # A pinned revision through a cold cache, from apply to Available.
    started = time.monotonic()
    cluster.create(hub_md("pinned", hub, cache_class, "hf://kubeinfer/tiny@v1"))
    wait_for(
        "Available",
        lambda: cluster.condition_is("pinned", "Available", "True"),
        timeout=READY_TIMEOUT,
    )
    cold = time.monotonic() - started
    assert hub.bytes_served() == size

    # Without a cache, each replica downloads into its own emptyDir.
    started = time.monotonic()
    plain = hub_md("plain", hub, cache_class, "hf://kubeinfer/tiny@v1", replicas=2)
    del plain["spec"]["model"]["cache"]
    cluster.create(plain)
    wait_for(
        "2 ready",
        lambda: (cluster.md("plain").get("status") or {}).get("readyReplicas") == 2,
        timeout=READY_TIMEOUT,
    )
    uncached = time.monotonic() - started
    assert hub.bytes_served() - size == 2 * size
    print(
        f"apply -> Available: cold cache {cold:.1f}s; without a cache, 2 replicas "
        f"{uncached:.1f}s and {2 * size} bytes ({size} per replica)"
    )


def test_download_progress_shows_in_the_condition(
    cluster: Cluster, hub: Hub, cache_class: str, tmp_path: Path
) -> None:
    # huggingface_hub reports progress every 10 MiB: weights of 30 MiB over a slow link (the
    # engine never gets them to load: only the download matters here).
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / GGUF).write_bytes(secrets.token_bytes(30 * 2**20))
    hub.repos["kubeinfer/big"] = Repo(tmp_path / "big")
    hub.rate = 30 * 2**20 // 24
    cluster.create(hub_md("slow", hub, cache_class, "hf://kubeinfer/big"))

    def progress_shown() -> str | None:
        found = _reason_is(cluster, "slow", "ModelCache", "Downloading")
        message = found["message"] if found else ""
        return message if re.search(r": [1-9][\d.]*/30\.0 MiB \(\d+%\)$", message) else None

    shown = wait_for("bytes done/total in ModelCache", progress_shown, timeout=READY_TIMEOUT)
    print(f"ModelCache while downloading: {shown}")
    wait_for(
        "Ready",
        lambda: cluster.condition_is("slow", "ModelCache", "True"),
        timeout=READY_TIMEOUT,
    )


def _cache_job(cluster: Cluster) -> client.V1Job | None:
    jobs = client.BatchV1Api(cluster.core.api_client).list_namespaced_job(cluster.ns).items
    live = [j for j in jobs if not j.metadata.deletion_timestamp]
    return live[0] if len(live) == 1 else None


def _cache_claim(cluster: Cluster) -> client.V1PersistentVolumeClaim | None:
    claims = cluster.core.list_namespaced_persistent_volume_claim(cluster.ns).items
    return claims[0] if len(claims) == 1 else None


def test_a_download_job_deleted_halfway_is_made_again_and_continues(
    cluster: Cluster, hub: Hub, cache_class: str, tmp_path: Path
) -> None:
    size = 30 * 2**20
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / GGUF).write_bytes(secrets.token_bytes(size))
    hub.repos["kubeinfer/big"] = Repo(tmp_path / "big")
    hub.rate = size // 20
    cluster.create(hub_md("halfway", hub, cache_class, "hf://kubeinfer/big"))
    # Past huggingface_hub's first 10 MiB chunk, which the runtime has then written.
    wait_for(
        "12 MiB served",
        lambda: hub.bytes_served() > 12 * 2**20,
        timeout=READY_TIMEOUT,
    )
    first = _cache_job(cluster)
    assert first is not None
    client.BatchV1Api(cluster.core.api_client).delete_namespaced_job(
        first.metadata.name, cluster.ns, propagation_policy="Background"
    )
    again = wait_for(
        "a new download Job",
        lambda: (j := _cache_job(cluster)) and j.metadata.uid != first.metadata.uid and j,
        timeout=60,
    )
    hub.rate = None
    wait_for(
        "ModelCache Ready",
        lambda: cluster.condition_is("halfway", "ModelCache", "True"),
        timeout=READY_TIMEOUT,
    )
    served = hub.bytes_served()
    print(f"download Job deleted halfway and made again: {served / 2**20:.1f} MiB served for 30")
    # The new Job's pod continued from the partial file on the claim (what the first pod had
    # received but not written, at most a 10 MiB chunk, is sent again).
    assert served < size + 11 * 2**20, hub.served
    assert (
        again.metadata.annotations["kubeinfer.io/claim-uid"] == _cache_claim(cluster).metadata.uid
    )  # type: ignore[union-attr]


def test_a_failed_download_runs_again_on_a_timer(
    cluster: Cluster, hub: Hub, cache_class: str, tiny_models_dir: Path
) -> None:
    # The hub answers 400 (not retried by the runtime, not a refusal that lasts): the Job
    # fails at once and runs again a minute later, without any change to the spec.
    hub.broken = 400
    cluster.create(hub_md("later", hub, cache_class, "hf://kubeinfer/tiny"))
    failed = wait_for(
        "ModelCache DownloadFailed",
        lambda: _reason_is(cluster, "later", "ModelCache", "DownloadFailed"),
        timeout=READY_TIMEOUT,
    )
    assert "the hub answered 400" in failed["message"], failed
    assert "(retrying in 60 s from the failure, at " in failed["message"], failed
    print(f"failed download: {failed['message']}")
    hub.broken = None
    started = time.monotonic()
    wait_for(
        "ModelCache Ready",
        lambda: cluster.condition_is("later", "ModelCache", "True"),
        timeout=READY_TIMEOUT,
    )
    print(f"ran again and filled the cache {time.monotonic() - started:.0f} s after the fix")
    job = _cache_job(cluster)
    assert job is not None and job.metadata.annotations["kubeinfer.io/download-attempt"] == "2"
    assert hub.bytes_served() == (tiny_models_dir / GGUF).stat().st_size


def test_a_deleted_cache_job_or_claim_after_ready(
    cluster: Cluster, hub: Hub, cache_class: str, tiny_models_dir: Path
) -> None:
    size = (tiny_models_dir / GGUF).stat().st_size
    cluster.create(hub_md("kept", hub, cache_class, "hf://kubeinfer/tiny"))
    wait_for(
        "Available",
        lambda: cluster.condition_is("kept", "Available", "True"),
        timeout=READY_TIMEOUT,
    )
    claim = _cache_claim(cluster)
    assert claim is not None
    assert "kubeinfer.io/filled-by-job" in (claim.metadata.annotations or {})

    # The Job deleted once it has filled the claim: the claim says it is filled, no new Job.
    job = _cache_job(cluster)
    assert job is not None
    client.BatchV1Api(cluster.core.api_client).delete_namespaced_job(
        job.metadata.name, cluster.ns, propagation_policy="Background"
    )
    wait_for("the Job gone", lambda: _cache_job(cluster) is None, timeout=60)
    time.sleep(3)  # the operator has seen the deletion
    assert _cache_job(cluster) is None
    assert cluster.condition_is("kept", "Available", "True")
    assert cluster.condition_is("kept", "ModelCache", "True")
    assert hub.bytes_served() == size

    # The claim deleted while the engine pod uses it: it stays (pvc-protection) and the pod
    # keeps serving; ModelCache says so.
    cluster.core.delete_namespaced_persistent_volume_claim(claim.metadata.name, cluster.ns)
    said = wait_for(
        "ModelCache saying the claim is being deleted",
        lambda: (
            (c := cluster.condition_is("kept", "ModelCache", "True"))
            and "being deleted" in c["message"]
            and c
        ),
        timeout=60,
    )
    print(f"claim deleted under a running pod: {said['message']}")
    assert cluster.condition_is("kept", "Available", "True")
    url = service_url(cluster, "kept")
    assert wait_for(f"an answer from {url}", lambda: chat(url), timeout=30)

    # Once no pod uses it, it goes; kubeinfer creates it again (the second volume) and fills
    # it, and the engine starts from it.
    (pod,) = cluster.running_pods("kept")
    cluster.core.delete_namespaced_pod(pod.metadata.name, cluster.ns)
    wait_for(
        "a new claim",
        lambda: (c := _cache_claim(cluster)) and c.metadata.uid != claim.metadata.uid,
        timeout=READY_TIMEOUT,
    )
    wait_for(
        "Available again, from the new claim",
        lambda: (
            cluster.condition_is("kept", "Available", "True")
            and cluster.running_pods("kept")
            and hub.bytes_served() == 2 * size
        ),
        timeout=READY_TIMEOUT,
    )
    assert wait_for(f"an answer from {url}", lambda: chat(url), timeout=30)


def _reason_is(cluster: Cluster, name: str, type_: str, reason: str) -> dict[str, Any] | None:
    found = cluster.condition(name, type_)
    return found if found and found["reason"] == reason else None


def _objects_holding(cluster: Cluster, text: str) -> list[str]:
    api = cluster.core.api_client
    found = []
    for kind, items in (
        ("Secret", cluster.core.list_namespaced_secret(cluster.ns).items),
        ("ConfigMap", cluster.core.list_namespaced_config_map(cluster.ns).items),
        ("Pod", cluster.core.list_namespaced_pod(cluster.ns).items),
        ("Event", cluster.core.list_namespaced_event(cluster.ns).items),
        (
            "PersistentVolumeClaim",
            cluster.core.list_namespaced_persistent_volume_claim(cluster.ns).items,
        ),
        ("Deployment", cluster.apps.list_namespaced_deployment(cluster.ns).items),
        ("Job", client.BatchV1Api(api).list_namespaced_job(cluster.ns).items),
    ):
        for item in items:
            plain = api.sanitize_for_serialization(item)
            if kind == "Secret":
                import base64

                plain = {k: base64.b64decode(v).decode() for k, v in (item.data or {}).items()}
            if text in str(plain):
                found.append(f"{kind}/{item.metadata.name}")
    for md in cluster.custom.list_namespaced_custom_object(
        "kubeinfer.io", "v1alpha1", cluster.ns, "modeldeployments"
    )["items"]:
        if text in str(md):
            found.append(f"ModelDeployment/{md['metadata']['name']}")
    return sorted(found)


def test_the_cache_is_shared_and_the_engine_waits_for_it(
    operator: Any, api_client: client.ApiClient, namespace: str
) -> None:
    """On simulated nodes (no real download): one PVC and one Job for two ModelDeployments of
    the same weights, each an owner; no Deployment until the Job has succeeded."""
    cluster = Cluster(api_client, namespace)
    batch = client.BatchV1Api(api_client)
    model = {
        "name": "qwen2.5-instruct",
        "format": "gguf",
        "quantization": "Q4_K_M",
        "uri": "hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF@main",
        "file": "q4.gguf",
        "cache": {"size": "2Gi", "storageClassName": "none"},
    }
    for name in ("one", "two"):
        cluster.create(
            {
                "apiVersion": "kubeinfer.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": name},
                "spec": {"model": model, "resources": {"gpus": 0}, "env": [TOKEN_ENV]},
            }
        )

    def shared() -> Any:
        jobs = batch.list_namespaced_job(namespace).items
        claims = cluster.core.list_namespaced_persistent_volume_claim(namespace).items
        if len(jobs) == 1 and len(claims) == 1:
            owners = {o.name for o in claims[0].metadata.owner_references or ()}
            job_owners = {o.name for o in jobs[0].metadata.owner_references or ()}
            return owners == job_owners == {"one", "two"} and (jobs[0], claims[0])
        return None

    job, claim = wait_for("one shared PVC and Job, owned by both", shared)
    assert job.metadata.name == claim.metadata.name
    assert job.metadata.name.startswith("kubeinfer-model-qwen2-5-0-5b-instruct-gguf-")
    waiting = wait_for(
        "ModelCache Downloading", lambda: cluster.condition_is("one", "ModelCache", "False")
    )
    assert waiting["reason"] == "Downloading"
    available = cluster.condition_is("one", "Available", "False")
    assert available and available["reason"] == "WaitingForModelCache"
    assert cluster.deployment("one") is None and cluster.deployment("two") is None
    assert cluster.core.read_namespaced_service("one", namespace)  # only the Deployment waits
