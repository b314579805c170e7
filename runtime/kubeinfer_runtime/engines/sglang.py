"""SGLang: ``python -m sglang.launch_server`` (OpenAI server, /health, /metrics on one port)."""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import version

from kubeinfer.runtime_config import RuntimeConfig

from .flags import OwnParser, served_as, to_flags


def command(config: RuntimeConfig, model_path: str) -> list[str]:
    params = dict(config.params)
    params.setdefault("enable_metrics", True)  # Prometheus /metrics is off by default
    return [
        sys.executable,
        "-m",
        "sglang.launch_server",
        "--model-path",
        model_path,
        *served_as(config),
        *to_flags("sglang", params),
    ]


def own_parser() -> OwnParser:
    """SGLang's parser as ``prepare_server_args`` builds it (needs sglang installed)."""
    server_args = importlib.import_module("sglang.srt.server_args")
    parser = argparse.ArgumentParser(prog="sglang serve")
    server_args.ServerArgs.add_cli_args(parser)
    return OwnParser(f"sglang {version('sglang')}: ServerArgs.add_cli_args", parser)
