"""The engines kubeinfer can run, one module each, and the order they are preferred in.

Xinference's advice is: on Linux vLLM, SGLang, llama.cpp, transformers; on macOS MLX,
llama.cpp, transformers. PREFERENCE merges both into one order that keeps each of them
(MLX never competes with vLLM or SGLang: they need Linux, it needs macOS), so one cluster
with both kinds of nodes still has a single, deterministic ranking.
"""

from __future__ import annotations

from kubeinfer.engines import llama_cpp, mlx, sglang, transformers, vllm
from kubeinfer.engines.base import Accelerator, Check, Engine

PREFERENCE: tuple[Engine, ...] = (
    vllm.ENGINE,
    sglang.ENGINE,
    mlx.ENGINE,
    llama_cpp.ENGINE,
    transformers.ENGINE,
)
BY_NAME: dict[str, Engine] = {engine.name: engine for engine in PREFERENCE}

__all__ = ["BY_NAME", "PREFERENCE", "Accelerator", "Check", "Engine"]
