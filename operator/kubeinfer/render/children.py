"""ModelDeployment + decision -> Service, Deployment (pure, deterministic).

Every function returns fresh plain dicts and never mutates its inputs. Children are named
after the ModelDeployment, carry the app.kubernetes.io/* labels and a controller owner
reference. The runtime config travels in the pod template (an annotation the pod reads back
as a file through a downwardAPI volume), and the template carries a hash of itself, so
that any change to either rolls the pods.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import yaml

from kubeinfer.api.v1alpha1 import API_VERSION, KIND, ModelDeployment, Toleration
from kubeinfer.decide import Decision, PlacementPlan
from kubeinfer.engines import engine as descriptor
from kubeinfer.render.cache import cache_name, claim, download_job
from kubeinfer.render.images import ImageSettings
from kubeinfer.runtime_config import (
    CONFIG_PATH,
    HTTP_PORT,
    METRICS_PORT,
    PVC_MOUNT_ROOT,
    ModelSource,
    RuntimeConfig,
)

CONFIG_DIR, CONFIG_FILE = CONFIG_PATH.rsplit("/", 1)
MODEL_CACHE_DIR = "/models"
# The root filesystem is read-only: engines write only to these emptyDirs (compile caches,
# kernels and hub caches go under HOME; temporary files under /tmp).
HOME_DIR = "/home/kubeinfer"
TMP_DIR = "/tmp"
SCRATCH_SIZE = "4Gi"  # each of HOME and /tmp
# The model cache holds one download: sized from the parameter count (2 bytes a parameter,
# the unquantized worst case, plus a margin), or this much when the size is not given.
MODEL_CACHE_DEFAULT_GI = 256
POD_TEMPLATE_HASH = "kubeinfer.io/pod-template-hash"
# The runtime config document, in the pod template; the "config" volume makes it the file
# CONFIG_PATH (the kubelet writes annotations' values into a downwardAPI volume).
RUNTIME_CONFIG_ANNOTATION = "kubeinfer.io/runtime-config"
ENGINE_LABEL = "kubeinfer.io/engine"
RUNTIME_USER = 1000
CONTAINER_NAME = "runtime"
# Startup allows for the model download and load (each engine's descriptor says how long).
# The startup probe asks every 2 s, so a pod is Ready (and its Service routes) within 2 s
# of the engine answering.
_STARTUP_PERIOD = 2


def selector_labels(name: str) -> dict[str, str]:
    """Labels that select this ModelDeployment's pods (immutable in the Deployment)."""
    return {"app.kubernetes.io/name": "kubeinfer-runtime", "app.kubernetes.io/instance": name}


def selector(name: str) -> str:
    """The label selector as a string, for status.selector (the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def endpoint_url(md: ModelDeployment) -> str:
    """The OpenAI-compatible base URL inside the cluster."""
    return f"http://{md.metadata.name}.{md.metadata.namespace}.svc:{HTTP_PORT}/v1"


def labels(md: ModelDeployment, engine: str) -> dict[str, str]:
    return {
        **selector_labels(md.metadata.name),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "kubeinfer",
        "app.kubernetes.io/part-of": "kubeinfer",
        ENGINE_LABEL: engine,
    }


def runtime_config(md: ModelDeployment, decision: Decision) -> RuntimeConfig:
    engine, plan = _require_engine(decision)
    model = md.spec.model
    return RuntimeConfig(
        engine=engine,
        model=ModelSource(
            name=model.name,
            uri=model.uri,
            file=model.file,
            cache_dir=MODEL_CACHE_DIR,
            prefetched=model.cache is not None,
        ),
        gpus=plan.gpus_per_replica,
        params=dict(decision.engine_params),
    )


def runtime_document(md: ModelDeployment, decision: Decision) -> str:
    """The runtime config file's text, as the pods read it at CONFIG_PATH."""
    document = runtime_config(md, decision).to_document()
    # libyaml's emitter: the pure-Python one was most of a reconcile's CPU.
    return yaml.dump(document, Dumper=yaml.CSafeDumper, sort_keys=True)


