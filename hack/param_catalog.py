"""Write (or check) the engines' parameter catalogs from the engines' own parsers.

    python hack/param_catalog.py ENGINE            print the catalog
    python hack/param_catalog.py ENGINE -o FILE    write it
    python hack/param_catalog.py ENGINE --check    exit 1 if the shipped one differs
    python hack/param_catalog.py --all [--check]   every engine of the registry, each in
                                                   its own python (``make catalogs``)

The parser is the one the engine's launcher returns from ``own_parser()``
(kubeinfer_runtime.engines.<launcher>). ENGINE alone needs a python where that parser
imports; ``--all`` sets one up from the engine's descriptor: its parser overlay
(``parser_overlay``, built by ``hack/parser-env.sh``) on PYTHONPATH and its ``parser_env``.
Nothing is started.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "runtime")]
DATA = ROOT / "operator/kubeinfer/params/data"

from kubeinfer.engines import REGISTRY, engine  # noqa: E402
from kubeinfer.params import catalog as cat  # noqa: E402
from kubeinfer_runtime.engines.flags import OwnParser  # noqa: E402


def own_parser(name: str) -> OwnParser:
    """The engine's own parser, from its launcher module."""
    launcher = importlib.import_module(f"kubeinfer_runtime.engines.{engine(name).launcher}")
    own: OwnParser = launcher.own_parser()
    return own


def parser(name: str) -> object:
    """The parser itself (argparse; a click command for transformers; for llama.cpp a
    CommonParams)."""
    return own_parser(name).parser


def build(name: str) -> cat.Catalog:
    """The engine's catalog, read from its own parser."""
    descriptor = engine(name)
    try:
        own = own_parser(name)
    except ImportError as err:
        raise SystemExit(f"{descriptor.display}'s parser does not import here: {err}") from err
    if descriptor.param_style == "fields":
        from kubeinfer_runtime.engines.llama_cpp_params import common_params_flags

        return cat.Catalog(name, own.source, common_params_flags(own.parser))
    if isinstance(own.parser, argparse.ArgumentParser):
        return cat.from_parser(name, own.source, own.parser)
    return cat.from_click(name, own.source, own.parser)


def _overlay(name: str) -> Path:
    """The engine's parser overlay folder; SystemExit when it is not built."""
    found = subprocess.run(
        ["bash", str(ROOT / "hack/parser-env.sh"), name, "--path"],
        capture_output=True,
        text=True,
        env={**os.environ, "PY": sys.executable},
        check=True,
    )
    folder = Path(found.stdout.strip())
    if not (folder / ".kubeinfer-complete").is_file():
        raise SystemExit(f"the {name} parser overlay {folder} is not built: run `make parser-envs`")
    return folder


def run_all(check: bool) -> int:
    """Each engine in its own python, with its overlay and environment; 1 if one failed."""
    failed: list[str] = []
    for descriptor in REGISTRY:
        env = {**os.environ, **dict(descriptor.parser_env)}
        if descriptor.parser_overlay:
            env["PYTHONPATH"] = str(_overlay(descriptor.name))
        shipped = DATA / cat.catalog_file(descriptor.name)
        mode = ["--check"] if check else ["-o", str(shipped)]
        done = subprocess.run([sys.executable, __file__, descriptor.name, *mode], env=env)
        if done.returncode != 0:
            failed.append(descriptor.name)
        else:
            what = "current" if check else f"written to {shipped.relative_to(ROOT)}"
            print(f"param_catalog: {descriptor.name}: {what}", file=sys.stderr)
    if failed:
        print(f"param_catalog: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("engine", nargs="?", choices=[e.name for e in REGISTRY])
    target.add_argument("--all", action="store_true", help="every engine, in its own python")
    p.add_argument("-o", "--output", type=Path)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    if args.all:
        if args.output:
            p.error("--all writes the shipped catalogs: no -o")
        return run_all(args.check)
    text = cat.dumps(build(args.engine))
    shipped = DATA / cat.catalog_file(args.engine)
    if args.check:
        if not shipped.is_file() or shipped.read_text() != text:
            print(f"{shipped.relative_to(ROOT)} is stale: run `make catalogs`", file=sys.stderr)
            return 1
        return 0
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
