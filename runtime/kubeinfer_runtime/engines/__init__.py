"""One launcher per engine, looked up by the contract's engine name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeinfer.runtime_config import RuntimeConfig

from . import llama_cpp, mlx, sglang, transformers, vllm
from .runner import RunContext, run_command

Command = Callable[[RuntimeConfig, str], list[str]]
Workdir = Callable[[RuntimeConfig, Path], Path]


@dataclass(frozen=True)
class Launcher:
    name: str
    command: Command | None = None  # engines run as a child process
    workdir: Workdir | None = None  # where that child starts, when it matters

    def check(self, config: RuntimeConfig) -> None:
        """Raise ParamError for bad params, before anything listens or downloads."""
        if self.command is None:
            llama_cpp.check(config)
        else:
            self.command(config, "MODEL")

    def show(self, config: RuntimeConfig, model_path: Path) -> list[str] | dict[str, Any]:
        """What would start, without starting it: the argv, or llama.cpp's fields."""
        if self.command is None:
            return llama_cpp.fields(config, model_path)
        return self.command(config, str(model_path))

    def run(self, config: RuntimeConfig, model_path: Path, ctx: RunContext) -> int:
        if self.command is None:
            return llama_cpp.run(config, model_path, ctx)
        cwd = self.workdir(config, model_path) if self.workdir else None
        return run_command(self.command(config, str(model_path)), ctx, cwd=cwd)


LAUNCHERS: dict[str, Launcher] = {
    "llama.cpp": Launcher("llama.cpp"),
    "vllm": Launcher("vllm", vllm.command),
    "sglang": Launcher("sglang", sglang.command),
    "transformers": Launcher("transformers", transformers.command, transformers.workdir),
    "mlx": Launcher("mlx", mlx.command),
}