def service(md: ModelDeployment, decision: Decision) -> dict[str, Any]:
    engine, _ = _require_engine(decision)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(md, engine),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(md.metadata.name),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "metrics",
                    "port": METRICS_PORT,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                },
            ],
        },
    }


def deployment(md: ModelDeployment, decision: Decision, images: ImageSettings) -> dict[str, Any]:
    engine, plan = _require_engine(decision)
    template = _pod_template(md, engine, plan, images)
    annotations = template["metadata"]["annotations"]
    annotations[RUNTIME_CONFIG_ANNOTATION] = runtime_document(md, decision)
    # Over the template with the config in it: a config change alone rolls the pods too.
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]
    annotations[POD_TEMPLATE_HASH] = digest
    spec: dict[str, Any] = {
        "replicas": md.spec.replicas,
        "selector": {"matchLabels": selector_labels(md.metadata.name)},
        "template": template,
    }
    if plan.gpus_per_replica:
        # GPUs are scarce: replace pods one by one instead of waiting for a surge pod's GPUs.
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(md, engine),
        "spec": spec,
    }


def template_hash(deployment: Mapping[str, Any]) -> str:
    """The hash a rendered Deployment's pod template carries (what its pods are compared to)."""
    return str(deployment["spec"]["template"]["metadata"]["annotations"][POD_TEMPLATE_HASH])


def children(
    md: ModelDeployment, decision: Decision, images: ImageSettings
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Service, Deployment), in the order they are applied (the Deployment last)."""
    return service(md, decision), deployment(md, decision, images)


def model_cache(
    md: ModelDeployment, decision: Decision, images: ImageSettings
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(PVC, download Job) of spec.model.cache, shared with other ModelDeployments of the same
    source; None without a cache."""
    if md.spec.model.cache is None:
        return None
    engine, plan = _require_engine(decision)
    pod = _pod_template(md, engine, plan, images)["spec"]
    return claim(md), download_job(md, engine, pod, pod["containers"][0])


def _require_engine(decision: Decision) -> tuple[str, PlacementPlan]:
    if decision.engine is None or decision.placement is None:
        raise ValueError(f"nothing to render: no engine was chosen ({decision.reason})")
    return decision.engine, decision.placement


def _metadata(md: ModelDeployment, engine: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": md.metadata.name,
        "namespace": md.metadata.namespace,
        "labels": labels(md, engine),
    }
    if md.metadata.uid:
        # Without a uid (a manifest rendered offline) there is no owner to point at yet.
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": md.metadata.name,
                "uid": md.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return metadata


def _pod_template(
    md: ModelDeployment, engine: str, plan: PlacementPlan, images: ImageSettings
) -> dict[str, Any]:
    volumes, mounts = _volumes(md, engine)
    spec: dict[str, Any] = {
        "enableServiceLinks": False,
        # The runtime never talks to the Kubernetes API: no token to steal.
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_USER,
            "runAsGroup": RUNTIME_USER,
            "fsGroup": RUNTIME_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "nodeSelector": dict(plan.node_selector),
        "containers": [_container(md, engine, plan, images, mounts)],
        "volumes": volumes,
    }
    if images.pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in images.pull_secrets]
    if plan.affinity:
        spec["affinity"] = json.loads(json.dumps(plan.affinity))
    if plan.tolerations:
        spec["tolerations"] = [pod_toleration(t) for t in plan.tolerations]
    return {
        "metadata": {"labels": labels(md, engine), "annotations": scrape_annotations(engine)},
        "spec": spec,
    }


def scrape_annotations(engine: str) -> dict[str, str]:
    """The prometheus.io/* convention, for Prometheus set up without the Prometheus
    Operator's PodMonitor: the engine's own metrics where it serves them."""
    # One port only: the runtime's metrics where the engine serves none of its own.
    port = HTTP_PORT if descriptor(engine).serves_metrics else METRICS_PORT
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }


def pod_toleration(toleration: Toleration) -> dict[str, Any]:
    """As core/v1 writes it: empty fields left out, the operator always stated."""
    out: dict[str, Any] = {"operator": toleration.operator}
    for name, value in (
        ("key", toleration.key),
        ("value", toleration.value),
        ("effect", toleration.effect),
        ("tolerationSeconds", toleration.toleration_seconds),
    ):
        if value not in ("", None):
            out[name] = value
    return out


