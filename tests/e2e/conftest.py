"""End-to-end fixtures: the tiny model, free ports, and the runtime started as a pod would.

The runtime runs as ``kubeinfer-runtime --config FILE`` in a subprocess, on 127.0.0.1 and
free ports only, with its output kept in a log file for the assertions.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tiny_model
import yaml

RUNTIME = str(Path(sys.executable).parent / "kubeinfer-runtime")


@pytest.fixture(scope="session")
def tiny() -> tiny_model.TinyModel:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    return tiny_model.build()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""  # nothing answers yet


def eventually(check: Callable[[], bool], timeout: float = 30) -> bool:
    """Poll ``check`` until it holds: the runtime acts on engine output asynchronously."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class Runtime:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    termination: Path
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def termination_message(self) -> str:
        return self.termination.read_text() if self.termination.exists() else ""

    def runtime_metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")[1]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        """Return once the engine answers /health; otherwise stop the runtime and fail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if http_get(self.base_url + "/health", timeout=2)[0] == 200:
                return
            time.sleep(0.1)
        code = self.stop()  # never leave a runtime behind a failed fixture
        raise AssertionError(f"runtime not ready (exit {code}):\n{self.output()[-4000:]}")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_runtime(
    tmp: Path,
    engine: str,
    model: Path,
    params: dict[str, Any],
    *,
    name: str = "tiny-llama",
    runtime: str = RUNTIME,
    env: Mapping[str, str] | None = None,
) -> Runtime:
    """``runtime`` and ``env``: another venv's ``kubeinfer-runtime`` and its environment
    (the vLLM tests run the runtime from the vLLM venv, ``tests/vllm_env.py``)."""
    port, metrics_port = free_port(), free_port()
    termination = tmp / "termination-log"
    doc = {
        "apiVersion": "runtime.kubeinfer.io/v1",
        "kind": "RuntimeConfig",
        "engine": engine,
        "model": {"name": name, "uri": str(model), "cacheDir": str(tmp / "cache")},
        "server": {"host": "127.0.0.1", "port": port, "metricsPort": metrics_port},
        "gpus": 0,
        "params": params,
        "terminationMessagePath": str(termination),
    }
    config = tmp / "runtime.yaml"
    config.write_text(yaml.safe_dump(doc))
    log = tmp / "runtime.log"
    child_env = {
        **(os.environ if env is None else env),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [runtime, "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=child_env
        )
    return Runtime(process, port, metrics_port, termination, log)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture
def runtimes(tmp_path: Path) -> Iterator[list[Runtime]]:
    """Runtimes a test starts itself; stopped afterwards whatever happens."""
    started: list[Runtime] = []
    yield started
    for runtime in started:
        runtime.stop()


# The OpenAI calls every engine's end-to-end test makes, against the served tiny model.
SERVED_NAME = "tiny-llama"


def openai_client(runtime: Runtime, timeout: float) -> Any:
    import openai

    return openai.OpenAI(base_url=runtime.base_url + "/v1", api_key="unused", timeout=timeout)


def chat(client: Any, **extra: Any) -> Any:
    """A short chat request (`stream=True` gives the stream)."""
    return client.chat.completions.create(
        model=SERVED_NAME,
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=8,
        **extra,
    )
