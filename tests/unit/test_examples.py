"""examples/ is safe to apply anywhere, and the sample nodes are the simulated cluster's."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from unit_helpers import EXAMPLES, ROOT, SAMPLE_NODES, load_yaml_documents

from kubeinfer.api.v1alpha1 import API_VERSION, KIND, ModelDeployment


def test_kubectl_apply_f_examples_creates_only_modeldeployments() -> None:
    # `kubectl apply -f examples/` (or a GitOps app pointed at it) reads every .yaml/.json.
    files = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    assert len(files) >= 5
    for path in files:
        documents = load_yaml_documents(path)
        assert documents, path
        for document in documents:
            assert (document["apiVersion"], document["kind"]) == (API_VERSION, KIND), path
            ModelDeployment.from_object(document)


def _essentials(node: dict[str, Any]) -> tuple[Any, ...]:
    labels = {k: v for k, v in node["metadata"]["labels"].items() if k != "type"}  # KWOK's mark
    spec = node.get("spec", {})
    return labels, spec.get("taints"), node["status"]["allocatable"]


def test_sample_nodes_are_what_simnodes_makes_of_the_node_groups() -> None:
    here = ROOT / "hack" / "controlplane"
    made = subprocess.run(
        [sys.executable, str(here / "simnodes.py"), str(here / "nodes.yaml")],
        check=True,
        capture_output=True,
        text=True,
    )
    simulated = {n["metadata"]["name"]: _essentials(n) for n in json.loads(made.stdout)["items"]}
    (sample,) = load_yaml_documents(SAMPLE_NODES)
    assert {n["metadata"]["name"]: _essentials(n) for n in sample["items"]} == simulated