def _container(
    md: ModelDeployment,
    engine: str,
    plan: PlacementPlan,
    images: ImageSettings,
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": images.image_for(engine, plan.accelerator),
        "imagePullPolicy": images.pull_policy,
        "command": ["kubeinfer-runtime", "--config", CONFIG_PATH],
        # The user's variables come last, in their order ($(VAR) may refer to earlier ones).
        "env": [
            {"name": "HOME", "value": HOME_DIR},
            {"name": "TMPDIR", "value": TMP_DIR},
            *runtime_env(md),
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": _resources(md, plan),
        "startupProbe": _probe(
            period=_STARTUP_PERIOD,
            timeout=5,
            failures=descriptor(engine).startup_seconds // _STARTUP_PERIOD,
        ),
        "readinessProbe": _probe(period=10, timeout=5, failures=3),
        # Generous: a busy engine may answer /health slowly during a long prefill.
        "livenessProbe": _probe(period=20, timeout=10, failures=6),
        "volumeMounts": mounts,
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if md.spec.env_from:
        container["envFrom"] = [
            e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in md.spec.env_from
        ]
    return container


def runtime_env(md: ModelDeployment) -> list[dict[str, Any]]:
    """spec.env as core/v1 writes it (credentials stay references to their Secrets)."""
    return [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in md.spec.env]


def _probe(*, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _resources(md: ModelDeployment, plan: PlacementPlan) -> dict[str, Any]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    wanted = md.spec.resources
    if wanted.cpu:
        # No CPU limit: throttling an inference server only adds latency.
        requests["cpu"] = wanted.cpu
    if wanted.memory:
        requests["memory"] = limits["memory"] = wanted.memory
    if plan.gpus_per_replica and plan.gpu_resource:
        requests[plan.gpu_resource] = limits[plan.gpu_resource] = str(plan.gpus_per_replica)
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


def _volumes(md: ModelDeployment, engine: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cached = md.spec.model.cache is not None
    models: dict[str, Any] = (
        # Filled by the download Job before the Deployment exists; the engine only reads it.
        {"persistentVolumeClaim": {"claimName": cache_name(md.spec.model), "readOnly": True}}
        if cached
        else {"emptyDir": {"sizeLimit": model_cache_size(md)}}
    )
    volumes: list[dict[str, Any]] = [
        {
            "name": "config",
            "downwardAPI": {
                "items": [
                    {
                        "path": CONFIG_FILE,
                        "fieldRef": {
                            "fieldPath": f"metadata.annotations['{RUNTIME_CONFIG_ANNOTATION}']"
                        },
                    }
                ]
            },
        },
        {"name": "models", **models},
        {"name": "home", "emptyDir": {"sizeLimit": SCRATCH_SIZE}},
        {"name": "tmp", "emptyDir": {"sizeLimit": SCRATCH_SIZE}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "models", "mountPath": MODEL_CACHE_DIR, **({"readOnly": True} if cached else {})},
        {"name": "home", "mountPath": HOME_DIR},
        {"name": "tmp", "mountPath": TMP_DIR},
    ]
    if descriptor(engine).shared_memory:
        # Memory-backed; its size counts against the container's memory limit.
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    claim = pvc_claim(md.spec.model.uri)
    if claim:
        volumes.append(
            {"name": "model-pvc", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append(
            {"name": "model-pvc", "mountPath": f"{PVC_MOUNT_ROOT}/{claim}", "readOnly": True}
        )
    return volumes, mounts


def model_cache_size(md: ModelDeployment) -> str:
    billions = md.spec.model.size_in_billions
    if billions is None:
        return f"{MODEL_CACHE_DEFAULT_GI}Gi"
    return f"{math.ceil(billions * 2 * 1.25) + 2}Gi"


def pvc_claim(uri: str) -> str | None:
    """The claim name of a pvc://claim/path URI, else None."""
    if not uri.startswith("pvc://"):
        return None
    claim = uri.removeprefix("pvc://").split("/", 1)[0]
    return claim or None
