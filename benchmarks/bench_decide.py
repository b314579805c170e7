"""Time of one engine decision over 1,000 nodes (goal: under 5 ms), with a 10-node baseline.

Nodes are the simulated cluster (hack/controlplane/sample-nodes.yaml) repeated with unique
names, so the classes are the real ones and the per-node work (facts, grouping) is what grows.

    .venv/bin/python benchmarks/bench_decide.py [--runs 200]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kubeinfer.api.v1alpha1 import ModelDeploymentSpec
from kubeinfer.decide import decide
from kubeinfer.nodes import node_facts

ROOT = Path(__file__).resolve().parent.parent
SPECS = {
    "vllm, 8 GPUs": "vllm-h100.yaml",
    "llama.cpp, GPU layers": "gguf-gpu.yaml",
    "no engine (mlx)": "mlx.yaml",
}


def cluster(size: int) -> list[dict[str, Any]]:
    sample = ROOT / "hack" / "controlplane" / "sample-nodes.yaml"
    template = yaml.safe_load(sample.read_text())["items"]
    nodes = []
    for index in range(size):
        node = copy.deepcopy(template[index % len(template)])
        node["metadata"]["name"] = f"{node['metadata']['name']}-{index}"
        nodes.append(node)
    return nodes


def median_ms(function: Callable[[], object], runs: int) -> float:
    function()  # warm caches (support lists are read once)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    print(f"median of {runs} runs; decide() includes grouping nodes into classes")
    print(f"{'spec':<24}{'nodes':>6}{'decide ms':>12}{'parse+decide ms':>18}")
    for label, filename in SPECS.items():
        spec = ModelDeploymentSpec.model_validate(
            yaml.safe_load((ROOT / "examples" / filename).read_text())["spec"]
        )
        for size in (10, 1000):
            nodes = cluster(size)
            facts = [node_facts(n) for n in nodes]
            decide_only = median_ms(lambda: decide(spec, facts), runs)  # noqa: B023
            end_to_end = median_ms(
                lambda: decide(spec, [node_facts(n) for n in nodes]),  # noqa: B023
                runs,
            )
            print(f"{label:<24}{size:>6}{decide_only:>12.3f}{end_to_end:>18.3f}")


if __name__ == "__main__":
    main()
