"""Node objects -> facts and classes: full labels, partial labels, grouping."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from unit_helpers import cpu, h100, l4, make_node, mi300x

from kubeinfer.nodes import NodeClass, node_classes, node_facts


def classes_of(nodes: Iterable[dict[str, Any]]) -> tuple[NodeClass, ...]:
    """Node objects to classes, as the operator groups them."""
    return node_classes(node_facts(node) for node in nodes)


def test_nvidia_labels_are_read() -> None:
    profile = node_facts(h100()).profile
    assert profile.gpu_vendor == "nvidia"
    assert profile.gpu_product == "NVIDIA-H100-80GB-HBM3"
    assert profile.gpu_memory_mib == 81559
    assert (profile.gpu_count, profile.allocatable_gpus) == (8, 8)
    assert profile.gpu_resource == "nvidia.com/gpu"
    assert profile.assumptions == ()


def test_amd_labels_are_read_with_or_without_a_unit() -> None:
    assert node_facts(mi300x()).profile.gpu_memory_mib == 196608
    node = mi300x()
    node["metadata"]["labels"]["amd.com/gpu.vram"] = "192G"
    profile = node_facts(node).profile
    assert (profile.gpu_vendor, profile.gpu_memory_mib) == ("amd", 192 * 1024)
    assert profile.gpu_resource == "amd.com/gpu"


def test_gpu_found_from_allocatable_alone_with_assumptions() -> None:
    node = cpu("bare")
    node["status"]["allocatable"]["nvidia.com/gpu"] = "4"
    profile = node_facts(node).profile
    assert profile.gpu_vendor == "nvidia"
    assert profile.allocatable_gpus == 4
    assert profile.gpu_count == 4
    assert profile.gpu_product is None and profile.gpu_memory_mib is None
    assert any("gpu.product" in a for a in profile.assumptions)
    assert any("GPU memory unknown" in a for a in profile.assumptions)


def test_labelled_gpus_without_device_plugin_are_not_allocatable() -> None:
    node = h100()
    del node["status"]["allocatable"]["nvidia.com/gpu"]
    profile = node_facts(node).profile
    assert profile.gpu_count == 8
    assert profile.allocatable_gpus == 0
    assert any("not allocatable" in a for a in profile.assumptions)


def test_allocatable_below_count_is_kept() -> None:
    profile = node_facts(h100(allocatable=6)).profile
    assert (profile.gpu_count, profile.allocatable_gpus) == (8, 6)


def test_missing_os_and_arch_fall_back_to_node_info_then_defaults() -> None:
    node = cpu()
    del node["metadata"]["labels"]["kubernetes.io/os"]
    del node["metadata"]["labels"]["kubernetes.io/arch"]
    node["status"]["nodeInfo"] = {"architecture": "arm64"}
    profile = node_facts(node).profile
    assert (profile.os, profile.arch) == ("linux", "arm64")
    assert profile.assumptions == ("no kubernetes.io/os label: assumed linux",)


def test_a_bare_object_still_parses() -> None:
    facts = node_facts({"metadata": {"name": "x"}})
    assert facts.profile.gpu_vendor == "none"
    assert facts.profile.platform == "linux/amd64"


def test_cordoned_and_taints() -> None:
    profile = node_facts(cpu(unschedulable=True)).profile
    assert not profile.schedulable
    tainted = node_facts(h100()).profile
    assert [t.key for t in tainted.taints] == ["nvidia.com/gpu"]


def test_identical_nodes_form_one_class_in_any_order() -> None:
    nodes = [h100("h100-1"), h100("h100-0"), l4("l4-0"), cpu("cpu-1"), cpu("cpu-0")]
    classes = classes_of(nodes)
    random.Random(7).shuffle(nodes)
    assert classes_of(nodes) == classes
    by_id = {c.id: c.nodes for c in classes}
    assert by_id == {
        "linux/amd64 8x NVIDIA-H100-80GB-HBM3 81559MiB": ("h100-0", "h100-1"),
        "linux/amd64 1x NVIDIA-L4 23034MiB": ("l4-0",),
        "linux/amd64 cpu": ("cpu-0", "cpu-1"),
    }


def test_classes_that_read_the_same_get_distinct_ids() -> None:
    extra = ({"key": "dedicated", "value": "team-a", "effect": "NoSchedule"},)
    classes = classes_of([cpu("a"), make_node("b", extra_taints=extra)])
    assert [c.id for c in classes] == ["linux/amd64 cpu", "linux/amd64 cpu #2"]
