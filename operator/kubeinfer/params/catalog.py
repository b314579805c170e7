"""Parameter catalogs: what each engine's own parser accepts, as data.

A catalog is generated from the engine's real parser (``make catalogs``, see
``hack/param_catalog.py``) into ``data/<engine>.json`` and read here. One entry per
parser option: its spellings, value type, choices, boolean style and whether it takes a
list. The operator checks ``engineParams`` against it before creating anything, and the
runtime writes command lines from it (``false`` means different things per flag).

Pure: the generator side reads argparse objects already built; the reading side is data.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

# How a switch behaves: ``store_true`` (``--x`` sets it; absent is off), ``store_false``
# (``--x`` clears it), ``optional`` (argparse's BooleanOptionalAction: ``--x`` / ``--no-x``).
BooleanStyle = Literal["store_true", "store_false", "optional"]
ValueType = Literal["int", "float", "str", "json", "bool"]


def key_of(option: str) -> str:
    """``--tensor-parallel-size`` -> ``tensor_parallel_size`` (the spelling params use)."""
    return option.lstrip("-").replace("-", "_")


@dataclass(frozen=True, slots=True)
class Flag:
    """One option of an engine's parser (or one CommonParams field for llama.cpp)."""

    dest: str
    options: tuple[str, ...]  # every long spelling, first is the main one
    type: ValueType = "str"
    choices: tuple[str, ...] | None = None
    boolean: BooleanStyle | None = None
    default_on: bool = False  # for switches: whether the engine's default is on
    list: bool = False
    repeat: bool = False  # a list given as the flag once per item (argparse "append")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key_of(o) for o in self.options)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dest": self.dest, "options": list(self.options)}
        out["type"] = self.type
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.boolean is not None:
            out["boolean"] = self.boolean
            out["default_on"] = self.default_on
        if self.list:
            out["list"] = True
        if self.repeat:
            out["repeat"] = True
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Flag:
        choices = doc.get("choices")
        return cls(
            dest=doc["dest"],
            options=tuple(doc["options"]),
            type=doc.get("type", "str"),
            choices=tuple(choices) if choices is not None else None,
            boolean=doc.get("boolean"),
            default_on=bool(doc.get("default_on", False)),
            list=bool(doc.get("list", False)),
            repeat=bool(doc.get("repeat", False)),
        )


@dataclass(frozen=True)
class Catalog:
    engine: str
    source: str  # which engine version and parser it came from
    flags: tuple[Flag, ...]

    @property
    def by_key(self) -> dict[str, Flag]:
        return _index(self)

    def get(self, key: str) -> Flag | None:
        return self.by_key.get(key_of(key))

    def same_dest(self, flag: Flag) -> tuple[Flag, ...]:
        """Other options writing the same value (``--enable-x`` and ``--disable-x``)."""
        return tuple(f for f in self.flags if f.dest == flag.dest and f is not flag)

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "source": self.source,
            "flags": [f.to_json() for f in self.flags],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Catalog:
        return cls(doc["engine"], doc["source"], tuple(Flag.from_json(f) for f in doc["flags"]))


@cache
def _index(catalog: Catalog) -> dict[str, Flag]:
    return {key: flag for flag in catalog.flags for key in flag.keys}


def catalog_file(engine: str) -> str:
    return f"{engine.replace('.', '_')}.json"


@cache
def load(engine: str) -> Catalog | None:
    """The shipped catalog of an engine (None if there is none)."""
    path = resources.files("kubeinfer.params").joinpath("data", catalog_file(engine))
    if not path.is_file():
        return None
    return Catalog.from_json(json.loads(path.read_text(encoding="utf-8")))


def dumps(catalog: Catalog) -> str:
    """The file as generated: stable order, one flag per line for readable diffs."""
    lines = [f"  {json.dumps(f.to_json(), sort_keys=True)}" for f in catalog.flags]
    head = json.dumps({"engine": catalog.engine, "source": catalog.source})[:-1]
    return head + ', "flags": [\n' + ",\n".join(lines) + "\n]}\n"


