"""A corpus of manifests that can never work, sent to the real API server as `kubectl apply`
sends them (dry-run: nothing is stored): each is refused at the door with a message that
names the field. The API models refuse each one the same way (kubeinfer explain and the
operator parse through them)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from kubeinfer.api.v1alpha1 import ModelDeployment
from kubeinfer.engines import REGISTRY

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "kubeinfer.io", "v1alpha1", "modeldeployments"
BASE: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "ModelDeployment",
    "metadata": {"name": "bad"},
    "spec": {
        "model": {
            "name": "qwen2.5-instruct",
            "format": "gguf",
            "quantization": "Q4_K_M",
            "uri": "hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF",
            "file": "qwen.gguf",
        }
    },
}
LONG = "x" * 300


def _case(path: str, value: Any, field: str) -> tuple[str, Any, str]:
    return (path, value, field)


# (where in the manifest, the bad value, the field the refusal must name)
CASES: list[tuple[str, Any, str]] = [
    # metadata.name: the Service is named after it
    *[
        _case("metadata.name", v, "metadata.name")
        for v in ("Bad", "1abc", "a_b", "a.b", "-a", "a-", "x" * 64)
    ],
    # model.format / engine
    *[_case("spec.model.format", v, "spec.model.format") for v in ("onnx", "GGUF", "", 1)],
    *[_case("spec.engine", v, "spec.engine") for v in ("no-such-engine", "VLLM", "", "llamacpp")],
    # every engine that cannot load BASE's gguf
    *[
        _case("spec.engine", e.name, f"spec.engine {e.name} needs spec.model.format")
        for e in REGISTRY
        if "gguf" not in e.formats
    ],
    # model strings: required, bounded
    *[_case("spec.model.name", v, "spec.model.name") for v in ("", "n" * 254, None)],
    _case("spec.model.family", "f" * 254, "spec.model.family"),
    _case("spec.model.architecture", "a" * 254, "spec.model.architecture"),
    *[_case("spec.model.quantization", v, "spec.model.quantization") for v in ("", "q" * 65)],
    _case("spec.model.sizeInBillions", 0, "spec.model.sizeInBillions"),
    _case("spec.model.sizeInBillions", -7, "spec.model.sizeInBillions"),
    _case("spec.model.sizeInBillions", "7B", "spec.model.sizeInBillions"),
    *[_case("spec.model.abilities", [v], "spec.model.abilities") for v in ("speak", "", "Chat")],
    # model.uri: the grammar, no '..'
    *[
        _case("spec.model.uri", v, "spec.model.uri")
        for v in (
            "",
            "hf://",
            "hf://org",
            "hf://org/",
            "hf:///repo",
            "s3://bucket/key",
            "http://example.com/m.gguf",
            "relative/path",
            "models/qwen",
            "pvc://",
            "pvc://Bad_Claim/m",
            "pvc://UPPER/m",
            "pvc://-claim/m",
            "pvc://claim-/m",
            "pvc://claim//m",
            "pvc://claim/../../etc",
            "pvc://claim/a/../b",
            "hf://org/repo/../../x",
            "/models/../etc/shadow",
            "/..",
            "hf://org/" + "r" * 2048,
            "hf://org/repo@",
            "hf://org/repo@-x",
            "hf://org/repo@a@b",
        )
    ],
    # model.file: relative, no '..'
    *[
        _case("spec.model.file", v, "spec.model.file")
        for v in (
            "/etc/shadow",
            "/m.gguf",
            "../../../../etc/passwd",
            "..",
            "a/../../b",
            "dir/..",
            "f" * 1025,
        )
    ],
    _case("spec.model.file", None, "spec.model.file is required when spec.model.format is gguf"),
    _case("spec.model.file", "", "spec.model.file is required when spec.model.format is gguf"),
    # resources
    *[_case("spec.resources.gpus", v, "spec.resources.gpus") for v in (-1, 65, 2147483648, "1")],
    *[
        _case("spec.resources.cpu", v, "spec.resources.cpu")
        for v in ("-1", "-500m", "0", 0, "2000", "1e100", "1025", "abc", "1.5.5", "4 cores")
    ],
    *[
        _case("spec.resources.memory", v, "spec.resources.memory")
        for v in ("-1Gi", "0", "17Ti", "1e100", "1Ei", "64GB", "lots", "-1")
    ],
    _case("spec.resources.gpuProduct", "g" * 254, "spec.resources.gpuProduct"),
    _case("spec.resources.extra", 1, "spec.resources.extra"),
    # replicas
    *[_case("spec.replicas", v, "spec.replicas") for v in (-1, 1001, 2147483647, "2", 1.5)],
    # engineParams: a bounded number
    _case("spec.engineParams", {f"p{i}": i for i in range(129)}, "spec.engineParams"),
    # nodeSelector
    *[
        _case("spec.nodeSelector", v, "spec.nodeSelector")
        for v in (
            {"pool": "has space"},
            {"pool": "v" * 64},
            {"pool": "-bad"},
            {"pool": 1},
            {f"k{i}": "v" for i in range(65)},
        )
    ],
    # tolerations: core/v1's rules
    *[
        _case("spec.tolerations", [v], "spec.tolerations")
        for v in (
            {"key": "k", "operator": "Exists", "value": "v"},
            {"key": "k", "tolerationSeconds": 5},
            {"key": "k", "operator": "Equal", "effect": "NoSchedule", "tolerationSeconds": 5},
            {"operator": "Equal", "value": "v"},
            {"key": "k", "operator": "In"},
            {"key": "k", "effect": "Sometimes"},
            {"key": "bad key"},
            {"key": "k", "value": "has space"},
            {"key": "k" * 64},
        )
    ],
    _case("spec.tolerations", [{"key": f"k{i}"} for i in range(33)], "spec.tolerations"),
    # env: core/v1's shape, no credential as a literal, kubeinfer's own variables kept
    *[
        _case("spec.env", v, "spec.env")
        for v in (
            [{"name": "HF_TOKEN", "value": "hf_abcdefghijklmnopqrstuvwxyz"}],
            [{"name": "my_api_key", "value": "x"}],
            [{"name": "HOME", "value": "/root"}],
            [{"name": "A"}],
            [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
            [{"name": "1A=", "value": "1"}],
            [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}}],
            [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
            [{"name": f"V{i}", "value": "1"} for i in range(65)],
        )
    ],
    *[
        _case("spec.envFrom", v, "spec.envFrom")
        for v in (
            [{}],
            [{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}],
            [{"secretRef": {"name": "UPPER"}}],
        )
    ],
    # unknown fields are refused, not silently dropped
    _case("spec.replica", 2, "spec.replica"),
    _case("spec.model.formats", "gguf", "spec.model.formats"),
    _case("spec.model.uri", LONG * 10, "spec.model.uri"),
]


def manifest(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return body


def _id(case: tuple[str, Any, str]) -> str:
    path, value, _ = case
    text = json.dumps(value)
    return f"{path}={text[:30]}{'...' if len(text) > 30 else ''}"


# Strings where integers belong: the API server refuses the type; the models read what it
# stored, so their lax parsing would take "2" as 2.
DOOR_ONLY = {("spec.resources.gpus", "1"), ("spec.replicas", "2")}


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_refused_at_the_door_naming_the_field(
    case: tuple[str, Any, str], api_client: client.ApiClient, crd_installed: None
) -> None:
    path, value, field = case
    custom = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as refused:
        # Strict field validation, as `kubectl apply` asks for it.
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            manifest(path, value),
            dry_run="All",
            field_validation="Strict",
        )
    assert refused.value.status in (400, 422), refused.value.body
    message = json.loads(refused.value.body)["message"]
    assert field in message, message


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_the_api_models_refuse_it_too(case: tuple[str, Any, str]) -> None:
    path, value, _ = case
    if isinstance(value, str) and (path, value) in DOOR_ONLY:
        pytest.skip("a type the API server checks")
    body = manifest(path, value)
    body["metadata"]["namespace"] = "default"
    with pytest.raises(ValidationError):
        ModelDeployment.from_object(body)
