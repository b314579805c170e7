"""MLX: models in MLX format on Apple silicon (darwin/arm64)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubeinfer.engines.base import Check, Engine
from kubeinfer.nodes import NodeProfile

if TYPE_CHECKING:
    from kubeinfer.api.v1alpha1 import ModelSpec


def check_model(model: ModelSpec, requested: bool) -> Check:
    if model.format == "mlx":
        return Check(True, "format mlx goes to MLX")
    return Check(False, f"MLX loads format mlx only, got {model.format}")


def check_platform(profile: NodeProfile) -> Check:
    if profile.os == "darwin" and profile.arch == "arm64":
        return Check(True, "Apple silicon (darwin/arm64)")
    return Check(False, f"MLX needs Apple silicon (darwin/arm64), node is {profile.platform}")


ENGINE = Engine(
    name="mlx",
    display="MLX",
    formats=("mlx",),
    check_model=check_model,
    check_platform=check_platform,
    accelerators=frozenset({"metal"}),
    image="runtime-mlx",
    values_key="mlx",
    context_param=None,  # mlx_lm.server has no context-length option
    reserved_params=frozenset({"model", "host", "port"}),
    serves_metrics=False,
    launcher="mlx",
    # mlx has Linux wheels: the CPU backend (mlx-cpu) is enough to import mlx_lm.server.
    parser_overlay=("mlx-lm==0.32.2", "mlx==0.32.4", "mlx-cpu==0.32.4"),
)
