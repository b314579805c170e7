"""The tiny model's two forms agree: greedy tokens from transformers == from llama.cpp."""

from __future__ import annotations

import json
import urllib.request

import pytest
import tiny_model

pytestmark = pytest.mark.engine


def test_greedy_tokens_match_between_transformers_and_llama_cpp(
    tiny: tiny_model.TinyModel,
) -> None:
    torch = pytest.importorskip("torch")
    xllamacpp = pytest.importorskip("xllamacpp")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.hf_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny.hf_dir).eval()
    prompt = tok("The quick brown fox", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=None
        )
    expected = out[0, len(prompt) :].tolist()

    params = xllamacpp.CommonParams()
    params.model.path = str(tiny.gguf_path)
    params.n_ctx = 256
    params.cpuparams.n_threads = 2
    server = xllamacpp.Server(params)
    body = {
        "prompt": prompt,
        "n_predict": 16,
        "temperature": 0,
        "ignore_eos": True,
        "return_tokens": True,
    }
    request = urllib.request.Request(
        server.listening_address + "/completion",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        got = json.load(response)["tokens"]
    del server
    assert got == expected
