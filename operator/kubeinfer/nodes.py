"""Node objects -> node facts -> node classes (pure).

Facts come from well-known labels (NVIDIA GPU feature discovery, AMD's node labeller,
kubernetes.io/os and /arch) and from allocatable resources. Missing or partial labels are
normal: every fallback is recorded in `assumptions` so `kubeinfer explain` can say what it
guessed. Nodes whose facts are identical form one class, so a decision over 1,000 nodes
looks at a handful of classes. Each class keeps its nodes' labels, so a ModelDeployment's
nodeSelector narrows the classes grouped once for all (`select`) instead of regrouping.

Labels read (values as the labellers publish them):
  nvidia.com/gpu.present, nvidia.com/gpu.product, nvidia.com/gpu.memory (MiB per GPU),
  nvidia.com/gpu.count;
  amd.com/gpu.present, amd.com/gpu.product-name, amd.com/gpu.vram (MiB per GPU; a unit
  suffix such as 192G or 192Gi is also understood), amd.com/gpu.count;
  kubernetes.io/os, kubernetes.io/arch (falling back to status.nodeInfo).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, NamedTuple

GpuVendor = Literal["nvidia", "amd", "none"]
GPU_RESOURCES: dict[str, str] = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}

_VRAM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$")
_MIB_PER_UNIT = {
    None: 1.0,
    "K": 1 / 1024,
    "Ki": 1 / 1024,
    "M": 1.0,
    "Mi": 1.0,
    "G": 1024.0,
    "Gi": 1024.0,
    "T": 1024.0**2,
    "Ti": 1024.0**2,
}


class _VendorLabels(NamedTuple):
    present: str
    product: str
    memory: str
    count_label: str
    resource: str


_VENDOR_LABELS: dict[str, _VendorLabels] = {
    "nvidia": _VendorLabels(
        "nvidia.com/gpu.present",
        "nvidia.com/gpu.product",
        "nvidia.com/gpu.memory",
        "nvidia.com/gpu.count",
        "nvidia.com/gpu",
    ),
    "amd": _VendorLabels(
        "amd.com/gpu.present",
        "amd.com/gpu.product-name",
        "amd.com/gpu.vram",
        "amd.com/gpu.count",
        "amd.com/gpu",
    ),
}


# NamedTuples rather than frozen dataclasses: immutable and hashable alike, but several
# times cheaper to build, and a decision over 1,000 nodes builds 1,000 of them.
class Taint(NamedTuple):
    key: str
    value: str
    effect: str


class NodeProfile(NamedTuple):
    """Everything the decision needs to know about a node, minus its name."""

    os: str
    arch: str
    gpu_vendor: GpuVendor
    gpu_product: str | None
    gpu_memory_mib: int | None
    gpu_count: int
    allocatable_gpus: int
    taints: tuple[Taint, ...]
    schedulable: bool
    assumptions: tuple[str, ...]

    @property
    def gpu_resource(self) -> str | None:
        return GPU_RESOURCES.get(self.gpu_vendor)

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.arch}"


class NodeFacts(NamedTuple):
    name: str
    profile: NodeProfile
    # Only for spec.nodeSelector: labels are not part of the profile, or every hostname
    # label would make a class of its own.
    labels: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class NodeClass:
    """Nodes with identical profiles; `id` is unique within one classification."""

    id: str
    profile: NodeProfile
    nodes: tuple[str, ...]
    # The labels of each node, in the order of `nodes` (a class is identified without them).
    node_labels: tuple[Mapping[str, str], ...] = field(default=(), compare=False, repr=False)


def product_label(vendor: GpuVendor) -> str:
    """The label that names a GPU vendor's product (pods are pinned to it)."""
    return _VENDOR_LABELS[vendor].product


def matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    """A nodeSelector's rule: every pair is among the labels."""
    return all(labels.get(key) == value for key, value in selector.items())


def select(node_class: NodeClass, selector: Mapping[str, str]) -> NodeClass | None:
    """The class narrowed to the nodes that match `selector`; None when none does."""
    if not selector:
        return node_class
    labels = node_class.node_labels or tuple({} for _ in node_class.nodes)
    kept = [
        (name, node_labels)
        for name, node_labels in zip(node_class.nodes, labels, strict=True)
        if matches(node_labels, selector)
    ]
    if not kept:
        return None
    if len(kept) == len(node_class.nodes):
        return node_class
    return NodeClass(
        node_class.id,
        node_class.profile,
        tuple(name for name, _ in kept),
        tuple(node_labels for _, node_labels in kept),
    )


