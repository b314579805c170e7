"""The config document the operator gives the runtime (see docs/contracts.md).

It is the runtime's whole view of the decision: the runtime reads nothing else and never
talks to the Kubernetes API. Pure data, no I/O.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from kubeinfer.engines import EngineName

API_VERSION: Final = "runtime.kubeinfer.io/v1"
PVC_MOUNT_ROOT = "/mnt/pvc"
CONFIG_PATH = "/etc/kubeinfer/runtime.yaml"
HTTP_PORT = 8000
METRICS_PORT = 9090


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ModelSource(_Doc):
    name: str = Field(description="Served model name (the OpenAI 'model').")
    uri: str = Field(description="hf://org/repo[/file], pvc://claim/path, or an absolute path.")
    file: str | None = Field(default=None, description="File inside the repo or directory.")
    cache_dir: str = Field(default="/models", alias="cacheDir")
    prefetched: bool = Field(
        default=False,
        description="hf:// only: a download Job already filled cacheDir (mounted read-only); "
        "start from it without contacting the hub.",
    )


class ServerConfig(_Doc):
    host: str = "0.0.0.0"
    port: int = Field(default=HTTP_PORT, ge=1, le=65535)
    metrics_port: int = Field(default=METRICS_PORT, ge=1, le=65535, alias="metricsPort")


class RuntimeConfig(_Doc):
    api_version: Literal["runtime.kubeinfer.io/v1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["RuntimeConfig"] = "RuntimeConfig"
    engine: EngineName
    model: ModelSource
    server: ServerConfig = ServerConfig()
    gpus: int = Field(default=0, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)
    termination_message_path: str = Field(
        default="/dev/termination-log", alias="terminationMessagePath"
    )

    def to_document(self) -> dict[str, Any]:
        """The document as the pod template carries it (camelCase keys). `prefetched` only when
        set: documents of models without a cache stay as they were (no rollout on upgrade)."""
        exclude = None if self.model.prefetched else {"model": {"prefetched"}}
        return self.model_dump(mode="json", by_alias=True, exclude=exclude)
