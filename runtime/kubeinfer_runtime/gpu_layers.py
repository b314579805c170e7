"""Automatic ``n_gpu_layers`` for llama.cpp: read the GGUF, ask the shared estimate, decide.

The estimate itself is ``kubeinfer.fit`` (one implementation with the operator). This
module only gathers its inputs and turns its plan into the two llama.cpp settings:
``n_gpu_layers`` and, with more than one GPU, ``tensor_split``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeinfer.fit import (
    EstimateError,
    GgufLayout,
    GpuDevice,
    estimate_gpu_layers,
    gpu_layers_or_all,
    layout_from_gguf,
)

# GGUF keys whose values the estimate never needs: big arrays kept out of memory.
_SKIPPED_ARRAYS = ("tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.scores")
_TOKENS = "tokenizer.ggml.tokens"


@dataclass(frozen=True)
class GpuLayerDecision:
    n_gpu_layers: int
    tensor_split: tuple[float, ...]  # () leaves llama.cpp's own split
    reason: str


def read_layout(path: Path) -> GgufLayout | None:
    """The GGUF's layout for the estimate, or None when the file cannot be read as one."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        fields: dict[str, object] = {}
        for name, field in reader.fields.items():
            if name.startswith("GGUF.") or name in _SKIPPED_ARRAYS:
                continue
            # The token list is only counted (fit accepts its length).
            fields[name] = len(field.data) if name == _TOKENS else field.contents()
        tensor_bytes = {t.name: int(t.n_bytes) for t in reader.tensors}
        return layout_from_gguf(fields, tensor_bytes)
    except (OSError, ValueError, KeyError, EstimateError):
        return None


def gpus_from_device_info(devices: Sequence[Mapping[str, Any]]) -> list[GpuDevice]:
    """GPU entries of ``xllamacpp.get_device_info()``, in llama.cpp's device order.

    The CPU (and other non-GPU backends) is dropped, so indices match ``tensor_split``.
    """
    gpus = []
    for dev in devices:
        kind = getattr(dev.get("type"), "name", str(dev.get("type")))
        if not kind.endswith(("GPU", "IGPU")):
            continue
        gpus.append(
            GpuDevice(
                name=str(dev.get("name", "")),
                total_bytes=int(dev.get("memory_total", 0)),
                free_bytes=int(dev.get("memory_free", 0)),
            )
        )
    return gpus


def decide(
    layout: GgufLayout | None,
    gpus: Sequence[GpuDevice],
    *,
    n_ctx: int,
    kv_cache_type: str = "f16",
    flash_attn: bool = False,
) -> GpuLayerDecision:
    """The layers to offload and the split; every layer to the GPU when there is no estimate.

    ``n_ctx`` is llama.cpp's server n_ctx (all slots together; 0 = the model's own), so
    the estimate sees one sequence of that length, as fit's doc says.
    """
    ctx = n_ctx if n_ctx > 0 else (layout.context_length if layout else 0)
    if layout is not None:
        try:
            plan = estimate_gpu_layers(
                layout, gpus, n_ctx=ctx, kv_cache_type=kv_cache_type, flash_attn=flash_attn
            )
        except EstimateError:
            pass  # gpu_layers_or_all below gives the seed's fallback and says why
        else:
            usable = _split_is_usable(plan.tensor_split, plan.layers_per_gpu, gpus)
            split = plan.tensor_split if usable else ()
            reason = plan.reason + (f"; tensor_split {list(split)}" if split else "")
            return GpuLayerDecision(plan.n_gpu_layers, split, reason)
    n, reason = gpu_layers_or_all(
        layout, gpus, n_ctx=ctx, kv_cache_type=kv_cache_type, flash_attn=flash_attn
    )
    return GpuLayerDecision(n, (), reason)


def _split_is_usable(
    split: Sequence[float], layers_per_gpu: Sequence[int], gpus: Sequence[GpuDevice]
) -> bool:
    # llama.cpp lets a non-empty split override where layers go: only pass one that
    # covers every GPU and agrees with the layer counts it came from.
    if len(gpus) < 2 or len(split) != len(gpus) or sum(layers_per_gpu) == 0:
        return False
    total = sum(layers_per_gpu)
    return abs(sum(split) - 1.0) < 1e-6 and all(
        abs(s - n / total) < 1e-6 for s, n in zip(split, layers_per_gpu, strict=True)
    )
