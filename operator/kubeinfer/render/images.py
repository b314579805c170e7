"""Which runtime image runs which engine (a typed settings model; fixed tags, no `latest`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kubeinfer.engines import Accelerator

REGISTRY = "ghcr.io/kubeinfer"
TAG = "0.1.0"


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class EngineImages(_Settings):
    """One engine's image per accelerator variant; None where no variant is built."""

    cpu: str | None = None
    cuda: str | None = None
    metal: str | None = None


def _images(repository: str, *variants: Accelerator) -> EngineImages:
    # CUDA builds are a separate repository (…-cuda), so every tag means one thing.
    names = {v: f"{REGISTRY}/{repository}{'-cuda' if v == 'cuda' else ''}:{TAG}" for v in variants}
    return EngineImages(**names)


class ImageSettings(_Settings):
    """Images for the runtime containers, keyed like the Helm values (camelCase)."""

    llama_cpp: EngineImages = Field(
        default=_images("runtime-llamacpp", "cpu", "cuda"), alias="llamaCpp"
    )
    vllm: EngineImages = _images("runtime-vllm", "cuda")
    sglang: EngineImages = _images("runtime-sglang", "cuda")
    transformers: EngineImages = _images("runtime-transformers", "cpu", "cuda")
    mlx: EngineImages = _images("runtime-mlx", "metal")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", alias="pullPolicy"
    )
    # Secrets in each ModelDeployment's namespace for a private registry.
    pull_secrets: tuple[str, ...] = Field(default=(), alias="pullSecrets")

    def image_for(self, engine: str, accelerator: Accelerator) -> str:
        """The image for `engine` on `accelerator`; ValueError when none is configured."""
        images: EngineImages = {
            "llama.cpp": self.llama_cpp,
            "vllm": self.vllm,
            "sglang": self.sglang,
            "transformers": self.transformers,
            "mlx": self.mlx,
        }[engine]
        image: str | None = getattr(images, accelerator)
        if image is None:
            raise ValueError(f"no {accelerator} image configured for engine {engine}")
        return image
