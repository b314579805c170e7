"""What every engine module provides: its descriptor (`Engine`), with pure match rules that
say which sentence decided.

One descriptor holds everything the operator and the runtime need to know about an engine;
the registry (kubeinfer.engines) lists them in preference order, and
tests/unit/test_engine_registry.py checks that every other place agrees with it.
Engine modules must not import kubeinfer.api at run time: the API derives its engine
formats from this registry (the import is for type checking only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

import yaml

from kubeinfer.nodes import GpuVendor, NodeProfile

if TYPE_CHECKING:
    from kubeinfer.api.v1alpha1 import ModelSpec

# Which runtime image variant a placement uses: CPU, CUDA (NVIDIA), ROCm (AMD), or Apple's
# Metal (MLX), which needs no Kubernetes GPU resource because Apple silicon shares its memory.
Accelerator = Literal["cpu", "cuda", "rocm", "metal"]
# The image variant a GPU vendor's devices need.
GPU_ACCELERATORS: dict[GpuVendor, Accelerator] = {"nvidia": "cuda", "amd": "rocm"}
# How the runtime hands engineParams over: command-line flags of the engine's own parser,
# or fields set one by one on llama.cpp's CommonParams (dots for nested ones).
ParamStyle = Literal["flags", "fields"]


@dataclass(frozen=True, slots=True)
class Check:
    """A rule's verdict and the exact sentence saying why (shown in the trace)."""

    ok: bool
    rule: str


ModelRule = Callable[["ModelSpec", bool], Check]  # (model, engine requested by name)
PlatformRule = Callable[[NodeProfile], Check]


@dataclass(frozen=True, slots=True)
class Engine:
    name: str  # the API's name (kubeinfer.engines.EngineName)
    display: str  # as people write it in messages: vLLM, SGLang
    # The formats it loads at all; the CRD refuses spec.engine with any other format.
    formats: tuple[str, ...]
    check_model: ModelRule
    check_platform: PlatformRule
    # Variants its runtime images exist for; a GPU placement needs its vendor's variant.
    accelerators: frozenset[Accelerator]
    # The runtime image repository (variants other than cpu/metal get a -<variant> suffix)
    # and its key under the Helm chart's runtimeImages.
    image: str
    values_key: str
    # The engineParams key the context length is read from (for the KV-cache estimate);
    # None where the engine has none (the estimate assumes the default).
    context_param: str | None
    # The engineParams key that splits one model over a replica's GPUs; None: no split.
    tensor_parallel_param: str | None = None
    # Keeps the layers that do not fit on the GPUs in CPU memory (llama.cpp's n_gpu_layers).
    offloads_layers: bool = False
    # Workers talk through shared memory (NCCL, torch multiprocessing): /dev/shm mounted.
    shared_memory: bool = False
    # Serves Prometheus /metrics on its own port (transformers serve and mlx_lm.server do
    # not: only the runtime's metrics port has metrics for them).
    serves_metrics: bool = True
    # Startup probe budget: model download and load, in seconds.
    startup_seconds: int = 1800
    # What the runtime sets itself from the config document (model, where it listens, the
    # served name), as the engine parser's dests: every spelling of them is refused.
    reserved_params: frozenset[str] = frozenset()
    param_style: ParamStyle = "flags"
    # The runtime module that starts it: kubeinfer_runtime.engines.<launcher>.
    launcher: str = ""

    def gpu_vendors(self) -> tuple[GpuVendor, ...]:
        """The GPU vendors it has an image for, sorted."""
        return tuple(sorted(v for v, a in GPU_ACCELERATORS.items() if a in self.accelerators))


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


_DEVICE_WORDS = {"nvidia": "a CUDA device (NVIDIA GPU)", "amd": "a ROCm device (AMD GPU)"}
_FOUND = {"nvidia": "NVIDIA GPUs", "amd": "AMD GPUs", "none": "no GPU"}


def on_linux_with_gpu(
    profile: NodeProfile, engine: str, accelerators: frozenset[Accelerator]
) -> Check:
    """The platform rule of GPU-only engines (vLLM, SGLang): Linux and a GPU of a vendor
    the engine has an image for."""
    if profile.os != "linux":
        return Check(False, f"{engine} needs Linux, node OS is {profile.os}")
    vendors = [v for v, a in GPU_ACCELERATORS.items() if a in accelerators]
    if profile.gpu_vendor not in vendors:
        wanted = " or ".join(_DEVICE_WORDS[v] for v in sorted(vendors))
        return Check(False, f"{engine} needs {wanted}, node has {_FOUND[profile.gpu_vendor]}")
    return Check(True, f"Linux with {_DEVICE_WORDS[profile.gpu_vendor]}")
