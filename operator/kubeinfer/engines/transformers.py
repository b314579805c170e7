"""transformers: the default engine for PyTorch-format models (and a few quantized ones).

CPU, CUDA or ROCm: the same code on PyTorch's CPU, CUDA or ROCm build (torch's ROCm wheels
come from https://download.pytorch.org/whl/rocm<version>; `torch.cuda` drives HIP devices).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubeinfer.engines.base import Check, Engine, on_os
from kubeinfer.nodes import NodeProfile

if TYPE_CHECKING:
    from kubeinfer.api.v1alpha1 import ModelSpec

# Xinference's transformers engine takes these (not fp8).
FORMATS = ("pytorch", "gptq", "awq", "bnb", "fp4")


def check_model(model: ModelSpec, requested: bool) -> Check:
    if model.format not in FORMATS:
        return Check(
            False, f"format {model.format} is not one of transformers': {', '.join(FORMATS)}"
        )
    if model.format == "pytorch":
        return Check(True, "transformers is the default engine for format pytorch")
    return Check(True, f"transformers loads format {model.format}")


def check_platform(profile: NodeProfile) -> Check:
    return on_os(profile, "transformers", ("linux", "darwin"))


ENGINE = Engine(
    name="transformers",
    display="transformers",
    formats=FORMATS,
    check_model=check_model,
    check_platform=check_platform,
    accelerators=frozenset({"cpu", "cuda", "rocm"}),
    image="runtime-transformers",
    values_key="transformers",
    context_param=None,  # `transformers serve` has no context-length option
    reserved_params=frozenset({"force_model", "model_id", "host", "port"}),
    serves_metrics=False,
    launcher="transformers",
    image_notes=(("rocm", "PyTorch's ROCm build"),),
)
