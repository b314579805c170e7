"""engineParams checked against the engine's catalog, before anything is created or started.

The operator runs this on the decided engine's params (an InvalidSpec condition naming the
key), ``kubeinfer explain`` shows the same problems before apply, and the runtime refuses
the same params again (its config document may come from elsewhere). Pure.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeinfer.engines import engine as descriptor
from kubeinfer.params.catalog import Catalog, Flag, key_of, load

# A parameter name: letters, digits and underscores (dashes inside, dots for llama.cpp's
# nested fields). Anything else ("=", spaces, a leading dash) could smuggle a second flag.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def problems(
    engine: str, params: Mapping[str, Any], catalog: Catalog | None = None
) -> list[Problem]:
    """Every problem with ``params`` for ``engine``, in key order (empty: all good)."""
    catalog = catalog or load(engine)
    found: list[Problem] = []
    for key in sorted(params):
        why = _key_problem(engine, catalog, key, params[key])
        if why:
            found.append(Problem(key, why))
    return found


def reserved_keys(engine: str, catalog: Catalog | None) -> frozenset[str]:
    dests = descriptor(engine).reserved_params
    spelled = {k for f in (catalog.flags if catalog else ()) if f.dest in dests for k in f.keys}
    return frozenset(dests | spelled)


def _key_problem(engine: str, catalog: Catalog | None, key: str, value: Any) -> str | None:
    name = descriptor(engine).display
    if not _NAME.fullmatch(key):
        return f"{key!r} is not a parameter name (letters, digits, '_'; no '=', space, '-' first)"
    fields = descriptor(engine).param_style == "fields"
    head = key.split(".")[0] if fields else key
    if key_of(head) in reserved_keys(engine, catalog):
        return (
            f"{name} parameter {key!r} is set by kubeinfer from spec.model and the server "
            "settings; remove it"
        )
    command_line = not fields  # the others get params as command-line flags
    if command_line and _starts_with_dash(value):
        return f"value {value!r} starts with '-' and would read as a flag"
    if catalog is None:
        return None
    flag = catalog.get(key)
    if flag is None:
        return f"unknown {name} parameter {key!r}{_close(key, catalog)}"
    if value is None:
        return None  # left out: the engine's default
    return _value_problem(name, catalog, flag, value)


def _value_problem(name: str, catalog: Catalog, flag: Flag, value: Any) -> str | None:
    if flag.boolean is not None:
        if not isinstance(value, bool):
            return f"takes true or false, got {value!r}"
        default_on = flag.boolean == "store_true" and flag.default_on
        if value is False and default_on and off_switch(catalog, flag) is None:
            return f"is on by default in {name}, which has no option to turn it off"
        return None
    if isinstance(value, list):
        if not flag.list:
            return f"takes one value, not a list ({value!r})"
        return next((why for v in value if (why := _scalar_problem(flag, v))), None)
    if isinstance(value, dict):
        # one JSON argument: for json-typed flags, and text flags that read JSON themselves
        return None if flag.type in ("json", "str") else f"takes a {flag.type}, not a mapping"
    return _scalar_problem(flag, value)


def _scalar_problem(flag: Flag, value: Any) -> str | None:
    if isinstance(value, bool) and flag.type != "bool":
        return f"takes a {flag.type}, got {str(value).lower()}"
    if isinstance(value, list | dict):
        return f"takes a list of {flag.type} values, got {value!r}"
    if flag.type in ("int", "float") and not _is_number(value, flag.type):
        return f"takes a{'n' if flag.type == 'int' else ''} {flag.type}, got {value!r}"
    if flag.choices is not None and _text(value) not in flag.choices:
        return f"takes one of {', '.join(flag.choices)}; got {value!r}"
    return None


def off_switch(catalog: Catalog, flag: Flag) -> Flag | None:
    """The option that turns a default-on ``store_true`` switch off, if the engine has one."""
    return next((f for f in catalog.same_dest(flag) if f.boolean == "store_false"), None)


def _is_number(value: Any, kind: str) -> bool:
    convert = int if kind == "int" else float
    if isinstance(value, float):
        return kind == "float"  # "2.0" is no int to argparse
    if isinstance(value, int):
        return True
    try:
        convert(str(value))
    except ValueError:
        return False
    return True


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _starts_with_dash(value: Any) -> bool:
    if isinstance(value, list):
        return any(_starts_with_dash(v) for v in value)
    if not isinstance(value, str) or not value.startswith("-"):
        return False
    try:
        float(value)  # "-1" is a number, not a flag
    except ValueError:
        return True
    return False


def _close(key: str, catalog: Catalog) -> str:
    matches = difflib.get_close_matches(key_of(key), catalog.by_key, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(matches)}?" if matches else ""


def describe(found: list[Problem]) -> str:
    """One line per problem, as InvalidSpec and `kubeinfer explain` list them."""
    return "\n".join(f"  spec.engineParams.{p}" for p in found)
