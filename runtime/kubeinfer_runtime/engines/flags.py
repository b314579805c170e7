"""Engine parameters -> command-line flags for engines that run as a child process."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubeinfer.runtime_config import RuntimeConfig


class ParamError(ValueError):
    """An engine parameter is unknown or has the wrong type; the message names it."""


def flag_name(key: str) -> str:
    """``tensor_parallel_size`` -> ``--tensor-parallel-size`` (a flag given as such stays)."""
    if key.startswith("-"):
        return key
    return "--" + key.replace("_", "-")


def to_flags(params: Mapping[str, Any]) -> list[str]:
    """Flags in sorted key order (same params, same command line).

    True -> ``--flag``; False -> ``--no-flag`` (argparse's BooleanOptionalAction, which
    vLLM and SGLang use for on-by-default switches); None -> left out; lists -> the flag
    followed by each item; dicts -> one JSON argument (vLLM's ``--hf-overrides`` style).
    """
    argv: list[str] = []
    for key in sorted(params):
        value = params[key]
        flag = flag_name(key)
        if value is None:
            continue
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + flag.removeprefix("--"))
        elif isinstance(value, list | tuple):
            argv += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value, sort_keys=True)]
        elif isinstance(value, str | int | float):
            argv += [flag, str(value)]
        else:
            raise ParamError(f"parameter {key!r} has a value of type {type(value).__name__}")
    return argv


def reserved(params: Mapping[str, Any], names: set[str], engine: str) -> None:
    """Refuse params the runtime sets itself from the config document."""
    clash = sorted(k for k in params if k.lstrip("-").replace("-", "_") in names)
    if clash:
        raise ParamError(
            f"{engine} parameter(s) {', '.join(map(repr, clash))} come from the config "
            f"document (model and server sections); remove them from params"
        )


def served_as(config: RuntimeConfig) -> list[str]:
    """Where and under which name an OpenAI server listens (vLLM and SGLang spell it alike)."""
    return [
        "--host",
        config.server.host,
        "--port",
        str(config.server.port),
        "--served-model-name",
        config.model.name,
    ]
