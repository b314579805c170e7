"""transformers (``transformers serve``) through the runtime, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_model
from conftest import Runtime, chat, eventually, http_get, openai_client, start_runtime

pytestmark = pytest.mark.engine
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def runtime(tiny: tiny_model.TinyModel, module_tmp: Path) -> Iterator[Runtime]:
    rt = start_runtime(module_tmp, "transformers", tiny.hf_dir, {"device": "cpu"})
    rt.wait_ready(timeout=180)
    yield rt
    code = rt.stop()
    # SIGTERM is forwarded; uvicorn shuts down cleanly (0), or the child reports the signal.
    assert code in (0, 143), rt.output()[-3000:]
    assert "forwarding SIGTERM to the engine" in rt.output()


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> openai.OpenAI:
    return openai_client(runtime, timeout=120)


def test_models_lists_the_served_name(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]


def test_chat_completion(client: openai.OpenAI) -> None:
    reply = chat(client)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content is not None


def test_completion(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="tiny-llama", prompt="The quick brown", max_tokens=8)
    assert reply.choices[0].text is not None


def test_streaming_chat(client: openai.OpenAI) -> None:
    stream = chat(client, stream=True)
    assert len(list(stream)) > 2


def test_health_and_metrics(runtime: Runtime) -> None:
    assert http_get(runtime.base_url + "/health")[0] == 200
    # transformers 5.24's server has no Prometheus endpoint; the runtime's own port does.
    assert http_get(runtime.base_url + "/metrics")[0] == 404
    assert eventually(lambda: "kubeinfer_runtime_ready 1.0" in runtime.runtime_metrics())
