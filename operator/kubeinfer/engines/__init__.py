"""The engines kubeinfer can run, one module each, and the registry: the order they are
preferred in.

Xinference's advice is: on Linux vLLM, SGLang, llama.cpp, transformers; on macOS MLX,
llama.cpp, transformers. REGISTRY merges both into one order that keeps each of them
(MLX never competes with vLLM or SGLang: they need Linux, it needs macOS), so one cluster
with both kinds of nodes still has a single, deterministic ranking.

Adding an engine is five hand-edited files: its module here, engines/<x>.py (the `ENGINE`
descriptor, with its image variants and parser overlay); its line in this file (REGISTRY and
EngineName); its launcher kubeinfer_runtime/engines/<x>.py (`command` and `own_parser`); its
image images/runtime-<x>.Dockerfile (none for a Metal-only engine); and its tests; plus its
rows in the engine tables of runtime/README.md and images/README.md. Then `make crd
catalogs` regenerates the CRD, the chart's runtime images and the parameter catalog, and
tests/unit/test_engine_registry.py names anything still missing or stale.
"""

from __future__ import annotations

from typing import Literal

from kubeinfer.engines import llama_cpp, mlx, sglang, transformers, vllm
from kubeinfer.engines.base import GPU_ACCELERATORS, Accelerator, Check, Engine

REGISTRY: tuple[Engine, ...] = (
    vllm.ENGINE,
    sglang.ENGINE,
    mlx.ENGINE,
    llama_cpp.ENGINE,
    transformers.ENGINE,
)
# The API's engine names, for the type checker; the registry test holds it equal to REGISTRY.
EngineName = Literal["vllm", "sglang", "mlx", "llama.cpp", "transformers"]
_BY_NAME = {engine.name: engine for engine in REGISTRY}


def engine(name: str) -> Engine:
    """The descriptor of `name` (KeyError for an unknown one)."""
    return _BY_NAME[name]


__all__ = ["GPU_ACCELERATORS", "REGISTRY", "Accelerator", "Check", "Engine", "EngineName", "engine"]
