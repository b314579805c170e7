"""llama.cpp parameters -> ``xllamacpp.CommonParams``, one attribute at a time.

Keys follow llama.cpp's ``common_params``; nested structs are reached with dots
(``sampling.top_k``, ``cpuparams.n_threads``). Every value is checked against the type of
the field it replaces, and an unknown key is an error naming the key with close matches,
before anything starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
from collections.abc import Mapping
from typing import Any

from kubeinfer.engines import llama_cpp
from kubeinfer.params.catalog import Flag

from .flags import ParamError

# Set by the runtime from the config document, not by params.
RESERVED = llama_cpp.ENGINE.reserved_params


def _fields(obj: object) -> list[str]:
    return [n for n in dir(obj) if not n.startswith("_") and not callable(getattr(obj, n))]


def _is_group(value: object) -> bool:
    # Nested parameter structs (CommonParamsSampling, CpuParams, ...) are extension types
    # with fields of their own, unlike scalars, lists, sets and enums.
    return type(value).__module__.startswith("xllamacpp") and not isinstance(value, enum.Enum)


def _unknown(key: str, part: str, obj: object, prefix: str) -> ParamError:
    names = [prefix + n for n in _fields(obj)]
    close = difflib.get_close_matches(prefix + part, names, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ParamError(f"unknown llama.cpp parameter {key!r}{hint}")


def _convert(key: str, current: object, value: Any) -> object:
    """``value`` in the type of the field's current value, or a ParamError naming the key."""
    expected: type[Any] = type(current)
    if isinstance(current, enum.Enum):
        return _enum_member(key, type(current), value)
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(current, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(current, str):
        if isinstance(value, str):
            return value
    elif isinstance(current, list | set):
        if isinstance(value, list | tuple):
            if current and all(isinstance(v, float) for v in current):
                # Fixed-size float arrays (tensor_split: one slot per possible device).
                return [float(v) for v in value] + [0.0] * (len(current) - len(value))
            return expected(value)
        if isinstance(value, str) and isinstance(current, list):
            return [value]
    else:
        raise ParamError(f"llama.cpp parameter {key!r} cannot be set from the config")
    raise ParamError(
        f"llama.cpp parameter {key!r} takes a {expected.__name__}, "
        f"got {value!r} ({type(value).__name__})"
    )


def _enum_member(key: str, enum_type: type[enum.Enum], value: Any) -> enum.Enum:
    # Accept the member name, its short form ("q8_0" for GGML_TYPE_Q8_0) or its number.
    members = enum_type.__members__
    if isinstance(value, int) and not isinstance(value, bool):
        for member in members.values():
            if member.value == value:
                return member
    if isinstance(value, str):
        wanted = value.strip().upper()
        for name, member in members.items():
            if name == wanted or name.endswith("_" + wanted):
                return member
    raise ParamError(
        f"llama.cpp parameter {key!r} takes one of {', '.join(members)}; got {value!r}"
    )


def set_param(params: object, key: str, value: Any) -> None:
    """Set one (possibly dotted) key on a CommonParams, type-checked."""
    *path, last = key.split(".")
    obj, prefix = params, ""
    for part in path:
        if part not in _fields(obj):
            raise _unknown(key, part, obj, prefix)
        obj = getattr(obj, part)
        if not _is_group(obj):
            raise ParamError(f"llama.cpp parameter {prefix + part!r} has no fields ({key!r})")
        prefix += part + "."
    if last not in _fields(obj):
        raise _unknown(key, last, obj, prefix)
    current = getattr(obj, last)
    if _is_group(current):
        sub = ", ".join(f"{key}.{n}" for n in _fields(current)[:3])
        raise ParamError(f"llama.cpp parameter {key!r} is a group; set its fields ({sub}, ...)")
    try:
        setattr(obj, last, _convert(key, current, value))
    except (TypeError, ValueError, OverflowError, AssertionError) as err:
        raise ParamError(f"llama.cpp parameter {key!r} rejected {value!r}: {err}") from err


def apply_params(params: object, values: Mapping[str, Any]) -> None:
    """Set every key, in sorted order; the first bad one raises ParamError."""
    for key in sorted(values):
        if key.split(".")[0] in RESERVED:
            raise ParamError(
                f"llama.cpp parameter {key!r} comes from the config document "
                f"(model and server sections); remove it from params"
            )
        set_param(params, key, values[key])


def common_params_flags(params: object) -> tuple[Flag, ...]:
    """The catalog entries of every settable CommonParams field, dotted, in name order."""
    flags: list[Flag] = []
    for name in _fields(params):
        value = getattr(params, name)
        if _is_group(value):
            flags += [
                dataclasses.replace(f, dest=f"{name}.{f.dest}", options=(f"--{name}.{f.dest}",))
                for f in common_params_flags(value)
            ]
        elif (flag := _field_flag(name, value)) is not None:
            flags.append(flag)
    return tuple(flags)


def _field_flag(name: str, value: object) -> Flag | None:
    option = (f"--{name}",)
    if isinstance(value, enum.Enum):
        members = type(value).__members__
        spellings = set(members) | {str(m.value) for m in members.values()}
        spellings |= {_short(n, members).lower() for n in members}
        return Flag(name, option, "str", tuple(sorted(spellings)))
    if isinstance(value, bool):
        return Flag(name, option, "bool", None, "optional", value)
    for kind, type_name in ((int, "int"), (float, "float"), (str, "str")):
        if isinstance(value, kind):
            return Flag(name, option, type_name)  # type: ignore[arg-type]
    if isinstance(value, list | set):
        item = next(iter(value), "")
        of = "float" if isinstance(item, float) else "int" if isinstance(item, int) else "str"
        return Flag(name, option, of, list=True)  # type: ignore[arg-type]
    return None  # not settable from the config (callbacks, pointers)


def _short(name: str, names: Mapping[str, object]) -> str:
    """``GGML_TYPE_Q8_0`` -> ``Q8_0``: the name after the words every member starts with."""
    words = name.split("_")
    shared = 0
    while shared < len(words) - 1 and all(
        n.startswith("_".join(words[: shared + 1]) + "_") for n in names
    ):
        shared += 1
    return "_".join(words[shared:])
