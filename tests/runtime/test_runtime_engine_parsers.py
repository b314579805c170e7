"""The runtime's command lines, parsed by each engine's own parser; the catalogs are fresh.

Every engine of the registry is here: each flag-style engine's parser runs in its parser
overlay (``tests/parser_env.py``; in this venv where the descriptor names none), and every
catalog flag is given once (booleans both ways, lists, choices, the tensor-parallel size the
operator adds), so a flag the runtime writes wrong fails here; every catalog, flags or
fields (llama.cpp), must be what ``make catalogs`` writes today.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import parser_env
import pytest

from kubeinfer.engines import REGISTRY
from kubeinfer.engines import engine as descriptor
from kubeinfer.params.catalog import Flag, catalog_file, load

FLAG_ENGINES = [e.name for e in REGISTRY if e.param_style == "flags"]
FIELD_ENGINES = [e.name for e in REGISTRY if e.param_style == "fields"]
ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack" / "param_catalog.py"
MODEL_PATH, MODEL_NAME = "/m", "tiny"

# Run in the overlay: build each command with the runtime, parse it with the engine's own
# parser (argparse, or a click command), and generate the catalog afresh (one import of the
# engine for all of it).
PARSE = """
import argparse, contextlib, importlib.util, io, json, sys
spec = importlib.util.spec_from_file_location("param_catalog", sys.argv[1])
hack = importlib.util.module_from_spec(spec); spec.loader.exec_module(hack)
from kubeinfer.params.catalog import dumps
from kubeinfer.runtime_config import RuntimeConfig
from kubeinfer_runtime.engines import LAUNCHERS
from kubeinfer_runtime.engines.flags import ParamError

engine, model_path, model_name = sys.argv[2], sys.argv[4], sys.argv[5]
parser = hack.parser(engine)
if isinstance(parser, argparse.ArgumentParser):
    options = set(parser._option_string_actions)
    parse = lambda flags: vars(parser.parse_args(flags))
else:  # a click command
    options = {o for p in parser.params if p.param_type_name == "option" for o in p.opts}
    parse = lambda flags: parser.make_context(parser.name or engine, flags).params

def program_words(argv):
    # The words that start the program (`vllm serve`, `python -m sglang.launch_server`):
    # those before the first one its parser reads, one of its options or the model.
    for i, word in enumerate(argv):
        if word.split("=", 1)[0] in options or word in (model_path, model_name):
            return i
    return len(argv)

out = []
for params in json.loads(sys.argv[3]):
    doc = {"engine": engine, "model": {"name": model_name, "uri": model_path}, "params": params}
    try:
        argv = LAUNCHERS[engine].command(RuntimeConfig.model_validate(doc), model_path)
    except ParamError as err:
        out.append({"refused": str(err)})
        continue
    words = program_words(argv)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = parse(argv[words:])
    except SystemExit:
        out.append({"program": argv[:words], "rejected": err.getvalue().strip().splitlines()[-1]})
        continue
    out.append({"program": argv[:words], "parsed": {k: str(v) for k, v in ns.items()}})
print(json.dumps({"results": out, "catalog": dumps(hack.build(engine))}))
"""

# What the issue found by hand (SGLang 0.5.23), kept as named cases.
SGLANG_CASES = [
    {
        "tensor_parallel_size": 2,  # what the operator adds
        "mem_fraction_static": 0.8,
        "context_length": 4096,
        "trust_remote_code": True,
        "chunked_prefill_size": 2048,
        "disable_radix_cache": True,
        "tool_call_parser": "qwen25",
        "reasoning_parser": "qwen3",
    },
    {"enable_metrics": False, "trust_remote_code": False, "tp_size": 1},
]
# Options no sample value fits: --config reads a real YAML file at parse time; vLLM's
# --lora-modules wants name=path or a JSON object of LoRAModulePath's fields.
SKIP = {"vllm": {"config", "lora_modules"}, "sglang": {"config"}}
SAMPLES: dict[str, object] = {"int": 1, "float": 0.5, "json": {}, "str": "x"}


def sample(flag: Flag, on: bool) -> object:
    """A value of the flag's kind; booleans as ``on`` says."""
    if flag.boolean is not None or (flag.type == "bool" and not flag.choices):
        return on
    one = flag.choices[0] if flag.choices else SAMPLES.get(flag.type, "x")
    return [one, one] if flag.list else one


def every_flag(engine: str, on: bool) -> dict[str, object]:
    catalog = load(engine)
    assert catalog is not None, f"no catalog for {engine}: run `make catalogs`"
    skipped = descriptor(engine).reserved_params | SKIP.get(engine, set())
    return {f.keys[0]: sample(f, on) for f in catalog.flags if f.dest not in skipped}


@functools.cache
def run_parser(engine: str) -> dict[str, Any]:
    env = parser_env.require(engine)
    cases = [every_flag(engine, True), every_flag(engine, False)]
    if engine == "sglang":
        cases += SGLANG_CASES
    done = subprocess.run(
        [sys.executable, "-c", PARSE, str(HACK), engine, json.dumps(cases), MODEL_PATH, MODEL_NAME],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_sglang_parses_the_issues_command_lines() -> None:
    first, second = run_parser("sglang")["results"][2:]
    assert "parsed" in first, first
    assert first["parsed"]["tp_size"] == "2" and first["parsed"]["trust_remote_code"] == "True"
    assert first["parsed"]["enable_metrics"] == "True"  # the runtime turns /metrics on
    assert "parsed" in second, second  # false: left out, not --no-enable-metrics
    assert second["parsed"]["enable_metrics"] == "False"
    assert second["parsed"]["trust_remote_code"] == "False"


@pytest.mark.parametrize("engine", FLAG_ENGINES)
def test_every_catalog_flag_parses_both_ways(engine: str) -> None:
    on, off = run_parser(engine)["results"][:2]
    assert "parsed" in on, str(on)[:3000]
    assert "parsed" in off, str(off)[:3000]


def test_the_program_words_are_not_given_to_the_parser() -> None:
    """What the parse above leaves out of each command line (read from the parser's options,
    not listed per engine), for the engines it is known for."""
    known = {
        "vllm": ["vllm", "serve"],
        "sglang": [sys.executable, "-m", "sglang.launch_server"],
        "mlx": ["mlx_lm.server"],
        "transformers": ["transformers", "serve"],
    }
    for engine, program in known.items():
        assert run_parser(engine)["results"][0]["program"] == program, engine


@pytest.mark.parametrize("engine", FLAG_ENGINES)
def test_catalog_is_fresh(engine: str) -> None:
    shipped = ROOT / "operator/kubeinfer/params/data" / catalog_file(engine)
    name = shipped.relative_to(ROOT)
    assert shipped.is_file(), f"{name} is missing: run `make catalogs`"
    fresh = run_parser(engine)["catalog"]
    assert fresh == shipped.read_text(), f"{name} is stale: run `make catalogs`"


@pytest.mark.parametrize("engine", FIELD_ENGINES)
def test_fields_catalog_is_fresh(engine: str) -> None:
    done = subprocess.run(
        [sys.executable, str(HACK), engine, "--check"],
        capture_output=True,
        text=True,
        env=parser_env.require(engine),
    )
    assert done.returncode == 0, done.stderr
