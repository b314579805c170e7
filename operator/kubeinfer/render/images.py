"""Which runtime image runs which engine (a typed settings model; fixed tags, no `latest`).

The defaults come from the engine descriptors (kubeinfer.engines): one repository per
engine, GPU builds in their own (…-cuda, …-rocm), so every tag means one thing. The
settings are keyed like the Helm chart's runtimeImages (each engine's `values_key`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kubeinfer.engines import REGISTRY, Accelerator, Engine

REGISTRY_HOST = "ghcr.io/kubeinfer"
TAG = "0.1.0"
# Variants that share the engine's plain repository (no GPU libraries in them).
_PLAIN: frozenset[Accelerator] = frozenset({"cpu", "metal"})


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class EngineImages(_Settings):
    """One engine's image per accelerator variant; None where no variant is built."""

    cpu: str | None = None
    cuda: str | None = None
    rocm: str | None = None
    metal: str | None = None


def default_images(engine: Engine) -> EngineImages:
    names = {
        v: f"{REGISTRY_HOST}/{engine.image}{'' if v in _PLAIN else '-' + v}:{TAG}"
        for v in engine.accelerators
    }
    return EngineImages(**names)


def _defaults() -> dict[str, EngineImages]:
    return {engine.name: default_images(engine) for engine in REGISTRY}


class ImageSettings(_Settings):
    """Images for the runtime containers, keyed like the Helm values (camelCase): one key
    per engine (a key given replaces that engine's images), pullPolicy, pullSecrets."""

    # By engine name; read from the engines' values keys (see _by_values_key).
    engines: dict[str, EngineImages] = Field(default_factory=_defaults, exclude=True)
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", alias="pullPolicy"
    )
    # Secrets in each ModelDeployment's namespace for a private registry.
    pull_secrets: tuple[str, ...] = Field(default=(), alias="pullSecrets")

    @model_validator(mode="before")
    @classmethod
    def _by_values_key(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "engines" in data:
            return data
        data = dict(data)
        engines: dict[str, Any] = dict(_defaults())
        for engine in REGISTRY:
            if engine.values_key in data:
                engines[engine.name] = data.pop(engine.values_key)
        return {**data, "engines": engines}

    def image_for(self, engine: str, accelerator: Accelerator) -> str:
        """The image for `engine` on `accelerator`; ValueError when none is configured."""
        image: str | None = getattr(self.engines[engine], accelerator)
        if image is None:
            raise ValueError(f"no {accelerator} image configured for engine {engine}")
        return image
