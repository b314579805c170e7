"""vLLM: chosen when ALL of the seed's conditions hold (Xinference's VLLMModel.match)."""

from __future__ import annotations

from functools import cache

from kubeinfer.api.v1alpha1 import ENGINE_FORMATS, ModelSpec
from kubeinfer.engines.base import (
    Check,
    Engine,
    load_data,
    model_key,
    on_linux_with_cuda,
    same_quantization,
)
from kubeinfer.nodes import NodeProfile

FORMATS = ENGINE_FORMATS["vllm"]
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
    return on_linux_with_cuda(profile, "vLLM")


ENGINE = Engine(
    name="vllm",
    check_model=check_model,
    check_platform=check_platform,
    accelerators=frozenset({"cuda"}),
    tensor_parallel=True,
)
