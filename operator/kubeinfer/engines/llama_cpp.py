"""llama.cpp (through xllamacpp): every GGUF model goes here; CPU or CUDA, Linux or macOS."""

from __future__ import annotations

from kubeinfer.api.v1alpha1 import ModelSpec
from kubeinfer.engines.base import Check, Engine, on_os
from kubeinfer.nodes import NodeProfile


def check_model(model: ModelSpec, requested: bool) -> Check:
    if model.format == "gguf":
        return Check(True, "format gguf goes to llama.cpp")
    return Check(False, f"llama.cpp loads format gguf only, got {model.format}")


def check_platform(profile: NodeProfile) -> Check:
    return on_os(profile, "llama.cpp", ("linux", "darwin"))


ENGINE = Engine(
    name="llama.cpp",
    check_model=check_model,
    check_platform=check_platform,
    accelerators=frozenset({"cpu", "cuda"}),
)
