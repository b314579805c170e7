"""One launcher per engine, looked up by the contract's engine name.

Each engine's descriptor (kubeinfer.engines) names its module here; engines that take
their params as command-line flags provide ``command(config, model_path)`` and may provide
``workdir(config, model_path)``; llama.cpp (params as CommonParams fields) runs in-process.
Every module has ``own_parser()``: the engine's own parser (flags.OwnParser), which the
parameter catalog is generated from (``make catalogs``) and the parser tests run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeinfer.engines import REGISTRY, Engine
from kubeinfer.runtime_config import RuntimeConfig

from . import llama_cpp
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


def _launcher(engine: Engine) -> Launcher:
    if engine.param_style == "fields":
        return Launcher(engine.name)
    module = importlib.import_module(f"{__name__}.{engine.launcher}")
    return Launcher(engine.name, module.command, getattr(module, "workdir", None))


LAUNCHERS: dict[str, Launcher] = {engine.name: _launcher(engine) for engine in REGISTRY}