# ----------------------------------------------------------------- from argparse parsers

_SKIPPED_ACTIONS = (argparse._HelpAction, argparse._VersionAction)
_PROBES = ("abc", "{}", "0.5", "1")


def from_parser(engine: str, source: str, parser: argparse.ArgumentParser) -> Catalog:
    """Every optional argument of a built parser; positionals are the runtime's own."""
    flags = [
        flag
        for action in parser._actions
        if action.option_strings and not isinstance(action, _SKIPPED_ACTIONS)
        if (flag := _flag(action)) is not None
    ]
    return Catalog(engine, source, tuple(sorted(flags, key=lambda f: f.options)))


def _flag(action: argparse.Action) -> Flag | None:
    options = tuple(o for o in action.option_strings if o.startswith("--"))
    if not options:
        return None  # short-only options: params are long names
    if isinstance(action, argparse.BooleanOptionalAction):
        positive = tuple(o for o in options if not o.startswith("--no-"))
        return Flag(action.dest, positive, "bool", None, "optional", bool(action.default))
    if action.nargs == 0:  # store_true / store_false / store_const / count
        style: BooleanStyle = "store_false" if action.const is False else "store_true"
        return Flag(action.dest, options, "bool", None, style, bool(action.default))
    choices = None
    if action.choices is not None:
        choices = tuple(sorted(str(c) for c in action.choices))
    repeat = isinstance(action, argparse._AppendAction)
    nargs = action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1)
    kind = _value_type(action, nargs)
    return Flag(action.dest, options, kind, choices, None, False, repeat or nargs, repeat)


def _value_type(action: argparse.Action, many: bool) -> ValueType:
    """What an option takes, found by trying its ``type=`` and its own action on samples."""
    convert: Any = action.type
    custom = type(action).__module__ != "argparse"  # may check the value when it stores it
    plain: dict[Any, ValueType] = {None: "str", str: "str", int: "int", float: "float"}
    if not custom and convert in plain:
        return plain[convert]
    accepted: dict[str, Any] = {}
    for sample in _PROBES:
        try:
            value = convert(sample) if callable(convert) else sample
            if custom:
                given = [value] if many else value
                with contextlib.redirect_stderr(io.StringIO()):  # parser.error() prints
                    action(argparse.ArgumentParser(), argparse.Namespace(), given, action.dest)
            accepted[sample] = value
        except (Exception, SystemExit):  # a refusal is what the probe is for
            continue
    if "abc" in accepted:
        return "str"
    if isinstance(accepted.get("1"), bool):
        return "bool"  # a str2bool-style value (``--x true``)
    if "{}" in accepted:
        return "json"
    if "0.5" in accepted:
        return "float"
    if "1" in accepted:
        return "int"
    return "str"


# ------------------------------------------------------- from click commands (typer CLIs)

_CLICK_TYPES: dict[str, ValueType] = {"integer": "int", "float": "float", "boolean": "bool"}


def from_click(engine: str, source: str, command: Any) -> Catalog:
    """Every option of a built click command (typer builds one); arguments are skipped."""
    flags = [_click_flag(p) for p in command.params if p.param_type_name == "option"]
    return Catalog(engine, source, tuple(sorted(flags, key=lambda f: f.options)))


def _click_flag(option: Any) -> Flag:
    options = tuple(o for o in option.opts if o.startswith("--"))
    if option.is_flag:
        # typer writes a bool as ``--x/--no-x``: both ways, like BooleanOptionalAction.
        style: BooleanStyle = "optional" if option.secondary_opts else "store_true"
        if not option.secondary_opts and option.flag_value is False:
            style = "store_false"
        return Flag(option.name, options, "bool", None, style, bool(option.default))
    type_name = option.type.name
    choices = getattr(option.type, "choices", None)
    return Flag(
        option.name,
        options,
        _CLICK_TYPES.get(type_name, "str"),
        tuple(sorted(str(c) for c in choices)) if choices is not None else None,
        None,
        False,
        bool(option.multiple or option.nargs != 1),
        bool(option.multiple),
    )
