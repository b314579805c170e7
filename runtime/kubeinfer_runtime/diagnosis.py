"""Known engine failures, recognised from single lines of engine output (pure).

The three llama.cpp cases and their remedies are the seed's ("Common problems"); the
out-of-memory rule covers CUDA, PyTorch and ggml allocation failures of every engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    kind: str
    what: str
    remedy: str

    def line(self) -> str:
        """The termination message: one line, ``<what happened> — <remedy>``."""
        return f"{self.what} — {self.remedy}"


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    diagnosis: Diagnosis


def _rule(pattern: str, kind: str, what: str, remedy: str) -> _Rule:
    return _Rule(re.compile(pattern, re.IGNORECASE), Diagnosis(kind, what, remedy))


# First match wins, so the specific llama.cpp cases come before the generic one: the
# seed's KV-cache log also carries an "Insufficient Memory" line.
RULES: tuple[_Rule, ...] = (
    _rule(
        r"failed to process image|failed to encode image|mtmd_helper_eval failed",
        "image_processing",
        "llama.cpp failed to process an image, probably out of memory",
        "reduce n_ctx",
    ),
    _rule(
        r"exceeds the available context size",
        "context_exceeded",
        "a request exceeded the available context size",
        "increase n_ctx, or decrease n_parallel to give each slot a larger context",
    ),
    _rule(
        r"KV cache is full|prompt is too big compared to KV size|failed to decode, ret = -3",
        "kv_cache_full",
        "the KV cache could not hold the prompt, probably it could not be allocated",
        "reduce n_ctx, or increase n_parallel, or lower n_gpu_layers to load only part "
        "of the model onto the GPU",
    ),
    _rule(
        r"out of memory|OutOfMemoryError|Insufficient Memory|cudaMalloc failed"
        r"|failed to allocate \S+ buffer|unable to allocate \S+ buffer",
        "out_of_memory",
        "the engine ran out of memory",
        "lower the context length (n_ctx / max_model_len) or batch size, use a smaller "
        "quantization, or give the pod more GPU memory or more GPUs",
    ),
)


def diagnose(line: str) -> Diagnosis | None:
    """The diagnosis a line of engine output points to, if any."""
    for rule in RULES:
        if rule.pattern.search(line):
            return rule.diagnosis
    return None
