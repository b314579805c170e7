"""Automatic ``n_gpu_layers`` for llama.cpp, in stages: the user's value, llama.cpp's fit,
the shared estimate, everything to the GPU.

llama.cpp's own fit (``CommonParams.fit_params``) sizes the layers from a dry run of its
real allocations at load time; any explicit ``n_gpu_layers`` turns it off, so the runtime
leaves the value unset while the fit can run (:func:`choose`). The fit changes only
llama.cpp's internal copy of the model parameters, so what it chose is read back from
llama.cpp's log (:func:`read_log_line`). Where the fit is off, missing from the build, or
failed, the estimate (``kubeinfer.fit``, one implementation with the operator) gives
``n_gpu_layers`` and, with more than one GPU, ``tensor_split`` (:func:`decide`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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


# Which stage set n_gpu_layers: the metric's label.
Source = Literal["user", "fit", "estimate", "all"]


@dataclass(frozen=True)
class GpuLayerChoice:
    source: Source
    n_gpu_layers: int | None  # None: left unset for llama.cpp's fit
    tensor_split: tuple[float, ...]
    reason: str


def choose(
    user: int | None,
    *,
    fit_available: bool,
    fit_failed: bool,
    gpus: int,
    estimate: Callable[[], GpuLayerDecision],
) -> GpuLayerChoice:
    """The stage that sets ``n_gpu_layers``; ``estimate`` is only called when it is needed.

    ``user``: the configured value (None or -1, llama.cpp's "auto", mean not given).
    ``fit_available``: the build has ``fit_params`` and the user did not turn it off.
    ``fit_failed``: a start with the fit failed (its warning, or no load at all).
    """
    if user is not None and user != -1:
        return GpuLayerChoice("user", user, (), f"n_gpu_layers={user} as given")
    if fit_available and not fit_failed:
        return GpuLayerChoice("fit", None, (), "left to llama.cpp's fit (fit_params)")
    why = "llama.cpp's fit failed" if fit_failed else "llama.cpp's fit is not available"
    if gpus == 0:
        return GpuLayerChoice("estimate", 0, (), f"{why}; no GPU devices, nothing to offload")
    d = estimate()
    source: Source = "all" if d.n_gpu_layers == -1 else "estimate"
    return GpuLayerChoice(source, d.n_gpu_layers, d.tensor_split, f"{why}; {d.reason}")


def needs_retry(choice: GpuLayerChoice, *, started: bool, fit_failed: bool, gpus: int) -> bool:
    """Start again with the estimate: the fit chose for GPUs and failed, or the load did.

    Without GPUs the layers are not what failed, so a start stands or falls as it is."""
    return choice.source == "fit" and gpus > 0 and (fit_failed or not started)


# llama.cpp's log lines (format strings in the xllamacpp build): the model loader's count,
# printed at verbosity 4 and only with GPU devices, and the fit's failures, printed at 3.
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
_FIT_FAILED = re.compile(
    r"(failed to fit params to free device memory|"
    r"encountered an error while trying to fit params to free device memory): (.*)"
)


@dataclass(frozen=True)
class Offloaded:
    layers: int
    of: int


@dataclass(frozen=True)
class FitFailed:
    why: str


def read_log_line(line: str) -> Offloaded | FitFailed | None:
    if m := _OFFLOADED.search(line):
        return Offloaded(int(m[1]), int(m[2]))
    if m := _FIT_FAILED.search(line):
        return FitFailed(m[2].strip())
    return None


def reported_layers(choice: GpuLayerChoice, offloaded: Offloaded | None, gpus: int) -> int:
    """The metric's value: llama.cpp's own count when logged, else what is known.

    -1: every layer, or the fit's choice, not logged (llama.cpp's verbosity below 4)."""
    if offloaded is not None:
        return offloaded.layers
    if gpus == 0:
        return 0
    return -1 if choice.n_gpu_layers is None else choice.n_gpu_layers


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
