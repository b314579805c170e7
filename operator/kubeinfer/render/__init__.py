"""Rendering: ModelDeployment + decision + image settings -> child objects (pure)."""

from kubeinfer.render.children import (
    children,
    config_map,
    deployment,
    endpoint_url,
    labels,
    runtime_config,
    selector,
    selector_labels,
    service,
)
from kubeinfer.render.images import EngineImages, ImageSettings

__all__ = [
    "EngineImages",
    "ImageSettings",
    "children",
    "config_map",
    "deployment",
    "endpoint_url",
    "labels",
    "runtime_config",
    "selector",
    "selector_labels",
    "service",
]
