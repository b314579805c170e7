"""Command line -> the config document (``RuntimeConfig``); nothing else is read."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubeinfer.engines import REGISTRY
from kubeinfer.runtime_config import HTTP_PORT, METRICS_PORT, RuntimeConfig


class ConfigError(ValueError):
    """The config document or the flags are not usable; the message says why."""


def parse_value(text: str) -> Any:
    """A JSON scalar when the text is one (42, 0.5, true, null, "x"), else the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str | int | float | bool) or value is None else text


def parse_param(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--param {item!r} must be key=value")
    return key.strip(), parse_value(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubeinfer-runtime",
        description="Start one inference engine from a kubeinfer runtime config document.",
    )
    p.add_argument("--config", type=Path, help="the config document (runtime.yaml)")
    p.add_argument(
        "--engine",
        choices=[e.name for e in REGISTRY],
        help="engine, for local runs without --config",
    )
    p.add_argument("--model", help="model path or URI (absolute path, pvc://, hf://)")
    p.add_argument("--model-file", help="the file inside the model repo or folder")
    p.add_argument("--name", help="served model name (default: the model's base name)")
    p.add_argument("--cache-dir", default="/models", help="where hf:// downloads go")
    p.add_argument("--host", default=None, help="listen address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help=f"engine port (default {HTTP_PORT})")
    p.add_argument(
        "--metrics-port", type=int, default=None, help=f"runtime metrics (default {METRICS_PORT})"
    )
    p.add_argument("--gpus", type=int, default=0)
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="engine parameter, repeatable; values parse as JSON scalars when they can",
    )
    p.add_argument("--termination-message-path", default=None)
    p.add_argument(
        "--fetch-only",
        action="store_true",
        help="fetch the model into the cache directory and exit (the download Job)",
    )
    p.add_argument(
        "--print-command",
        action="store_true",
        help="print the engine command as one JSON list (llama.cpp: its CommonParams fields "
        "as one JSON object) and exit, starting and fetching nothing",
    )
    return p


def config_from_args(args: argparse.Namespace) -> RuntimeConfig:
    if args.config is not None:
        if args.engine or args.model:
            raise ConfigError("give either --config or --engine/--model, not both")
        try:
            doc = yaml.safe_load(args.config.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read {args.config}: {err}") from err
    elif args.engine and args.model:
        name = args.name or Path(args.model.rstrip("/")).name.removesuffix(".gguf")
        doc = {
            "engine": args.engine,
            "model": {"name": name, "uri": args.model, "cacheDir": args.cache_dir},
            "gpus": args.gpus,
        }
        if args.model_file:
            doc["model"]["file"] = args.model_file
    else:
        raise ConfigError("give --config PATH, or --engine and --model")
    doc = _overrides(doc if isinstance(doc, dict) else {}, args)
    try:
        return RuntimeConfig.model_validate(doc)
    except ValidationError as err:
        raise ConfigError(f"invalid runtime config: {err}") from err


def _overrides(doc: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    # Flags given next to --config win over the document (handy for local debugging).
    server = dict(doc.get("server") or {})
    for key, value in (
        ("host", args.host),
        ("port", args.port),
        ("metricsPort", args.metrics_port),
    ):
        if value is not None:
            server[key] = value
    params = dict(doc.get("params") or {})
    params.update(parse_param(item) for item in args.param)
    out = {**doc, "server": server, "params": params}
    if args.termination_message_path:
        out["terminationMessagePath"] = args.termination_message_path
    return out


@dataclass(frozen=True)
class Invocation:
    config: RuntimeConfig
    print_command: bool = False
    fetch_only: bool = False


def invocation(argv: Sequence[str] | None = None) -> Invocation:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return Invocation(config_from_args(args), args.print_command, args.fetch_only)
    except ConfigError as err:
        parser.error(str(err))
        raise  # unreachable: parser.error exits


def parse(argv: Sequence[str] | None = None) -> RuntimeConfig:
    return invocation(argv).config
