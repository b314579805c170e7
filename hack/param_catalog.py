"""Write (or check) one engine's parameter catalog from the engine's own parser.

    python hack/param_catalog.py ENGINE            print the catalog
    python hack/param_catalog.py ENGINE -o FILE    write it
    python hack/param_catalog.py ENGINE --check    exit 1 if the shipped one differs

Run with a python where the engine's parser imports (``make catalogs`` picks it):
llama.cpp and transformers from the project venv, SGLang and vLLM from their parser
overlays (``hack/parser-env.sh``), mlx_lm from its overlay. Nothing is started.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "runtime")]

from kubeinfer.params import catalog as cat  # noqa: E402


def parser(engine: str) -> Any:
    """The engine's own parser (argparse; a click command for transformers)."""
    if engine == "sglang":
        from sglang.srt.server_args import ServerArgs

        built = argparse.ArgumentParser(prog="sglang serve")  # as prepare_server_args does
        ServerArgs.add_cli_args(built)
        return built
    if engine == "vllm":
        from kubeinfer_runtime.engines.vllm import vllm_serve_parser

        return vllm_serve_parser()
    if engine == "mlx":
        return _parser_of("mlx_lm.server")
    if engine == "transformers":
        from transformers.cli.transformers import app  # a click group (huggingface_hub's)

        return app.commands["serve"]
    raise ValueError(engine)


def sglang() -> cat.Catalog:
    source = f"sglang {version('sglang')}: ServerArgs.add_cli_args"
    return cat.from_parser("sglang", source, parser("sglang"))


def vllm() -> cat.Catalog:
    built = parser("vllm")
    if built is None:
        raise SystemExit("vLLM's serve parser does not import here")
    source = f"vllm {version('vllm')}: make_arg_parser (vllm serve)"
    return cat.from_parser("vllm", source, built)


def transformers() -> cat.Catalog:
    source = f"transformers {version('transformers')}: transformers serve (typer/click)"
    return cat.from_click("transformers", source, parser("transformers"))


def mlx() -> cat.Catalog:
    source = f"mlx-lm {version('mlx-lm')}: mlx_lm.server main()"
    return cat.from_parser("mlx", source, parser("mlx"))


def llama_cpp() -> cat.Catalog:
    import xllamacpp

    from kubeinfer_runtime.engines.llama_cpp_params import common_params_flags

    source = f"xllamacpp {version('xllamacpp')}: CommonParams fields"
    return cat.Catalog("llama.cpp", source, common_params_flags(xllamacpp.CommonParams()))


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
    raise SystemExit(f"{module}.main() returned without parsing arguments")


BUILDERS = {
    "llama.cpp": llama_cpp,
    "vllm": vllm,
    "sglang": sglang,
    "transformers": transformers,
    "mlx": mlx,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("engine", choices=sorted(BUILDERS))
    p.add_argument("-o", "--output", type=Path)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    text = cat.dumps(BUILDERS[args.engine]())
    shipped = ROOT / "operator/kubeinfer/params/data" / cat.catalog_file(args.engine)
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
