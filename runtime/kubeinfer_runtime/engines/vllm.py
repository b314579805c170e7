"""vLLM: ``vllm serve MODEL`` (its OpenAI server; /health and /metrics on the same port)."""

from __future__ import annotations

import contextlib
import io
from importlib.metadata import version
from typing import Any

from kubeinfer.runtime_config import RuntimeConfig

from .flags import OwnParser, ParamError, served_as, to_flags


def command(config: RuntimeConfig, model_path: str) -> list[str]:
    argv = [
        "vllm",
        "serve",
        model_path,
        *served_as(config),
        *to_flags("vllm", config.params),
    ]
    check_with_vllm(argv)
    return argv


def check_with_vllm(argv: list[str]) -> None:
    """Parse the flags with vLLM's own ``serve`` parser when vLLM is installed here."""
    parser = vllm_serve_parser()
    if parser is None:
        return
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(argv[2:])
    except SystemExit as exit_:  # argparse prints usage and "error: ..." on stderr, then exits
        errors = [line for line in stderr.getvalue().splitlines() if "error:" in line]
        why = errors[-1].split("error:", 1)[1].strip() if errors else "see vLLM's usage"
        raise ParamError(f"vLLM rejected the command line ({why}): {' '.join(argv[2:])}") from exit_


def own_parser() -> OwnParser:
    """vLLM's ``serve`` parser; ImportError where it does not import."""
    parser = vllm_serve_parser()
    if parser is None:
        raise ImportError("vLLM's serve parser does not import here")
    return OwnParser(f"vllm {version('vllm')}: make_arg_parser (vllm serve)", parser)


def vllm_serve_parser() -> Any:
    """vLLM's argument parser for ``vllm serve``, or None where vLLM is not installed."""
    import importlib

    try:
        argparse_utils = importlib.import_module("vllm.utils.argparse_utils")
    except ImportError:
        return None
    # The module holding make_arg_parser moved between vLLM releases.
    for name in ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args"):
        try:
            cli_args = importlib.import_module(name)
        except ImportError:
            continue
        parser = argparse_utils.FlexibleArgumentParser(prog="vllm serve")
        return cli_args.make_arg_parser(parser)
    return None
