"""Engine parameters -> command-line flags, as the engine's own parser reads them.

How a boolean is written depends on the flag, so the engine's catalog (generated from its
parser, ``kubeinfer.params``) decides: ``store_true`` switches are given or left out,
only BooleanOptionalAction flags have a ``--no-X``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeinfer.params.catalog import Catalog, Flag, load
from kubeinfer.params.check import off_switch, problems
from kubeinfer.runtime_config import RuntimeConfig


class ParamError(ValueError):
    """An engine parameter is unknown or has the wrong type; the message names it."""


@dataclass(frozen=True)
class OwnParser:
    """What every launcher's ``own_parser()`` returns: the engine's own parser, the one its
    parameter catalog is made from (``make catalogs``) and the parser tests run."""

    source: str  # the catalog's source line: "sglang 0.5.23: ServerArgs.add_cli_args"
    parser: Any  # an argparse parser, a click command, or llama.cpp's CommonParams


def refuse_bad(engine: str, params: Mapping[str, Any]) -> None:
    """ParamError naming every bad key, by the same checks the operator runs."""
    found = problems(engine, params)
    if found:
        raise ParamError("; ".join(str(p) for p in found))


def to_flags(engine: str, params: Mapping[str, Any]) -> list[str]:
    """Checked params as flags in sorted key order (same params, same command line).

    None -> left out; lists -> the flag followed by each item (or the flag before each item
    where the parser appends: ``--middleware a --middleware b``); dicts -> one JSON argument
    (vLLM's ``--hf-overrides`` style); booleans as the flag's catalog entry says.
    """
    refuse_bad(engine, params)
    catalog = load(engine)
    argv: list[str] = []
    for key in sorted(params):
        value = params[key]
        option = "--" + key.replace("_", "-")
        flag = catalog.get(key) if catalog else None
        if value is None:
            continue
        if isinstance(value, bool) and (flag is None or flag.boolean):
            argv += _switch(catalog, flag, option, value)
        elif isinstance(value, list | tuple) and flag is not None and flag.repeat:
            argv += [part for v in value for part in (option, _text(v))]
        elif isinstance(value, list | tuple):
            argv += [option, *(_text(v) for v in value)]
        elif isinstance(value, dict):
            argv += [option, json.dumps(value, sort_keys=True)]
        elif isinstance(value, str | int | float):
            argv += [option, _text(value)]
        else:
            raise ParamError(f"parameter {key!r} has a value of type {type(value).__name__}")
    return argv


def _switch(catalog: Catalog | None, flag: Flag | None, option: str, on: bool) -> list[str]:
    if flag is not None and flag.boolean == "optional":
        return [option] if on else ["--no-" + option.removeprefix("--")]
    if on:
        return [option]
    if catalog and flag and flag.boolean == "store_true" and flag.default_on:
        off = off_switch(catalog, flag)  # checked: there is one
        return [off.options[0]] if off else []
    return []  # false: the switch is not given, the engine's default stays


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


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
