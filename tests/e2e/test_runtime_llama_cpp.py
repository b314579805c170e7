"""llama.cpp through the runtime, started as the pod starts it, over HTTP."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiny_model
from conftest import Runtime, chat, eventually, http_get, listening, openai_client, start_runtime

pytestmark = pytest.mark.engine
openai = pytest.importorskip("openai")
pytest.importorskip("xllamacpp")

N_CTX = 256  # llama.cpp's smallest context (it rounds up to 256)


@pytest.fixture(scope="module")
def runtime(tiny: tiny_model.TinyModel, module_tmp: Path) -> Iterator[Runtime]:
    rt = start_runtime(
        module_tmp,
        "llama.cpp",
        tiny.gguf_path,
        {"n_ctx": N_CTX, "cpuparams.n_threads": 2, "sampling.top_k": 1},
    )
    rt.wait_ready(timeout=60)
    yield rt
    assert rt.stop() == 0, rt.output()  # SIGTERM: a clean, graceful exit


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> openai.OpenAI:
    return openai_client(runtime, timeout=60)


def test_models_lists_the_served_name(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]


def test_chat_completion(client: openai.OpenAI) -> None:
    reply = chat(client)
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_completion(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="tiny-llama", prompt="The quick brown", max_tokens=8)
    assert reply.usage is not None and reply.usage.completion_tokens == 8
    assert reply.choices[0].finish_reason == "length"


def test_streaming_chat(client: openai.OpenAI) -> None:
    stream = chat(client, stream=True)
    chunks = list(stream)
    assert len(chunks) > 2
    assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason is not None


def test_engine_and_runtime_metrics(runtime: Runtime, client: openai.OpenAI) -> None:
    client.completions.create(model="tiny-llama", prompt="Hello", max_tokens=2)
    status, engine = http_get(runtime.base_url + "/metrics")
    assert status == 200 and "llamacpp:prompt_tokens_total" in engine
    assert eventually(lambda: "kubeinfer_runtime_ready 1.0" in runtime.runtime_metrics())
    own = runtime.runtime_metrics()
    assert 'kubeinfer_runtime_engine_info{engine="llama.cpp",model="tiny-llama"} 1.0' in own


def test_without_n_gpu_layers_llama_cpps_fit_decides(runtime: Runtime) -> None:
    # No GPU here: the fit only checks host memory, and nothing is offloaded.
    out = runtime.output()
    assert "n_gpu_layers (fit): left to llama.cpp's fit (fit_params)" in out
    assert "n_gpu_layers (fit): 0 layers on the GPU (no GPU devices)" in out
    assert 'kubeinfer_runtime_gpu_layers{source="fit"} 0.0' in runtime.runtime_metrics()


TIB = 1024**4


@pytest.mark.parametrize(
    ("params", "source", "logged"),
    [
        ({"n_gpu_layers": 0}, "user", "n_gpu_layers (user): n_gpu_layers=0 as given"),
        ({"fit_params": False}, "estimate", "llama.cpp's fit is not available; no GPU devices"),
        # A margin no machine has: llama.cpp's fit fails (a warning) and loads anyway.
        (
            {"fit_params_target": [TIB] * 16},
            "estimate",
            "llama.cpp's fit failed: was unable to fit model into system memory by reducing "
            "context, abort",
        ),
    ],
)
def test_gpu_layer_stages_with_the_real_engine(
    tiny: tiny_model.TinyModel, tmp_path: Path, params: dict[str, Any], source: str, logged: str
) -> None:
    rt = start_runtime(tmp_path, "llama.cpp", tiny.gguf_path, {"n_ctx": N_CTX, **params})
    try:
        rt.wait_ready(timeout=60)
        metric = f'kubeinfer_runtime_gpu_layers{{source="{source}"}} 0.0'
        assert eventually(lambda: metric in rt.runtime_metrics()), rt.runtime_metrics()
        out = rt.output()
        assert logged in out
        assert "again with the estimate" not in out  # no GPU: no second start
    finally:
        assert rt.stop() == 0, rt.output()


def test_prompt_longer_than_n_ctx_is_diagnosed(runtime: Runtime, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="exceeds the available context size"):
        client.completions.create(
            model="tiny-llama", prompt="The quick brown fox. " * 100, max_tokens=4
        )
    expected = (
        "a request exceeded the available context size — increase n_ctx, or decrease "
        "n_parallel to give each slot a larger context\n"
    )
    assert eventually(lambda: runtime.termination_message() == expected)
    assert eventually(
        lambda: (
            'kubeinfer_runtime_diagnoses_total{kind="context_exceeded"} 1.0'
            in runtime.runtime_metrics()
        )
    )


def test_bad_param_exits_with_the_key_named_and_nothing_listening(
    tiny: tiny_model.TinyModel, tmp_path: Path
) -> None:
    rt = start_runtime(tmp_path, "llama.cpp", tiny.gguf_path, {"n_ctxx": 512})
    code = rt.process.wait(timeout=60)
    assert code == 2
    assert "unknown llama.cpp parameter 'n_ctxx'; did you mean n_ctx" in rt.output()
    assert "n_ctxx" in rt.termination.read_text()
    assert not listening(rt.port) and not listening(rt.metrics_port)


def test_sigint_stops_the_server_and_frees_the_port(
    tiny: tiny_model.TinyModel, tmp_path: Path
) -> None:
    rt = start_runtime(tmp_path, "llama.cpp", tiny.gguf_path, {"n_ctx": N_CTX})
    try:
        rt.wait_ready(timeout=60)
        rt.process.send_signal(signal.SIGINT)
        assert rt.process.wait(timeout=30) == 0
        assert not listening(rt.port)
    finally:
        rt.stop()


def test_a_broken_gguf_fails_with_a_termination_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    rt = start_runtime(tmp_path, "llama.cpp", broken, {})
    assert rt.process.wait(timeout=60) == 1
    assert rt.termination_message().startswith("llama.cpp failed to start")
    assert not listening(rt.port)
