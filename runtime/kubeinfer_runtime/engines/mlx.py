"""MLX: ``mlx_lm.server`` (Apple silicon; OpenAI chat and completions, /health)."""

from __future__ import annotations

import argparse
import importlib
from importlib.metadata import version
from typing import Any

from kubeinfer.runtime_config import RuntimeConfig

from .flags import OwnParser, to_flags


def command(config: RuntimeConfig, model_path: str) -> list[str]:
    return [
        "mlx_lm.server",
        "--model",
        model_path,
        "--host",
        config.server.host,
        "--port",
        str(config.server.port),
        *to_flags("mlx", config.params),
    ]


def own_parser() -> OwnParser:
    """The parser ``mlx_lm.server``'s ``main()`` builds (needs mlx-lm installed)."""
    source = f"mlx-lm {version('mlx-lm')}: mlx_lm.server main()"
    return OwnParser(source, _parser_of("mlx_lm.server"))


class _Built(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser_of(module: str) -> argparse.ArgumentParser:
    """The parser a script's ``main()`` builds, taken when it calls ``parse_args``."""

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Built(self)

    real = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    try:
        importlib.import_module(module).main()
    except _Built as built:
        return built.parser
    finally:
        argparse.ArgumentParser.parse_args = real  # type: ignore[method-assign]
    raise RuntimeError(f"{module}.main() returned without parsing arguments")
