"""The child-process path with a stand-in engine: output passes through and is diagnosed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubeinfer_runtime.engines.runner import RunContext, run_command
from kubeinfer_runtime.metrics import RuntimeMetrics
from kubeinfer_runtime.watch import EngineWatcher

# What llama.cpp printed in the seed's KV-cache case, then a failing exit.
ENGINE = r"""
import sys
print("ggml_metal: Insufficient Memory (kIOGPUCommandBufferCallbackErrorOutOfMemory)")
print("llama_decode: failed to decode, ret = -3")
print("decode: KV cache is full - try increasing it via the context size", file=sys.stderr)
sys.exit(3)
"""


def context(tmp_path: Path) -> tuple[RunContext, RuntimeMetrics, Path]:
    metrics = RuntimeMetrics()
    termination = tmp_path / "termination-log"
    ctx = RunContext(
        metrics=metrics,
        watcher=EngineWatcher(metrics, str(termination)),
        health_url="http://127.0.0.1:9/health",  # nothing answers: never ready
    )
    return ctx, metrics, termination


def test_engine_output_is_diagnosed_and_its_exit_code_kept(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ctx, metrics, termination = context(tmp_path)
    assert run_command([sys.executable, "-c", ENGINE], ctx) == 3
    assert termination.read_text() == (
        "the KV cache could not hold the prompt, probably it could not be allocated — "
        "reduce n_ctx, or increase n_parallel, or lower n_gpu_layers to load only part of "
        "the model onto the GPU\n"
    )
    assert metrics.diagnoses.labels("kv_cache_full")._value.get() == 2
    assert "KV cache is full" in capfd.readouterr().out  # passed through unchanged


def test_a_missing_engine_is_exit_127(tmp_path: Path) -> None:
    ctx, _, _ = context(tmp_path)
    assert run_command(["kubeinfer-no-such-engine"], ctx) == 127


def test_death_by_signal_is_reported_as_a_shell_would(tmp_path: Path) -> None:
    ctx, _, _ = context(tmp_path)
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert run_command([sys.executable, "-c", code], ctx) == 137


def test_an_unexplained_failure_still_leaves_a_message(tmp_path: Path) -> None:
    ctx, _, termination = context(tmp_path)
    assert run_command([sys.executable, "-c", "raise SystemExit(4)"], ctx) == 4
    assert termination.read_text().startswith("python")
    assert "exited with code 4 — see the container log" in termination.read_text()
