"""What every engine module provides: pure match rules with the sentence that decided."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

from kubeinfer.api.v1alpha1 import EngineName, ModelSpec
from kubeinfer.nodes import NodeProfile

# Which runtime image variant a placement uses: CPU, CUDA, or Apple's Metal (MLX), which
# needs no Kubernetes GPU resource because Apple silicon shares its memory.
Accelerator = Literal["cpu", "cuda", "metal"]


@dataclass(frozen=True, slots=True)
class Check:
    """A rule's verdict and the exact sentence saying why (shown in the trace)."""

    ok: bool
    rule: str


ModelRule = Callable[[ModelSpec, bool], Check]  # (model, engine requested by name)
PlatformRule = Callable[[NodeProfile], Check]


@dataclass(frozen=True, slots=True)
class Engine:
    name: EngineName
    check_model: ModelRule
    check_platform: PlatformRule
    # Variants its runtime images exist for; GPU placements need "cuda".
    accelerators: frozenset[Accelerator]
    # Splits one model over the replica's GPUs with tensor_parallel_size.
    tensor_parallel: bool = False


def model_key(model: ModelSpec) -> tuple[str, str]:
    """(the name a support list is matched on, the field it came from).

    Xinference matches a custom model by its family and a built-in model by its name.
    """
    if model.family:
        return model.family, "spec.model.family"
    return model.name, "spec.model.name"


def same_quantization(given: str, allowed: tuple[str, ...]) -> bool:
    # Case-insensitive so `int4` and `Int4` mean the same thing.
    return given.lower() in {q.lower() for q in allowed}


@cache
def load_data(filename: str) -> Any:
    """A data file shipped in kubeinfer/engines/data (read once, on first use)."""
    text = resources.files("kubeinfer.engines").joinpath("data", filename).read_text()
    return yaml.safe_load(text)


def on_os(profile: NodeProfile, engine: str, allowed: tuple[str, ...]) -> Check:
    if profile.os in allowed:
        return Check(True, f"{engine} runs on {profile.platform}")
    return Check(False, f"{engine} needs {' or '.join(allowed)}, node OS is {profile.os}")


def on_linux_with_cuda(profile: NodeProfile, engine: str) -> Check:
    """The platform rule vLLM and SGLang share: Linux and an NVIDIA (CUDA) GPU."""
    if profile.os != "linux":
        return Check(False, f"{engine} needs Linux, node OS is {profile.os}")
    if profile.gpu_vendor != "nvidia":
        found = "AMD GPUs" if profile.gpu_vendor == "amd" else "no GPU"
        return Check(False, f"{engine} needs a CUDA device (NVIDIA GPU), node has {found}")
    return Check(True, "Linux with a CUDA device")
