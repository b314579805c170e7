"""transformers: the default engine for PyTorch-format models (and a few quantized ones)."""

from __future__ import annotations

from kubeinfer.api.v1alpha1 import ENGINE_FORMATS, ModelSpec
from kubeinfer.engines.base import Check, Engine, on_os
from kubeinfer.nodes import NodeProfile

# Xinference's transformers engine takes these (not fp8).
FORMATS = ENGINE_FORMATS["transformers"]


def check_model(model: ModelSpec, requested: bool) -> Check:
    if model.format not in FORMATS:
        return Check(
            False, f"format {model.format} is not one of transformers': {', '.join(FORMATS)}"
        )
    if model.format == "pytorch":
        return Check(True, "transformers is the default engine for format pytorch")
    return Check(True, f"transformers loads format {model.format}")


def check_platform(profile: NodeProfile) -> Check:
    return on_os(profile, "transformers", ("linux", "darwin"))


ENGINE = Engine(
    name="transformers",
    check_model=check_model,
    check_platform=check_platform,
    accelerators=frozenset({"cpu", "cuda"}),
)