def node_facts(node: Mapping[str, Any]) -> NodeFacts:
    """The facts of one Node object (a dict as `kubectl get node -o yaml` prints it)."""
    metadata = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    labels: Mapping[str, str] = metadata.get("labels") or {}
    node_info: Mapping[str, str] = status.get("nodeInfo") or {}
    allocatable: Mapping[str, Any] = status.get("allocatable") or {}
    capacity: Mapping[str, Any] = status.get("capacity") or {}
    assumptions: list[str] = []

    os_name = _platform_field(labels, node_info, "os", "operatingSystem", "linux", assumptions)
    arch = _platform_field(labels, node_info, "arch", "architecture", "amd64", assumptions)
    vendor = _gpu_vendor(labels, allocatable, capacity, assumptions)
    product, memory_mib, count, allocatable_gpus = None, None, 0, 0
    if vendor != "none":
        keys = _VENDOR_LABELS[vendor]
        product = labels.get(keys.product) or None
        if product is None:
            assumptions.append(f"no {keys.product} label: GPU product unknown")
        memory_mib = _mib(labels.get(keys.memory))
        if memory_mib is None:
            assumptions.append(
                f"no usable {keys.memory} label: GPU memory unknown, fit not checked"
            )
        allocatable_gpus = _count(allocatable.get(keys.resource))
        count = _count(labels.get(keys.count_label)) or _count(capacity.get(keys.resource))
        if not count:
            count = allocatable_gpus
            assumptions.append(f"no {keys.count_label} label or capacity: counted allocatable")
        if keys.resource not in allocatable:
            assumptions.append(f"{keys.resource} not allocatable (device plugin not running?)")
    raw_taints = spec.get("taints")
    profile = NodeProfile(
        os=os_name,
        arch=arch,
        gpu_vendor=vendor,
        gpu_product=product,
        gpu_memory_mib=memory_mib,
        gpu_count=count,
        allocatable_gpus=allocatable_gpus,
        taints=tuple(
            sorted(
                Taint(t.get("key", ""), t.get("value") or "", t.get("effect", ""))
                for t in raw_taints
            )
        )
        if raw_taints
        else (),
        schedulable=not spec.get("unschedulable", False),
        assumptions=tuple(assumptions),
    )
    return NodeFacts(name=str(metadata.get("name", "")), profile=profile, labels=dict(labels))


def node_classes(facts: Iterable[NodeFacts]) -> tuple[NodeClass, ...]:
    """Group nodes by identical profile; classes and their node lists are sorted."""
    groups: dict[NodeProfile, list[NodeFacts]] = {}
    for fact in facts:
        groups.setdefault(fact.profile, []).append(fact)
    ordered = sorted(
        groups.items(), key=lambda item: (_label(item[0]), min(f.name for f in item[1]))
    )
    classes: list[NodeClass] = []
    seen: dict[str, int] = {}
    for profile, members in ordered:
        label = _label(profile)
        seen[label] = seen.get(label, 0) + 1
        # Profiles that read the same (e.g. differing only in taints) stay distinct.
        class_id = label if seen[label] == 1 else f"{label} #{seen[label]}"
        members.sort(key=lambda f: f.name)
        classes.append(
            NodeClass(
                id=class_id,
                profile=profile,
                nodes=tuple(f.name for f in members),
                node_labels=tuple(f.labels for f in members),
            )
        )
    return tuple(classes)


def _label(profile: NodeProfile) -> str:
    if profile.gpu_vendor == "none":
        return f"{profile.platform} cpu"
    product = profile.gpu_product or f"{profile.gpu_vendor} GPU"
    memory = f" {profile.gpu_memory_mib}MiB" if profile.gpu_memory_mib else ""
    return f"{profile.platform} {profile.gpu_count}x {product}{memory}"


def _platform_field(
    labels: Mapping[str, str],
    node_info: Mapping[str, str],
    label: str,
    info_key: str,
    default: str,
    assumptions: list[str],
) -> str:
    value = labels.get(f"kubernetes.io/{label}") or node_info.get(info_key)
    if value:
        return value
    assumptions.append(f"no kubernetes.io/{label} label: assumed {default}")
    return default


def _gpu_vendor(
    labels: Mapping[str, str],
    allocatable: Mapping[str, Any],
    capacity: Mapping[str, Any],
    assumptions: list[str],
) -> GpuVendor:
    nvidia = _has_gpus(_VENDOR_LABELS["nvidia"], labels, allocatable, capacity)
    amd = _has_gpus(_VENDOR_LABELS["amd"], labels, allocatable, capacity)
    if nvidia and amd:
        assumptions.append("both NVIDIA and AMD GPUs reported: treated as NVIDIA")
    return "nvidia" if nvidia else "amd" if amd else "none"


def _has_gpus(
    keys: _VendorLabels,
    labels: Mapping[str, str],
    allocatable: Mapping[str, Any],
    capacity: Mapping[str, Any],
) -> bool:
    return (
        labels.get(keys.present) == "true"
        or _count(allocatable.get(keys.resource)) > 0
        or _count(capacity.get(keys.resource)) > 0
    )


def _count(value: Any) -> int:
    """An integer resource quantity or label; anything unreadable counts as 0."""
    # No try/except: most nodes lack most GPU keys, and exceptions would dominate the parse.
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else 0


@cache  # a cluster repeats a handful of values across all its nodes
def _mib(value: str | None) -> int | None:
    if value is None:
        return None
    match = _VRAM.match(value)
    if not match:
        return None
    number, unit = match.groups()
    mib = int(float(number) * _MIB_PER_UNIT[unit])
    return mib or None
