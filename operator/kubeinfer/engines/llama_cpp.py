"""llama.cpp (through xllamacpp): every GGUF model goes here; CPU, CUDA or ROCm, Linux or macOS.

ROCm: xllamacpp builds with HIP (XLLAMACPP_BUILD_HIP=1, AMDGPU_TARGETS); its prebuilt ROCm
wheels do not cover gfx942 (MI300X), so the ROCm image compiles it (images/README.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubeinfer.engines.base import Check, Engine, on_os
from kubeinfer.nodes import NodeProfile

if TYPE_CHECKING:
    from kubeinfer.api.v1alpha1 import ModelSpec


def check_model(model: ModelSpec, requested: bool) -> Check:
    if model.format == "gguf":
        return Check(True, "format gguf goes to llama.cpp")
    return Check(False, f"llama.cpp loads format gguf only, got {model.format}")


def check_platform(profile: NodeProfile) -> Check:
    return on_os(profile, "llama.cpp", ("linux", "darwin"))


ENGINE = Engine(
    name="llama.cpp",
    display="llama.cpp",
    formats=("gguf",),
    check_model=check_model,
    check_platform=check_platform,
    accelerators=frozenset({"cpu", "cuda", "rocm"}),
    image="runtime-llamacpp",
    values_key="llamaCpp",
    context_param="n_ctx",
    offloads_layers=True,
    reserved_params=frozenset({"model", "model_alias", "hostnames", "port", "endpoint_metrics"}),
    param_style="fields",
    launcher="llama_cpp",
    image_notes=(("rocm", "xllamacpp built with HIP"),),
)
