"""The shared model cache: one PVC per model source, filled once by a download Job (pure).

The PVC and the Job are named from the source (repo, revision, file) and the claim's class
and access mode, so ModelDeployments of the same weights in a namespace share them. Each
such ModelDeployment is one of their owners (none is the controller): garbage collection
removes them with the last one. The Job runs the runtime image's own fetch
(`kubeinfer-runtime --fetch-only`) with the ModelDeployment's environment, so the same code
and credentials fill the cache that would otherwise fill each pod's emptyDir.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from kubeinfer.api.v1alpha1 import API_VERSION, KIND, ModelDeployment, ModelSpec

CACHE_LABEL = "kubeinfer.io/model-cache"
# On the download Job: which run of the download it is (a failed one runs again, later each
# time; the count lives on the Job so that every ModelDeployment sharing it, and an operator
# restart, see the same), and the uid of the claim it fills.
ATTEMPT_ANNOTATION = "kubeinfer.io/download-attempt"
CLAIM_UID_ANNOTATION = "kubeinfer.io/claim-uid"
# On the PVC, once a Job has filled it: that Job's uid. The claim itself says it is filled, so
# a deleted Job is not run again, and a claim deleted and created again is filled again.
FILLED_ANNOTATION = "kubeinfer.io/filled-by-job"
FETCH_CONTAINER = "fetch"
# The runtime's exit code when the model cannot be fetched (a refusal: retrying won't help;
# transient errors were already retried inside the runtime).
FETCH_EXIT_MODEL = 3
FETCH_BACKOFF_LIMIT = 3
_NAME_PREFIX = "kubeinfer-model-"
_SLUG_MAX = 63 - len(_NAME_PREFIX) - 1 - 12


def source_of(model: ModelSpec) -> tuple[str, str | None, str | None]:
    """(org/repo, revision, file) of an hf:// model, however the URI and file split them."""
    parts = [p for p in model.uri.removeprefix("hf://").split("/") if p]
    repo, _, revision = parts[1].partition("@")
    return f"{parts[0]}/{repo}", revision or None, "/".join(parts[2:]) or model.file


def cache_name(model: ModelSpec) -> str:
    """The PVC's and the Job's name: readable, unique per source and claim settings."""
    if model.cache is None:
        raise ValueError("spec.model.cache is not set")
    repo, revision, file = source_of(model)
    identity = "|".join(
        (
            repo,
            revision or "",
            file or "",
            model.cache.access_mode,
            model.cache.storage_class_name or "",
        )
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    slug = re.sub(r"[^a-z0-9]+", "-", repo.split("/", 1)[1].lower()).strip("-")[:_SLUG_MAX]
    return f"{_NAME_PREFIX}{slug.rstrip('-') or 'm'}-{digest}"


def cache_name_of(spec: Mapping[str, Any]) -> str | None:
    """The cache of a raw spec (as the watches hold it), or None: no cache or not valid."""
    cache = (spec.get("model") or {}).get("cache")
    if not cache:
        return None
    try:
        return cache_name(ModelSpec.model_validate(spec["model"]))
    except ValidationError:
        return None


def cache_labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubeinfer-model-cache",
        "app.kubernetes.io/component": "model-cache",
        "app.kubernetes.io/managed-by": "kubeinfer",
        "app.kubernetes.io/part-of": "kubeinfer",
        # The pods' instance: their watch events map to the cache, not to a ModelDeployment.
        "app.kubernetes.io/instance": name,
        CACHE_LABEL: name,
    }


def owner_reference(md: ModelDeployment) -> dict[str, Any]:
    """This ModelDeployment as one of several owners (the cache outlives any one of them)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": md.metadata.name,
        "uid": md.metadata.uid or "",
        "controller": False,
        "blockOwnerDeletion": False,
    }


def _metadata(md: ModelDeployment, name: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": md.metadata.namespace,
        "labels": cache_labels(name),
    }
    if md.metadata.uid:
        metadata["ownerReferences"] = [owner_reference(md)]
    return metadata


def claim(md: ModelDeployment) -> dict[str, Any]:
    cache = md.spec.model.cache
    if cache is None:
        raise ValueError("spec.model.cache is not set")
    name = cache_name(md.spec.model)
    spec: dict[str, Any] = {
        "accessModes": [cache.access_mode],
        "resources": {"requests": {"storage": cache.size}},
    }
    if cache.storage_class_name is not None:
        spec["storageClassName"] = cache.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(md, name),
        "spec": spec,
    }


def download_job(
    md: ModelDeployment, engine: str, pod: dict[str, Any], container: dict[str, Any]
) -> dict[str, Any]:
    """The Job that fills the claim. `pod` and `container` are the engine's pod spec and
    runtime container: the Job runs the same image, environment and placement, with the
    claim writable at the model cache path."""
    model = md.spec.model
    name = cache_name(model)
    cache_dir = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "models")
    command = [
        "kubeinfer-runtime",
        "--fetch-only",
        "--engine",
        engine,
        "--model",
        model.uri,
        "--cache-dir",
        cache_dir,
    ]
    if model.file:
        command += ["--model-file", model.file]
    fetch = {
        "name": FETCH_CONTAINER,
        "image": container["image"],
        "imagePullPolicy": container["imagePullPolicy"],
        "command": command,
        "env": container["env"],
        **({"envFrom": container["envFrom"]} if "envFrom" in container else {}),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
        "volumeMounts": [m for m in container["volumeMounts"] if m["name"] in ("home", "tmp")]
        + [{"name": "models", "mountPath": cache_dir}],
        "securityContext": container["securityContext"],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    volumes = [v for v in pod["volumes"] if v["name"] in ("home", "tmp")] + [
        {"name": "models", "persistentVolumeClaim": {"claimName": name}}
    ]
    job_pod: dict[str, Any] = {
        key: pod[key]
        for key in (
            "enableServiceLinks",
            "automountServiceAccountToken",
            "securityContext",
            "nodeSelector",
            "affinity",
            "tolerations",
            "imagePullSecrets",
        )
        if key in pod
    }
    job_pod |= {"restartPolicy": "Never", "containers": [fetch], "volumes": volumes}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(md, name),
        "spec": {
            "backoffLimit": FETCH_BACKOFF_LIMIT,
            # A refusal (no token, no such repo, full disk) fails the Job at once.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": FETCH_CONTAINER,
                            "operator": "In",
                            "values": [FETCH_EXIT_MODEL],
                        },
                    }
                ]
            },
            "template": {"metadata": {"labels": cache_labels(name)}, "spec": job_pod},
        },
    }


def job_run(job: Mapping[str, Any], claim_uid: str, attempt: int) -> dict[str, Any]:
    """The download Job as its `attempt`-th run, filling the claim `claim_uid`."""
    meta = job["metadata"]
    annotations = {**meta.get("annotations", {}), CLAIM_UID_ANNOTATION: claim_uid}
    if attempt > 1:
        annotations[ATTEMPT_ANNOTATION] = str(attempt)
    return {**job, "metadata": {**meta, "annotations": annotations}}
