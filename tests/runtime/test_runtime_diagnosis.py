"""The diagnosis matcher against the seed's engine output and common OOM lines."""

from __future__ import annotations

import pytest

from kubeinfer_runtime.diagnosis import diagnose

SEED_IMAGE = [
    "ggml_metal_graph_compute: command buffer 0 failed with status 5",
    "clip_image_batch_encode: ggml_backend_sched_graph_compute failed",
    "failed to encode image",
    "mtmd_helper_eval failed with status 1",
    "srv  process_chun: failed to process image, res = 1",
    "Server error: {'code': 500, 'message': 'failed to process image', 'type': 'server_error'}",
]
SEED_CONTEXT = [
    "Server error: {'code': 400, 'message': 'the request exceeds the available context size. "
    "try increasing the context size or enable context shift', 'type': "
    "'invalid_request_error'}",
    "0.00.962.575 E srv    send_error: task id = 0, error: request (660 tokens) exceeds the "
    "available context size (256 tokens), try increasing it",
]
SEED_KV = [
    "ggml_metal: Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)",
    "Server error: {'code': 500, 'message': 'Input prompt is too big compared to KV size. "
    "Please try increasing KV size.', 'type': 'server_error'}",
    "llama_decode: failed to decode, ret = -3",
    "decode: KV cache is full - try increasing it via the context size",
]
OOM = [
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 8192.00 MiB on device 0: "
    "cudaMalloc failed: out of memory",
    "llama_model_load: error loading model: unable to allocate CUDA0 buffer",
    "ggml_metal: Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)",
]


@pytest.mark.parametrize(
    ("lines", "kind", "remedy_words"),
    [
        (SEED_IMAGE, "image_processing", ["reduce n_ctx"]),
        (SEED_CONTEXT, "context_exceeded", ["increase n_ctx", "decrease n_parallel"]),
        (SEED_KV, "kv_cache_full", ["reduce n_ctx", "increase n_parallel", "n_gpu_layers"]),
        (OOM, "out_of_memory", ["more GPU memory"]),
    ],
)
def test_each_known_failure_is_recognised(
    lines: list[str], kind: str, remedy_words: list[str]
) -> None:
    # As the runtime reads a log: the last recognised line decides.
    found = [d for d in map(diagnose, lines) if d is not None]
    assert found, lines
    assert found[-1].kind == kind
    for words in remedy_words:
        assert words in found[-1].remedy
    assert " — " in found[-1].line() and "\n" not in found[-1].line()


@pytest.mark.parametrize("line", [SEED_IMAGE[-1], SEED_CONTEXT[0], SEED_KV[1], *OOM])
def test_the_telling_line_alone_is_enough(line: str) -> None:
    assert diagnose(line) is not None


@pytest.mark.parametrize(
    "line",
    [
        "srv  load_model: loading model '/models/tiny.gguf'",
        "INFO:     Uvicorn running on http://0.0.0.0:8000",
        "slot print_timing: id  0 | task 0 | prompt eval time = 0.50 ms",
        "",
    ],
)
def test_ordinary_lines_are_not_failures(line: str) -> None:
    assert diagnose(line) is None
