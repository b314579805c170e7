"""Rendering: ModelDeployment + decision + image settings -> child objects (pure)."""

from kubeinfer.render.children import (
    children,
    deployment,
    endpoint_url,
    labels,
    runtime_config,
    runtime_document,
    selector,
    selector_labels,
    service,
)
from kubeinfer.render.images import EngineImages, ImageSettings

__all__ = [
    "EngineImages",
    "ImageSettings",
    "children",
    "deployment",
    "endpoint_url",
    "labels",
    "runtime_config",
    "runtime_document",
    "selector",
    "selector_labels",
    "service",
]
