"""engineParams against the engines' catalogs: what the operator, explain and the runtime refuse."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from unit_helpers import EXAMPLES, load_yaml_documents, make_node

from kubeinfer.cli import EXIT_INVALID, main
from kubeinfer.engines import REGISTRY
from kubeinfer.nodes import node_classes, node_facts
from kubeinfer.params.catalog import Catalog, Flag, load
from kubeinfer.params.check import problems
from kubeinfer.plan import Observed, conclude, plan
from kubeinfer.render import ImageSettings


@pytest.mark.parametrize(
    ("engine", "key", "value", "words"),
    [
        ("vllm", "model", "/etc/passwd", "set by kubeinfer"),
        ("vllm", "port", 1, "set by kubeinfer"),
        ("vllm", "served_model_name", "x", "set by kubeinfer"),
        ("vllm", "served-model-name", "x", "set by kubeinfer"),
        ("sglang", "model", "/x", "set by kubeinfer"),  # SGLang's alias of --model-path
        ("sglang", "model_path", "/x", "set by kubeinfer"),
        ("transformers", "host", "::", "set by kubeinfer"),
        ("mlx", "model", "/x", "set by kubeinfer"),
        ("llama.cpp", "model.path", "/x", "set by kubeinfer"),
        ("vllm", "model=/etc/passwd", 1, "not a parameter name"),
        ("vllm", "max model len", 1, "not a parameter name"),
        ("vllm", "--max-model-len", 1, "not a parameter name"),
        ("vllm", "max_model_len", [1, 2], "not a list"),
        ("vllm", "chat_template", "--model=/etc/passwd", "starts with '-'"),
        ("vllm", "api_key", ["ok", "-x"], "starts with '-'"),
        ("vllm", "tensor_paralel_size", 2, "did you mean tensor_parallel_size"),
        ("vllm", "max_model_len", "many", "takes an int"),
        ("vllm", "gpu_memory_utilization", True, "takes a float"),
        ("vllm", "enforce_eager", "yes", "takes true or false"),
        ("sglang", "tool_call_parser", "nope", "takes one of"),
        ("llama.cpp", "n_ctxx", 1, "did you mean n_ctx"),
        ("llama.cpp", "cache_type_k", "q9", "takes one of"),
    ],
)
def test_problems_name_the_key(engine: str, key: str, value: Any, words: str) -> None:
    found = problems(engine, {key: value})
    assert len(found) == 1 and found[0].key == key
    assert words in found[0].message


def test_good_params_pass() -> None:
    assert not problems(
        "sglang",
        {
            "tensor_parallel_size": 2,
            "mem_fraction_static": 0.8,
            "enable_metrics": False,  # store_true off by default: left out
            "trust_remote_code": False,
            "tool_call_parser": "qwen25",
            "random_seed": None,  # left out: the engine's default
        },
    )
    assert not problems("vllm", {"hf_overrides": {"rope_theta": 1}, "api_key": ["a", "b"]})
    assert not problems("llama.cpp", {"n_ctx": 4096, "sampling.top_k": 40, "cache_type_k": "q8_0"})
    assert not problems("vllm", {"seed": -1, "max_model_len": "4096"})  # numbers are not flags


def test_a_switch_on_by_default_needs_an_off_switch() -> None:
    on = Flag("fast", ("--fast",), "bool", None, "store_true", default_on=True)
    catalog = Catalog("sglang", "test", (on,))
    assert "no option to turn it off" in str(problems("sglang", {"fast": False}, catalog)[0])
    off = Flag("fast", ("--no-fast",), "bool", None, "store_false", default_on=True)
    assert not problems("sglang", {"fast": False}, Catalog("sglang", "test", (on, off)))


def test_every_engine_has_a_catalog_from_its_parser() -> None:
    for engine in REGISTRY:
        catalog = load(engine.name)
        assert catalog and catalog.flags, f"no catalog for {engine.name}: run `make catalogs`"
    sglang = load("sglang")
    assert sglang and sglang.get("tensor_parallel_size") == sglang.get("tp_size")


def h100_classes() -> Any:
    node = make_node("h100-0", vendor="nvidia")
    return node_classes([node_facts(node)])


def vllm_body(**params: Any) -> dict[str, Any]:
    body: dict[str, Any] = load_yaml_documents(EXAMPLES / "vllm-h100.yaml")[0]
    body["metadata"] |= {"namespace": "default", "generation": 2}
    body["spec"]["engineParams"] = params
    return body


def test_the_operator_refuses_bad_params_before_creating_anything() -> None:
    body = vllm_body(max_model_len=4096, served_model_name="x", **{"model=/etc/passwd": 1})
    observed = Observed(body, None, h100_classes())
    planned = plan(observed, ImageSettings(), apply_always=True)
    assert planned.steps == () and planned.cache is None
    now = datetime(2026, 1, 1, tzinfo=UTC)
    done = conclude(observed, planned, problem=None, cache=None, applied=False, now=now)
    selected = next(c for c in done.status.conditions if c.type == "EngineSelected")
    assert (selected.status, selected.reason) == ("False", "InvalidSpec")
    assert "spec.engineParams.served_model_name: vLLM parameter" in selected.message
    assert "spec.engineParams.model=/etc/passwd: " in selected.message
    assert "max_model_len" not in selected.message


def test_explain_shows_param_problems_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "md.yaml"
    manifest.write_text(yaml.safe_dump(vllm_body(tensor_paralel_size=2)))
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump({"items": [make_node("h100-0", vendor="nvidia")]}))
    assert main(["explain", "-f", str(manifest), "--nodes", str(nodes)]) == EXIT_INVALID
    table = capsys.readouterr().out
    assert "PARAMETER PROBLEMS" in table
    assert "tensor_paralel_size: unknown vLLM parameter" in table
    assert "did you mean tensor_parallel_size" in table
    args = ["explain", "-f", str(manifest), "--nodes", str(nodes), "-o", "json"]
    assert main(args) == EXIT_INVALID
    document = json.load(io.StringIO(capsys.readouterr().out))
    assert document["paramProblems"][0].startswith("tensor_paralel_size: unknown vLLM parameter")
    assert main(["render", "-f", str(manifest), "--nodes", str(nodes)]) == EXIT_INVALID
    assert "invalid engineParams" in capsys.readouterr().err
