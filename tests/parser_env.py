"""The engines' parser overlays (``hack/parser-env.sh``) that the parser tests run in.

Each is a folder of pinned ``--no-deps`` packages put on ``PYTHONPATH`` in front of the
project's venv, enough to import the engine's own argument parser on a CPU. ``make test``
and ``make test-runtime`` build them (``make parser-envs``); where one is missing the
tests that need it skip saying how to build it.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubeinfer.engines import engine as descriptor

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "hack" / "parser-env.sh"
MARKER = ".kubeinfer-complete"  # written last by the script


@functools.cache
def find(engine: str) -> Path | str:
    """The overlay folder, or why there is none (a skip reason)."""
    query = subprocess.run(
        ["bash", str(SCRIPT), engine, "--path"],
        capture_output=True,
        text=True,
        env={**os.environ, "PY": sys.executable},
    )
    if query.returncode != 0:
        return f"{SCRIPT.name} {engine} --path failed: {query.stderr.strip()}"
    folder = Path(query.stdout.strip())
    if not (folder / MARKER).is_file():
        return f"the {engine} parser overlay {folder} is not built: run `make parser-envs`"
    return folder


def require(engine: str) -> dict[str, str]:
    """Environment for a subprocess of this python with the engine's parser, or skip.
    An engine whose descriptor names no overlay has its parser in this venv."""
    if not descriptor(engine).parser_overlay:
        return {**os.environ, **dict(descriptor(engine).parser_env)}
    found = find(engine)
    if isinstance(found, str):
        pytest.skip(found)
    paths = [str(found), str(ROOT / "operator"), str(ROOT / "runtime")]
    # And what the engine's descriptor says its parser needs (vLLM: VLLM_TARGET_DEVICE=cpu).
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        **dict(descriptor(engine).parser_env),
    }
