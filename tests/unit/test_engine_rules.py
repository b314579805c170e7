"""Every rule of the seed, as a table: format x quantization x platform x vendor x list."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from unit_helpers import cpu, h100, l4, mac, make_node, mi300x, spec

from kubeinfer import placement as plc
from kubeinfer.api.v1alpha1 import Candidate, ModelDeploymentSpec
from kubeinfer.decide import decide
from kubeinfer.engines import engine
from kubeinfer.nodes import node_classes, node_facts

IN_LIST = "qwen2.5-instruct"
OUT_OF_LIST = "my-private-model"


def trace(spec_dict: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Candidate]:
    decision = decide(ModelDeploymentSpec.model_validate(spec_dict), map(node_facts, nodes))
    return {c.engine: c for c in decision.candidates}


def chosen(spec_dict: dict[str, Any], nodes: list[dict[str, Any]]) -> str | None:
    return decide(ModelDeploymentSpec.model_validate(spec_dict), map(node_facts, nodes)).engine


# ----------------------------------------------------------------------------------- vLLM

VLLM_MODEL_TABLE = [
    # format, quantization, name, family, matches
    ("pytorch", "none", IN_LIST, None, True),
    ("pytorch", "Int8", IN_LIST, None, False),
    ("pytorch", "Int4", IN_LIST, None, False),
    ("awq", "Int4", IN_LIST, None, True),
    ("awq", "Int8", IN_LIST, None, False),
    ("gptq", "Int3", IN_LIST, None, True),
    ("gptq", "Int4", IN_LIST, None, True),
    ("gptq", "Int8", IN_LIST, None, True),
    ("gptq", "Int2", IN_LIST, None, False),
    ("gptq", "none", IN_LIST, None, False),
    ("fp4", "none", IN_LIST, None, True),
    ("fp8", "FP8", IN_LIST, None, True),
    ("bnb", "4-bit", IN_LIST, None, True),
    ("gguf", "Q4_K_M", IN_LIST, None, False),
    ("mlx", "4bit", IN_LIST, None, False),
    ("pytorch", "none", OUT_OF_LIST, None, False),
    ("pytorch", "none", OUT_OF_LIST, IN_LIST, True),  # custom model: its family decides
    ("pytorch", "none", IN_LIST, "not-a-family", False),  # ...and only its family
    ("pytorch", "none", "QWEN2.5-INSTRUCT", None, True),  # names are case-insensitive
    ("pytorch", "none", "InternLM2ForCausalLM", None, True),
    ("awq", "int4", IN_LIST, None, True),  # quantization names are case-insensitive
]


@pytest.mark.parametrize(("fmt", "quantization", "name", "family", "matches"), VLLM_MODEL_TABLE)
def test_vllm_model_rules(
    fmt: str, quantization: str, name: str, family: str | None, matches: bool
) -> None:
    model = spec(name=name, format=fmt, quantization=quantization, family=family, file="m.gguf")
    assert trace(model, [h100()])["vllm"].matched is matches


VLLM_PLATFORM_TABLE = [
    ("H100 (CUDA)", h100(), True),
    ("L4 (CUDA)", l4(), True),
    ("AMD MI300X (ROCm)", mi300x(), True),
    ("CPU only", cpu(), False),
    ("linux/arm64 CPU", make_node("arm", arch="arm64"), False),
    ("macOS", mac(), False),
    ("darwin with an NVIDIA GPU", make_node("odd", os="darwin", vendor="nvidia"), False),
]


@pytest.mark.parametrize(("label", "node", "matches"), VLLM_PLATFORM_TABLE)
def test_vllm_needs_linux_and_a_cuda_or_rocm_device(
    label: str, node: dict[str, Any], matches: bool
) -> None:
    result = trace(spec(sizeInBillions=1), [node])["vllm"]
    assert result.matched is matches, result.reason


def test_vllm_needs_gpus_in_the_pod() -> None:
    result = trace(spec(spec_resources={"gpus": 0}), [h100()])["vllm"]
    assert not result.matched
    assert "spec.resources.gpus is 0" in result.reason


# --------------------------------------------------------------------------------- SGLang

SGLANG_TABLE = [
    # format, quantization, name, architecture, abilities, matches
    ("pytorch", "none", IN_LIST, None, ["chat"], True),
    ("pytorch", "Int4", IN_LIST, None, ["chat"], False),
    ("gptq", "Int4", IN_LIST, None, ["chat"], True),
    ("awq", "Int4", IN_LIST, None, ["chat"], True),
    ("fp8", "FP8", IN_LIST, None, ["chat"], True),
    ("bnb", "4-bit", IN_LIST, None, ["chat"], True),
    ("fp4", "none", IN_LIST, None, ["chat"], False),
    ("gguf", "Q4_K_M", IN_LIST, None, ["chat"], False),
    ("pytorch", "none", OUT_OF_LIST, None, ["chat"], False),  # architecture unknown
    ("pytorch", "none", OUT_OF_LIST, "Qwen2ForCausalLM", ["chat"], True),
    ("pytorch", "none", OUT_OF_LIST, "PhiForCausalLM", ["chat"], False),
    ("pytorch", "none", OUT_OF_LIST, "Qwen3ForCausalLM", ["generate"], False),
    ("pytorch", "none", OUT_OF_LIST, "Qwen3ForCausalLM", ["chat"], True),
    ("pytorch", "none", "qwen2.5-vl-instruct", None, ["chat", "vision"], True),
    ("pytorch", "none", IN_LIST, None, ["embed"], False),
]


@pytest.mark.parametrize(
    ("fmt", "quantization", "name", "architecture", "abilities", "matches"), SGLANG_TABLE
)
def test_sglang_model_rules(
    fmt: str,
    quantization: str,
    name: str,
    architecture: str | None,
    abilities: list[str],
    matches: bool,
) -> None:
    model = spec(
        name=name,
        format=fmt,
        quantization=quantization,
        architecture=architecture,
        abilities=abilities,
        file="m.gguf",
    )
    assert trace(model, [h100()])["sglang"].matched is matches


@pytest.mark.parametrize(
    ("node", "matches"), [(h100(), True), (mi300x(), False), (cpu(), False), (mac(), False)]
)
def test_sglang_needs_linux_and_cuda(node: dict[str, Any], matches: bool) -> None:
    assert trace(spec(), [node])["sglang"].matched is matches


def test_sglang_runs_an_unknown_architecture_when_asked_by_name() -> None:
    model = spec(name=OUT_OF_LIST, spec_engine="sglang", spec_resources={"gpus": 1})
    assert not trace(spec(name=OUT_OF_LIST), [h100()])["sglang"].matched
    assert chosen(model, [h100()]) == "sglang"


# ------------------------------------------------------------- llama.cpp, transformers, MLX

FORMATS = ["pytorch", "gptq", "awq", "fp4", "fp8", "bnb", "gguf", "mlx"]
TRANSFORMERS_FORMATS = {"pytorch", "gptq", "awq", "bnb", "fp4"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_transformers_formats(fmt: str) -> None:
    model = spec(name=OUT_OF_LIST, format=fmt, quantization="Q4_K_M", file="m.gguf")
    assert trace(model, [cpu()])["transformers"].matched is (fmt in TRANSFORMERS_FORMATS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_llama_cpp_takes_gguf_only(fmt: str) -> None:
    model = spec(format=fmt, quantization="Q4_K_M", file="m.gguf")
    assert trace(model, [cpu()])["llama.cpp"].matched is (fmt == "gguf")


@pytest.mark.parametrize("fmt", FORMATS)
def test_mlx_takes_mlx_only(fmt: str) -> None:
    model = spec(format=fmt, quantization="4bit", file="m.gguf")
    assert trace(model, [mac()])["mlx"].matched is (fmt == "mlx")


@pytest.mark.parametrize(
    ("node", "llama_cpp", "transformers", "mlx"),
    [
        (cpu(), True, True, False),
        (make_node("arm", arch="arm64"), True, True, False),
        (mac(), True, True, True),
        (make_node("intel-mac", os="darwin", arch="amd64"), True, True, False),
        (h100(taint_gpu=False), True, True, False),
        (make_node("win", os="windows"), False, False, False),
    ],
)
def test_platforms_of_the_portable_engines(
    node: dict[str, Any], llama_cpp: bool, transformers: bool, mlx: bool
) -> None:
    gguf = spec(format="gguf", quantization="Q4_K_M", file="m.gguf", sizeInBillions=1)
    assert trace(gguf, [node])["llama.cpp"].matched is llama_cpp
    assert trace(spec(name=OUT_OF_LIST, sizeInBillions=1), [node])["transformers"].matched is (
        transformers
    )
    assert trace(spec(format="mlx", quantization="4bit"), [node])["mlx"].matched is mlx


def test_mlx_refuses_kubernetes_gpus() -> None:
    result = trace(spec(format="mlx", spec_resources={"gpus": 1}), [mac()])["mlx"]
    assert not result.matched
    assert "spec.resources.gpus" in result.reason


@pytest.mark.parametrize(
    ("model", "engine"),
    [
        (spec(sizeInBillions=7), "vllm"),
        (spec(name=OUT_OF_LIST, sizeInBillions=7), "transformers"),
        (spec(format="gguf", quantization="Q4_K_M", file="m.gguf", sizeInBillions=7), "llama.cpp"),
    ],
)
def test_amd_gpus_run_the_rocm_images(model: dict[str, Any], engine: str) -> None:
    result = trace(model, [mi300x()])[engine]
    assert result.matched, result.reason
    assert "with 1 GPU(s) per replica" in result.reason


def test_sglang_has_no_rocm_image() -> None:
    result = trace(spec(spec_resources={"gpus": 1}), [mi300x()])["sglang"]
    assert not result.matched
    assert "SGLang needs a CUDA device (NVIDIA GPU), node has AMD GPUs" in result.reason


def test_an_engine_without_its_vendors_image_does_not_take_those_gpus() -> None:
    cuda_only = dataclasses.replace(engine("llama.cpp"), accelerators=frozenset({"cpu", "cuda"}))
    model = ModelDeploymentSpec.model_validate(
        spec(format="gguf", quantization="Q4_K_M", file="m.gguf", spec_resources={"gpus": 1})
    )
    (amd,) = node_classes([node_facts(mi300x())])
    found = plc.option(cuda_only, model, amd)
    assert found == (
        "kubeinfer's llama.cpp images are cpu, cuda builds: no rocm image for this node's AMD GPUs"
    )


# ----------------------------------------------------------------------------- preference

LINUX = [h100(), l4(), cpu()]
MAC = [mac()]


@pytest.mark.parametrize(
    ("model", "nodes", "engine"),
    [
        (spec(sizeInBillions=7), LINUX, "vllm"),
        (spec(name="qwen2.5-vl-instruct", abilities=["vision"], sizeInBillions=7), LINUX, "sglang"),
        (spec(name=OUT_OF_LIST, sizeInBillions=7), LINUX, "transformers"),
        (
            spec(format="gguf", quantization="Q4_K_M", file="m.gguf", sizeInBillions=7),
            LINUX,
            "llama.cpp",
        ),
        (spec(format="fp8", quantization="FP8", name=OUT_OF_LIST, sizeInBillions=7), LINUX, None),
        (spec(format="mlx", quantization="4bit"), MAC, "mlx"),
        (spec(format="gguf", quantization="Q4_K_M", file="m.gguf"), MAC, "llama.cpp"),
        (spec(sizeInBillions=7), MAC, "transformers"),
        (spec(format="mlx", quantization="4bit"), LINUX, None),
        (spec(format="mlx", quantization="4bit"), LINUX + MAC, "mlx"),
        (spec(sizeInBillions=7), LINUX + MAC, "vllm"),
    ],
)
def test_preference_order(model: dict[str, Any], nodes: list[dict[str, Any]], engine: str) -> None:
    assert chosen(model, nodes) == engine
