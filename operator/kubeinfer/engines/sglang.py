"""SGLang, as Xinference's SGLANGModel.match_json decides it.

Formats pytorch/gptq/awq/fp8/bnb (pytorch unquantized), Linux with CUDA, and a supported
architecture for the model's ability. The spec names models, not architectures: the
architecture comes from spec.model.architecture or the family table in data/sglang.yaml.
When it is unknown SGLang does not match in `auto`, but runs when asked for by name.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from kubeinfer.engines.base import (
    Accelerator,
    Check,
    Engine,
    load_data,
    model_key,
    on_linux_with_gpu,
    same_quantization,
)
from kubeinfer.nodes import NodeProfile

if TYPE_CHECKING:
    from kubeinfer.api.v1alpha1 import ModelSpec

FORMATS = ("pytorch", "gptq", "awq", "fp8", "bnb")
# CUDA only: kubeinfer builds no ROCm image of SGLang (none was checked on AMD GPUs here).
ACCELERATORS: frozenset[Accelerator] = frozenset({"cuda"})
# The architecture list that applies, by the first ability the model has in this order.
ABILITY_ORDER = ("vision", "chat", "generate")


@cache
def supported_architectures() -> dict[str, frozenset[str]]:
    table = load_data("sglang.yaml")["architectures"]
    return {ability: frozenset(names) for ability, names in table.items()}


@cache
def family_architectures() -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in load_data("sglang.yaml")["families"].items()}


def architecture_of(model: ModelSpec) -> tuple[str | None, str]:
    """(architecture, where it came from)."""
    if model.architecture:
        return model.architecture, "spec.model.architecture"
    name, field = model_key(model)
    found = family_architectures().get(name.lower())
    return found, f"kubeinfer's family table for {name} ({field})"


def check_model(model: ModelSpec, requested: bool) -> Check:
    if model.format not in FORMATS:
        return Check(False, f"format {model.format} is not one of SGLang's: {', '.join(FORMATS)}")
    if model.format == "pytorch" and not same_quantization(model.quantization, ("none",)):
        return Check(
            False, f"format pytorch needs quantization none for SGLang, got {model.quantization}"
        )
    ability = next((a for a in ABILITY_ORDER if a in model.abilities), None)
    if ability is None:
        return Check(False, "SGLang serves vision, chat or generate models, not embed only")
    architecture, source = architecture_of(model)
    if architecture is None:
        if requested:
            return Check(True, "architecture unknown; runs because spec.engine is sglang")
        return Check(
            False,
            f"architecture unknown (not in {source}); set spec.model.architecture, or "
            "spec.engine: sglang to run it anyway",
        )
    if architecture not in supported_architectures()[ability]:
        return Check(
            False,
            f"architecture {architecture} ({source}) is not supported by SGLang for {ability}",
        )
    return Check(
        True,
        f"format {model.format}, architecture {architecture} ({source}) is supported for {ability}",
    )


def check_platform(profile: NodeProfile) -> Check:
    return on_linux_with_gpu(profile, "SGLang", ACCELERATORS)


ENGINE = Engine(
    name="sglang",
    display="SGLang",
    formats=FORMATS,
    check_model=check_model,
    check_platform=check_platform,
    accelerators=ACCELERATORS,
    image="runtime-sglang",
    values_key="sglang",
    context_param="context_length",
    tensor_parallel_param="tensor_parallel_size",
    shared_memory=True,
    startup_seconds=3600,
    reserved_params=frozenset({"model_path", "host", "port", "served_model_name"}),
    launcher="sglang",
    # What `import sglang.srt.server_args` needs beyond torch and transformers.
    parser_overlay=(
        "sglang==0.5.23",
        "orjson==3.13.0",
        "pybase64==1.5.1",
        "msgspec==0.23.0",
        "pyzmq==27.3.0",
        "ipython==9.18.1",
        "traitlets==5.16.1",
        "pillow==13.0.0",
    ),
)
