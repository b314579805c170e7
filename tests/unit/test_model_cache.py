"""spec.model.cache: a shared PVC and its download Job, rendered; their state as a condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate
import pytest
from unit_helpers import EXAMPLES, KUBERNETES_VERSION, load_yaml_documents

from kubeinfer import conditions as c
from kubeinfer.api.v1alpha1 import ModelDeployment
from kubeinfer.cache import (
    RETRY_MAX_SECONDS,
    cache_condition,
    next_try,
    permanent,
    progress,
    summarize_job,
)
from kubeinfer.decide import decide
from kubeinfer.nodes import node_facts
from kubeinfer.render import ImageSettings, children
from kubeinfer.render.cache import (
    ATTEMPT_ANNOTATION,
    CLAIM_UID_ANNOTATION,
    cache_name,
    cache_name_of,
    job_run,
)
from kubeinfer.render.children import RUNTIME_CONFIG_ANNOTATION, model_cache
from kubeinfer.workload import summarize_pod

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CACHE = {"size": "20Gi", "storageClassName": "local"}


def cached(name: str = "a", uid: str = "u-1", **model: Any) -> ModelDeployment:
    (manifest,) = load_yaml_documents(EXAMPLES / "gguf-cpu.yaml")
    manifest["metadata"] |= {"name": name, "namespace": "models", "uid": uid}
    manifest["spec"]["model"] |= {"cache": CACHE, **model}
    manifest["spec"]["env"] = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    ]
    return ModelDeployment.from_object(manifest)


def rendered(md: ModelDeployment, nodes: list[dict[str, Any]]) -> Any:
    decision = decide(md.spec, map(node_facts, nodes))
    return children(md, decision, ImageSettings()), model_cache(md, decision, ImageSettings())


def runtime_config_text(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["metadata"]["annotations"][RUNTIME_CONFIG_ANNOTATION])


def test_the_cache_is_named_from_the_source_and_shared(example_nodes: list[dict[str, Any]]) -> None:
    a, b = cached("a", "u-1"), cached("b", "u-2")
    assert cache_name(a.spec.model) == cache_name(b.spec.model)
    assert cache_name(a.spec.model).startswith("kubeinfer-model-qwen2-5-7b-instruct-gguf-")
    assert len(cache_name(a.spec.model)) <= 63
    # The file given in the URI or in model.file is one source; a revision is another.
    same = cached(uri=f"{a.spec.model.uri}/{a.spec.model.file}")
    assert cache_name(same.spec.model) == cache_name(a.spec.model)
    pinned = cached(uri=a.spec.model.uri + "@v2")
    assert cache_name(pinned.spec.model) != cache_name(a.spec.model)
    rwx = cached(cache={**CACHE, "accessMode": "ReadWriteMany"})
    assert cache_name(rwx.spec.model) != cache_name(a.spec.model)
    assert cache_name_of(a.spec.model_dump(mode="json", by_alias=True)) == cache_name(a.spec.model)


def test_claim_job_and_engine_pods(example_nodes: list[dict[str, Any]]) -> None:
    md = cached()
    (_, deployment), (claim, job) = rendered(md, example_nodes)
    name = cache_name(md.spec.model)
    for obj in (claim, job, deployment):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "20Gi"}},
        "storageClassName": "local",
    }
    (owner,) = claim["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["controller"]) == ("u-1", False)
    assert claim["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubeinfer"
    pod = job["spec"]["template"]["spec"]
    (fetch,) = pod["containers"]
    assert fetch["command"][:2] == ["kubeinfer-runtime", "--fetch-only"]
    assert {"name": "models", "mountPath": "/models"} in fetch["volumeMounts"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": name}} in pod["volumes"]
    assert fetch["env"][-1]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert fetch["securityContext"]["readOnlyRootFilesystem"] is True
    # The engine mounts the claim read-only and starts without the hub.
    engine = deployment["spec"]["template"]["spec"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": name, "readOnly": True}} in (
        engine["volumes"]
    )
    assert "prefetched: true" in runtime_config_text(deployment)


def test_no_cache_keeps_the_size_limited_empty_dir(example_nodes: list[dict[str, Any]]) -> None:
    (manifest,) = load_yaml_documents(EXAMPLES / "gguf-cpu.yaml")
    md = ModelDeployment.from_object(manifest)
    (_, deployment), shared = rendered(md, example_nodes)
    assert shared is None
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"]["emptyDir"]["sizeLimit"]
    assert "prefetched" not in runtime_config_text(deployment)


def test_a_cache_needs_a_hub_uri() -> None:
    with pytest.raises(ValueError, match=r"spec\.model\.cache needs an hf://"):
        cached(uri="pvc://claim/m")


def job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "kubeinfer-model-x-1"}, "status": status}


def failed_pod(message: str) -> dict[str, Any]:
    terminated = {"exitCode": 3, "message": message}
    return {
        "metadata": {"name": "kubeinfer-model-x-1-abcde"},
        "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": terminated}}]},
    }


@pytest.mark.parametrize(
    ("summary", "pods", "filled", "deleting", "status", "reason", "says"),
    [
        (None, [], False, False, "False", c.DOWNLOADING, "is fetching hf://o/r"),
        (job(active=1), [], False, False, "False", c.DOWNLOADING, "is fetching"),
        (
            job(succeeded=1, conditions=[{"type": "Complete", "status": "True"}]),
            [],
            True,
            False,
            "True",
            c.CACHE_READY,
            "hf://o/r is in PersistentVolumeClaim kubeinfer-model-x-1",
        ),
        (  # the claim says it is filled: its Job may be gone
            None,
            [],
            True,
            False,
            "True",
            c.CACHE_READY,
            "hf://o/r is in PersistentVolumeClaim kubeinfer-model-x-1",
        ),
        (
            None,
            [],
            True,
            True,
            "True",
            c.CACHE_READY,
            "(being deleted: the running pods keep it until they stop, then kubeinfer creates",
        ),
        (
            job(active=1),
            [],
            False,
            True,
            "False",
            c.DOWNLOADING,
            "PersistentVolumeClaim kubeinfer-model-x-1 is being deleted: kubeinfer creates it",
        ),
        (
            job(conditions=[{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]),
            [failed_pod("cannot fetch hf://o/r: o/r is gated and no HF_TOKEN is set")],
            False,
            False,
            "False",
            c.DOWNLOAD_FAILED,
            "is gated and no HF_TOKEN is set",
        ),
    ],
)
def test_the_cache_condition(
    summary: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    filled: bool,
    deleting: bool,
    status: str,
    reason: str,
    says: str,
) -> None:
    found = cache_condition(
        "kubeinfer-model-x-1",
        "hf://o/r",
        summarize_job(summary) if summary else None,
        [summarize_pod(p) for p in pods],
        filled=filled,
        deleting=deleting,
        generation=1,
        now=NOW,
    )
    assert (found.type, found.status, found.reason) == (c.MODEL_CACHE, status, reason)
    assert says in found.message


def test_progress_from_the_tail_of_the_download_log() -> None:
    log = (
        "2026-01-01 INFO kubeinfer-runtime: fetching hf://o/r/m.gguf (1 files, 12.0 MiB) into /m\n"
    )
    assert progress(log) == "0.0/12.0 MiB (0%)"
    log += "2026-01-01 INFO kubeinfer-runtime: fetching hf://o/r/m.gguf: 3.0/12.0 MiB (25%)\n"
    assert progress(log) == "3.0/12.0 MiB (25%)"
    assert progress("something else\n") is None
    found = cache_condition(
        "kubeinfer-model-x-1",
        "hf://o/r",
        None,
        [],
        done="3.0/12.0 MiB (25%)",
        filled=False,
        generation=1,
        now=NOW,
    )
    assert found.message.endswith("into the claim: 3.0/12.0 MiB (25%)")


FAILED_AT = "2026-01-01T00:10:00Z"


def failed_job(attempt: int | None = None) -> dict[str, Any]:
    failed = {"type": "Failed", "status": "True", "lastTransitionTime": FAILED_AT}
    body = job(conditions=[failed])
    body["metadata"] |= {"uid": "j-1", "creationTimestamp": "2026-01-01T00:00:00Z"}
    if attempt is not None:
        body["metadata"]["annotations"] = {ATTEMPT_ANNOTATION: str(attempt)}
    return body


# The runtime's messages, as its termination message ends (tests/runtime checks that the
# runtime says them).
GATED = "cannot fetch hf://o/r from http://hub: o/r is gated and no HF_TOKEN is set — fix"
UNREACHABLE = "cannot fetch hf://o/r from http://hub: the hub cannot be reached (timed out)"


@pytest.mark.parametrize(
    ("why", "lasting"),
    [
        (GATED, True),
        ("cannot fetch hf://o/r from h: the hub refused access (403) and HF_TOKEN is set", True),
        ("cannot fetch hf://o/r from h: no repo o/r (or it is private and no HF_TOKEN", True),
        ("cannot fetch hf://o/r@v9 from h: o/r has no revision 'v9' — fix @revision", True),
        ("cannot fetch hf://o/r from h: o/r has no file 'm.gguf' — fix spec.model.file", True),
        ("cannot fetch hf://o/r from h: the model volume is full (no space left", True),
        (UNREACHABLE, False),
        ("cannot fetch hf://o/r from h: the hub answered 500: Internal Server Error", False),
        ("runtime exited with code 137 (OOMKilled) — raise the memory limit", False),
        ("BackoffLimitExceeded", False),
    ],
)
def test_which_refusals_cannot_heal_by_themselves(why: str, lasting: bool) -> None:
    assert permanent(why) is lasting


def test_a_failed_download_runs_again_later_each_time() -> None:
    failed = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    delays = [next_try(summarize_job(failed_job(n)), UNREACHABLE, NOW).delay for n in range(1, 8)]
    assert delays == [60, 120, 240, 480, 960, 1800, 1800]
    first = next_try(summarize_job(failed_job()), UNREACHABLE, NOW)
    assert first.at == failed + timedelta(seconds=60)  # from the failure, not from now
    # A refusal waits the longest from the first failure on.
    assert next_try(summarize_job(failed_job()), GATED, NOW).delay == RETRY_MAX_SECONDS


def test_the_job_carries_its_run_and_claim() -> None:
    summary = summarize_job(failed_job(3))
    assert (summary.uid, summary.attempt, summary.failed) == ("j-1", 3, True)
    assert summary.claim_uid == ""  # made before kubeinfer recorded it
    assert summary.failed_at == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    assert summarize_job(failed_job()).attempt == 1
    assert summarize_job(failed_job(0)).attempt == 1  # edited by hand: counted from 1 again
    running = summarize_job(job(active=1))
    assert (running.failed, running.failed_at) == (False, None)
    body = {"metadata": {"name": "j", "labels": {"a": "b"}}, "spec": {}}
    assert job_run(body, "c-1", 1)["metadata"]["annotations"] == {CLAIM_UID_ANNOTATION: "c-1"}
    fourth = job_run(body, "c-1", 4)
    assert fourth["metadata"] == {
        "name": "j",
        "labels": {"a": "b"},
        "annotations": {CLAIM_UID_ANNOTATION: "c-1", ATTEMPT_ANNOTATION: "4"},
    }
    assert "annotations" not in body["metadata"]
    assert summarize_job(fourth).claim_uid == "c-1"
    assert summarize_job(fourth).attempt == 4


def test_a_failed_download_says_when_it_runs_again() -> None:
    def message(now: datetime) -> str:
        return cache_condition(
            "kubeinfer-model-x-1",
            "hf://o/r",
            summarize_job(failed_job(2)),
            [summarize_pod(failed_pod(UNREACHABLE))],
            filled=False,
            generation=1,
            now=now,
        ).message

    said = message(NOW)
    assert said.startswith(f"Job kubeinfer-model-x-1: {UNREACHABLE} (retrying in 120 s")
    assert "at 2026-01-01T00:12:00Z; delete the Job, or change the spec, to try at once)" in said
    assert message(NOW + timedelta(seconds=30)) == said  # no status write while it waits
