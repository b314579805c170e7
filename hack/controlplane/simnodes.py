"""Turns the node groups of nodes.yaml into Node objects for KWOK (printed as one JSON List).

Usage: simnodes.py nodes.yaml [--scale N]   (--scale repeats every group N times, for benchmarks)
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}


def gpu_labels(gpu: dict[str, Any]) -> dict[str, str]:
    if gpu["vendor"] == "nvidia":
        return {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": gpu["product"],
            "nvidia.com/gpu.memory": str(gpu["memoryMiB"]),
            "nvidia.com/gpu.count": str(gpu["count"]),
            "nvidia.com/cuda.driver.major": str(gpu["driverMajor"]),
            "nvidia.com/gpu.compute.major": str(gpu["computeMajor"]),
        }
    # AMD's node labeller publishes the product name, VRAM and count under amd.com/.
    return {
        "amd.com/gpu.present": "true",
        "amd.com/gpu.product-name": gpu["product"],
        "amd.com/gpu.vram": str(gpu["memoryMiB"]),
        "amd.com/gpu.count": str(gpu["count"]),
    }


def node(group: dict[str, Any], index: int) -> dict[str, Any]:
    name = f"{group['name']}-{index}"
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": group.get("os", "linux"),
        "kubernetes.io/arch": group["arch"],
        "type": "kwok",
    }
    resources = {"cpu": group["cpu"], "memory": group["memory"], "pods": "110"}
    taints = []
    gpu = group.get("gpu")
    if gpu:
        labels |= gpu_labels(gpu)
        resource = f"{gpu['vendor']}.com/gpu"
        resources[resource] = str(gpu["count"])
        taints.append({"key": resource, "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": dict(KWOK_ANNOTATION)},
        "spec": {"taints": taints} if taints else {},
        "status": {"allocatable": dict(resources), "capacity": dict(resources)},
    }


def nodes(groups: list[dict[str, Any]], scale: int = 1) -> list[dict[str, Any]]:
    return [node(group, index) for group in groups for index in range(group["count"] * scale)]


def main(argv: list[str]) -> None:
    with open(argv[1]) as f:
        groups = yaml.safe_load(f)
    scale = int(argv[argv.index("--scale") + 1]) if "--scale" in argv else 1
    items = nodes(groups, scale)
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv)
