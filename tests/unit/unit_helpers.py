"""Shared helpers for the pure unit tests (no cluster, no engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# The simulated cluster as Node objects (kubeinfer explain --nodes); not an example to apply.
SAMPLE_NODES = ROOT / "hack" / "controlplane" / "sample-nodes.yaml"
GOLDEN = Path(__file__).resolve().parent / "golden"
# The Kubernetes version the project pins (hack/controlplane/versions.env); kubernetes-validate
# ships schemas for exactly this minor version.
KUBERNETES_VERSION = "1.35"


def load_yaml_documents(path: Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def make_node(
    name: str,
    *,
    os: str = "linux",
    arch: str = "amd64",
    vendor: str | None = None,
    product: str | None = "NVIDIA-H100-80GB-HBM3",
    memory_mib: int | None = 81559,
    count: int = 8,
    allocatable: int | None = None,
    taint_gpu: bool = True,
    extra_taints: tuple[dict[str, str], ...] = (),
    unschedulable: bool = False,
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Node object with the labels GPU feature discovery (or AMD's labeller) would set."""
    labels = {"kubernetes.io/os": os, "kubernetes.io/arch": arch, "kubernetes.io/hostname": name}
    labels |= extra_labels or {}
    resources: dict[str, str] = {"cpu": "32", "memory": "128Gi"}
    taints: list[dict[str, str]] = list(extra_taints)
    if vendor == "nvidia":
        labels["nvidia.com/gpu.present"] = "true"
        labels["nvidia.com/gpu.count"] = str(count)
        if product:
            labels["nvidia.com/gpu.product"] = product
        if memory_mib:
            labels["nvidia.com/gpu.memory"] = str(memory_mib)
    elif vendor == "amd":
        labels["amd.com/gpu.present"] = "true"
        labels["amd.com/gpu.count"] = str(count)
        if product:
            labels["amd.com/gpu.product-name"] = product
        if memory_mib:
            labels["amd.com/gpu.vram"] = str(memory_mib)
    if vendor:
        resources[f"{vendor}.com/gpu"] = str(count if allocatable is None else allocatable)
        if taint_gpu:
            taints.append({"key": f"{vendor}.com/gpu", "value": "present", "effect": "NoSchedule"})
    spec: dict[str, Any] = {"taints": taints} if taints else {}
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"allocatable": dict(resources), "capacity": dict(resources)},
    }


def h100(name: str = "h100-0", **kw: Any) -> dict[str, Any]:
    return make_node(name, vendor="nvidia", **kw)


def l4(name: str = "l4-0", **kw: Any) -> dict[str, Any]:
    return make_node(name, vendor="nvidia", product="NVIDIA-L4", memory_mib=23034, count=1, **kw)


def mi300x(name: str = "mi300x-0", **kw: Any) -> dict[str, Any]:
    return make_node(name, vendor="amd", product="AMD-Instinct-MI300X", memory_mib=196608, **kw)


def cpu(name: str = "cpu-0", **kw: Any) -> dict[str, Any]:
    return make_node(name, **kw)


def mac(name: str = "mac-0") -> dict[str, Any]:
    return make_node(name, os="darwin", arch="arm64")


def spec(**model: Any) -> dict[str, Any]:
    """A ModelDeployment spec (as a dict) with a model; keys of `model` override defaults.

    Top-level spec keys are given with a `spec_` prefix: spec_engine="vllm".
    """
    top = {k.removeprefix("spec_"): v for k, v in model.items() if k.startswith("spec_")}
    fields = {k: v for k, v in model.items() if not k.startswith("spec_")}
    base = {"name": "qwen2.5-instruct", "format": "pytorch", "uri": "hf://Qwen/Qwen2.5-7B"}
    return {"model": {**base, **fields}, **top}
