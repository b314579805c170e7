"""Table tests for kubeinfer.fit: layouts, the llama.cpp layer plan, serving memory."""

from __future__ import annotations

from typing import Any

import pytest

from kubeinfer.fit import (
    CUDA_MINIMUM_MEMORY,
    METAL_MINIMUM_MEMORY,
    EstimateError,
    GgufLayout,
    GpuDevice,
    LayerPlan,
    MemoryEstimate,
    bytes_per_parameter,
    estimate_gpu_layers,
    estimate_serving_memory,
    gpu_layers_or_all,
    gpus_needed,
    graph_size,
    kv_bytes_per_layer,
    layout_from_gguf,
    layout_from_size,
)

MiB = 1024**2
GiB = 1024**3


def gpu(free_gib: float, name: str = "NVIDIA GeForce RTX 4090") -> GpuDevice:
    free = int(free_gib * GiB)
    return GpuDevice(name=name, total_bytes=free, free_bytes=free)


# ------------------------------------------------------------------- layout_from_gguf


def tiny_llama_fields(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "general.architecture": "llama",
        "llama.block_count": 2,
        "llama.context_length": 2048,
        "llama.embedding_length": 64,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(100)],
    }
    fields.update(overrides)
    return fields


TINY_TENSORS = {
    "token_embd.weight": 25_600,
    "blk.0.attn_q.weight": 16_384,
    "blk.0.ffn_up.weight": 1_000,
    "blk.1.attn_q.weight": 16_384,
    "blk.1.ffn_up.weight": 2_000,
    "output_norm.weight": 256,
    "output.weight": 25_600,
}


def test_layout_from_gguf_reads_a_hand_made_llama() -> None:
    layout = layout_from_gguf(tiny_llama_fields(), TINY_TENSORS)
    assert layout == GgufLayout(
        architecture="llama",
        block_count=2,
        context_length=2048,
        embedding_length=64,
        head_count=4,
        head_count_kv=2,
        key_length=16,  # no key_length: embedding / heads, as Ollama
        value_length=16,
        layer_bytes=(17_384, 18_384),
        output_bytes=25_856,
        token_embd_bytes=25_600,
        vocab_size=100,
        has_projector=False,
    )


def test_tied_embeddings_count_token_embd_as_the_output_layer() -> None:
    tensors = {k: v for k, v in TINY_TENSORS.items() if k != "output.weight"}
    assert layout_from_gguf(tiny_llama_fields(), tensors).output_bytes == 25_600 + 256


class _Array:
    """Stands in for the numpy values gguf's reader returns."""

    def __init__(self, value: object) -> None:
        self.value = value

    def tolist(self) -> object:
        return self.value


@pytest.mark.parametrize(
    ("overrides", "attribute", "expected"),
    [
        ({"tokenizer.ggml.tokens": 32_000}, "vocab_size", 32_000),
        ({"llama.attention.head_count": [4, 8]}, "head_count", 8),
        ({"llama.attention.head_count": _Array([4, 2])}, "head_count", 4),
        ({"llama.attention.key_length": 32}, "key_length", 32),
        ({"llama.block_count": _Array(2)}, "block_count", 2),
        ({"llama.context_length": 131_072.0}, "context_length", 131_072),
    ],
)
def test_layout_from_gguf_field_shapes(
    overrides: dict[str, object], attribute: str, expected: int
) -> None:
    layout = layout_from_gguf(tiny_llama_fields(**overrides), TINY_TENSORS)
    assert getattr(layout, attribute) == expected


def test_head_count_kv_defaults_to_head_count() -> None:
    fields = tiny_llama_fields()
    del fields["llama.attention.head_count_kv"]
    assert layout_from_gguf(fields, TINY_TENSORS).head_count_kv == 4


@pytest.mark.parametrize(
    "missing",
    [
        "general.architecture",
        "llama.block_count",
        "llama.context_length",
        "llama.embedding_length",
        "llama.attention.head_count",
        "tokenizer.ggml.tokens",
    ],
)
def test_layout_from_gguf_names_a_missing_key(missing: str) -> None:
    fields = tiny_llama_fields()
    del fields[missing]
    with pytest.raises(EstimateError, match=missing.replace(".", r"\.")):
        layout_from_gguf(fields, TINY_TENSORS)


@pytest.mark.parametrize("bad", [True, "two", 2.5, []])
def test_layout_from_gguf_rejects_non_integers(bad: object) -> None:
    with pytest.raises(EstimateError, match="block_count"):
        layout_from_gguf(tiny_llama_fields(**{"llama.block_count": bad}), TINY_TENSORS)


def test_layout_from_gguf_needs_every_block() -> None:
    tensors = {k: v for k, v in TINY_TENSORS.items() if not k.startswith("blk.1.")}
    with pytest.raises(EstimateError, match=r"block 1"):
        layout_from_gguf(tiny_llama_fields(), tensors)


@pytest.mark.parametrize(
    ("extra_fields", "extra_tensors"),
    [
        ({}, {"mm.0.weight": 10}),
        ({}, {"v.blk.0.attn_q.weight": 10}),
        ({"clip.has_vision_encoder": True}, {}),
        ({"llama.vision.block_count": 4}, {}),
    ],
)
def test_layout_from_gguf_spots_an_embedded_projector(
    extra_fields: dict[str, object], extra_tensors: dict[str, int]
) -> None:
    layout = layout_from_gguf(tiny_llama_fields(**extra_fields), TINY_TENSORS | extra_tensors)
    assert layout.has_projector


# ------------------------------------------------------------------- layout_from_size


@pytest.mark.parametrize(
    ("size", "quant", "blocks", "embedding"),
    [
        (7, "Q4_K_M", 33, 4224),
        (70, "Q4_K_M", 71, 9088),
        (0.5, "Q8_0", 14, 1792),
        (1, "F16", 17, 2176),
    ],
)
def test_layout_from_size_shape(size: float, quant: str, blocks: int, embedding: int) -> None:
    layout = layout_from_size(size, quant)
    assert (layout.block_count, layout.embedding_length) == (blocks, embedding)
    assert layout.head_count == layout.head_count_kv == embedding // 128
    assert len(layout.layer_bytes) == blocks


@pytest.mark.parametrize(
    ("size", "quant", "bits"),
    [
        (7, "Q4_K_M", 4.89),
        (8, "q8_0", 8.5),
        (70, "Q4_K_M", 4.89),
        (13, "F16", 16.0),
        (3, "IQ2_XXS", 2.06),
    ],
)
def test_layout_from_size_weighs_what_the_quantization_says(
    size: float, quant: str, bits: float
) -> None:
    layout = layout_from_size(size, quant)
    weights = sum(layout.layer_bytes) + layout.output_bytes + layout.token_embd_bytes
    assert weights == pytest.approx(size * 1e9 * bits / 8, rel=0.01)


@pytest.mark.parametrize(("size", "quant"), [(7, "Q9_Z"), (0, "Q4_K_M"), (-1, "Q4_K_M")])
def test_layout_from_size_rejects(size: float, quant: str) -> None:
    with pytest.raises(EstimateError):
        layout_from_size(size, quant)


# ---------------------------------------------------------------------- graph and KV


def synthetic(arch: str = "testarch", output_bytes: int = MiB // 2) -> GgufLayout:
    return GgufLayout(
        architecture=arch,
        block_count=4,
        context_length=4096,
        embedding_length=64,
        head_count=4,
        head_count_kv=2,
        key_length=16,
        value_length=16,
        layer_bytes=(MiB,) * 4,
        output_bytes=output_bytes,
        token_embd_bytes=output_bytes,
        vocab_size=100,
    )


def test_graph_size_llama_formula_by_hand() -> None:
    # full    = max(4*256*(1 + 4*64 + 256*5), 4*256*(64 + 100)) = 1_573_888
    # partial = 4*256*64 + max(4*256*(1 + 64 + 256) + 64*64*9//16 + 4*256*(256*4 + 16*2),
    #                          4*256*164 + 64*100*105//128) = 65_536 + 1_412_352
    assert graph_size(synthetic("llama"), ctx=256, batch=256, kv_total=0) == (1_477_888, 1_573_888)


def test_graph_size_falls_back_to_gqa_times_kv() -> None:
    # Unknown architecture: (heads / kv heads) * kv_total / 6 for both sizes.
    assert graph_size(synthetic(), ctx=256, batch=256, kv_total=600_000) == (200_000, 200_000)


@pytest.mark.parametrize(
    ("cache", "flash", "expected"),
    [
        ("f16", False, 1024 * 32 * 2 * 2),
        ("f32", False, 1024 * 32 * 2 * 4),
        ("q8_0", True, 1024 * 32 * 2 * 34 // 32),
        ("q4_0", True, 1024 * 32 * 2 * 18 // 32),
        ("q8_0", False, 1024 * 32 * 2 * 2),  # quantized only with flash attention
        ("", False, 1024 * 32 * 2 * 2),
    ],
)
def test_kv_bytes_per_layer(cache: str, flash: bool, expected: int) -> None:
    layout = synthetic()
    assert kv_bytes_per_layer(layout, ctx=1024, kv_cache_type=cache, flash_attn=flash) == expected


# --------------------------------------------------------------------- layer plans

LAYOUT_7B = layout_from_size(7, "Q4_K_M")
LAYOUT_70B = layout_from_size(70, "Q4_K_M")


@pytest.mark.parametrize(
    ("layout", "gpus", "n_layers", "per_gpu", "fits"),
    [
        pytest.param(LAYOUT_7B, [gpu(24)], 34, (34,), True, id="7B-on-24GiB-fits"),
        pytest.param(LAYOUT_7B, [gpu(4)], 17, (17,), False, id="7B-on-4GiB-partial"),
        pytest.param(LAYOUT_70B, [gpu(24), gpu(24)], 63, (32, 31), False, id="70B-on-2x24GiB"),
        pytest.param(LAYOUT_70B, [gpu(48), gpu(48)], 72, (36, 36), True, id="70B-on-2x48GiB"),
        pytest.param(LAYOUT_70B, [gpu(1)], 0, (0,), False, id="70B-on-1GiB-nothing"),
        pytest.param(LAYOUT_7B, [], 0, (), False, id="no-gpus"),
        pytest.param(LAYOUT_7B, [gpu(64, "CPU")], 0, (0,), False, id="cpu-device-only"),
        pytest.param(LAYOUT_7B, [gpu(1), gpu(24)], 34, (0, 34), True, id="small-gpu-skipped"),
    ],
)
def test_estimate_gpu_layers(
    layout: GgufLayout,
    gpus: list[GpuDevice],
    n_layers: int,
    per_gpu: tuple[int, ...],
    fits: bool,
) -> None:
    plan = estimate_gpu_layers(layout, gpus, n_ctx=4096)
    assert (plan.n_gpu_layers, plan.layers_per_gpu, plan.fits_fully) == (n_layers, per_gpu, fits)
    assert_consistent(plan, gpus)


def assert_consistent(plan: LayerPlan, gpus: list[GpuDevice]) -> None:
    assert sum(plan.layers_per_gpu) == plan.n_gpu_layers
    assert len(plan.gpu_bytes) == len(plan.layers_per_gpu) == len(gpus)
    for used, layers, device in zip(plan.gpu_bytes, plan.layers_per_gpu, gpus, strict=True):
        assert 0 < used <= device.free_bytes if layers else used == 0
    if len(gpus) > 1 and plan.n_gpu_layers:
        assert sum(plan.tensor_split) == pytest.approx(1.0)
        expected = [n / plan.n_gpu_layers for n in plan.layers_per_gpu]
        assert list(plan.tensor_split) == pytest.approx(expected)
    else:
        assert plan.tensor_split == ()
    assert plan.reason and "." not in plan.reason[-1:]


def test_multi_gpu_split_uses_both_and_keeps_caller_order() -> None:
    gpus = [gpu(20, "CUDA0"), gpu(46, "CUDA1")]
    plan = estimate_gpu_layers(LAYOUT_70B, gpus, n_ctx=4096)
    assert plan.fits_fully and plan.n_gpu_layers == 72
    small, big = plan.layers_per_gpu
    assert 0 < small < big
    assert plan.tensor_split[0] == pytest.approx(small / 72)


def admission_threshold(layout: GgufLayout, n_ctx: int, minimum: int) -> int:
    """Free memory at which a single GPU is first admitted (graph + minimum + 2 layers)."""
    kv = kv_bytes_per_layer(layout, ctx=n_ctx)
    partial, full = graph_size(layout, ctx=n_ctx, batch=min(n_ctx, 512), kv_total=4 * kv)
    return max(partial, full) + minimum + 2 * (layout.layer_bytes[0] + kv)


@pytest.mark.parametrize(
    ("output_bytes", "extra_layers", "extra_bytes", "n_layers"),
    [
        pytest.param(MiB // 2, 0, -1, 0, id="one-byte-short-no-gpu"),
        # Admitted, but a layer needs strictly more than the room left (Ollama's ">").
        pytest.param(MiB // 2, 0, 0, 0, id="admitted-no-room"),
        pytest.param(MiB // 2, 0, 1, 1, id="one-block-swapped-for-output"),
        pytest.param(MiB // 2, 3, 1, 4, id="small-output-swaps-one-block"),
        pytest.param(MiB // 2, 4, 1, 5, id="everything"),
        # Output layer (2.5 MiB) bigger than two layers: llama.cpp loads it first, so three
        # blocks make room for it (Ollama's order alone would report 4).
        pytest.param(5 * MiB // 2, 3, 1, 2, id="big-output-costs-three-blocks"),
    ],
)
def test_admission_and_output_layer_by_hand(
    output_bytes: int, extra_layers: int, extra_bytes: int, n_layers: int
) -> None:
    layout = synthetic(output_bytes=output_bytes)
    layer = layout.layer_bytes[0] + kv_bytes_per_layer(layout, ctx=1024)
    free = admission_threshold(layout, 1024, CUDA_MINIMUM_MEMORY)
    free += extra_layers * layer + extra_bytes
    gpus = [GpuDevice("CUDA0", free, free)]
    plan = estimate_gpu_layers(layout, gpus, n_ctx=1024)
    assert plan.n_gpu_layers == n_layers
    assert plan.fits_fully == (n_layers == 5)
    assert_consistent(plan, gpus)


def test_ollama_minimum_memory_constants() -> None:
    # Ollama's discover package: cudaMinimumMemory/rocmMinimumMemory and metalMinimumMemory.
    assert (457 * MiB, 512 * MiB) == (CUDA_MINIMUM_MEMORY, METAL_MINIMUM_MEMORY)


def test_top_blocks_are_offloaded_first() -> None:
    # llama.cpp offloads the last n_gpu_layers blocks, so the 4 MiB top block is tried
    # first: it fits, block 2 then does not, and the output layer takes its place (n=1).
    # Packing from block 0 instead would report 3.
    layout = GgufLayout(**{**synthetic().__dict__, "layer_bytes": (MiB, MiB, MiB, 4 * MiB)})
    layer = MiB + kv_bytes_per_layer(layout, ctx=1024)
    free = admission_threshold(layout, 1024, CUDA_MINIMUM_MEMORY) + 3 * layer + 1
    plan = estimate_gpu_layers(layout, [GpuDevice("CUDA0", free, free)], n_ctx=1024)
    assert plan.n_gpu_layers == 1


@pytest.mark.parametrize(
    ("name", "free", "fits", "graph_kind"),
    [
        ("CUDA0", 8 * GiB, True, "full"),
        ("CUDA0", 457 * MiB + 14 * MiB, False, "partial"),
        ("Metal", 512 * MiB + 14 * MiB, False, "full"),  # no partial-offload overhead on Metal
    ],
)
def test_gpu_bytes_accounting(name: str, free: int, fits: bool, graph_kind: str) -> None:
    layout = synthetic("llama")
    kv = kv_bytes_per_layer(layout, ctx=1024)
    partial, full = graph_size(layout, ctx=1024, batch=512, kv_total=4 * kv)
    assert full > partial  # small models: the vocabulary-free full graph is the larger
    plan = estimate_gpu_layers(layout, [GpuDevice(name, free, free)], n_ctx=1024)
    assert plan.fits_fully == fits and plan.n_gpu_layers > 0
    blocks = plan.n_gpu_layers - 1  # the output layer is among them
    minimum = 512 * MiB if name == "Metal" else 457 * MiB
    graph = full if graph_kind == "full" else partial
    # minimum memory + one layer held back + blocks + output layer + graph
    expected = minimum + (MiB + kv) * (1 + blocks) + layout.output_bytes + graph
    assert plan.gpu_bytes == (expected,)


def test_several_gpus_use_the_partial_graph_even_when_everything_fits() -> None:
    layout = synthetic("llama")
    kv = kv_bytes_per_layer(layout, ctx=1024)
    partial, _ = graph_size(layout, ctx=1024, batch=512, kv_total=4 * kv)
    gpus = [GpuDevice("CUDA0", 8 * GiB, 8 * GiB), GpuDevice("CUDA1", 8 * GiB, 8 * GiB)]
    plan = estimate_gpu_layers(layout, gpus, n_ctx=1024)
    assert plan.fits_fully and plan.layers_per_gpu == (3, 2)
    # Blocks go round-robin from the top: 3 -> GPU1, 2 -> GPU0, 1 -> GPU1, 0 -> GPU0;
    # then the output layer to slot 4 % 2 = GPU0.
    base = 457 * MiB + (MiB + kv) + partial + 2 * (MiB + kv)
    assert plan.gpu_bytes == (base + layout.output_bytes, base)


def test_metal_needs_more_minimum_memory_than_cuda() -> None:
    layout = synthetic()
    free = admission_threshold(layout, 1024, CUDA_MINIMUM_MEMORY) + 1
    assert METAL_MINIMUM_MEMORY > CUDA_MINIMUM_MEMORY
    cuda = estimate_gpu_layers(layout, [GpuDevice("CUDA0", free, free)], n_ctx=1024)
    metal = estimate_gpu_layers(layout, [GpuDevice("Metal", free, free)], n_ctx=1024)
    assert (cuda.n_gpu_layers, metal.n_gpu_layers) == (1, 0)


def test_gpu_overhead_reserve_costs_layers() -> None:
    base = estimate_gpu_layers(LAYOUT_7B, [gpu(4)], n_ctx=4096)
    reserved = estimate_gpu_layers(LAYOUT_7B, [gpu(4)], n_ctx=4096, gpu_overhead_bytes=GiB)
    assert reserved.n_gpu_layers < base.n_gpu_layers


@pytest.mark.parametrize("free_gib", [3, 4, 5, 6, 8])
def test_layers_never_grow_with_context(free_gib: float) -> None:
    counts = [
        estimate_gpu_layers(LAYOUT_7B, [gpu(free_gib)], n_ctx=ctx).n_gpu_layers
        for ctx in (512, 2048, 4096, 8192, 16384)
    ]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > counts[-1]


def test_layers_never_shrink_with_free_memory() -> None:
    counts = [
        estimate_gpu_layers(LAYOUT_7B, [gpu(g)], n_ctx=4096).n_gpu_layers
        for g in (0.5, 1, 2, 3, 4, 5, 6, 7, 8, 24)
    ]
    assert counts == sorted(counts)
    assert (counts[0], counts[-1]) == (0, 34)


def test_n_parallel_multiplies_the_context() -> None:
    one = estimate_gpu_layers(LAYOUT_7B, [gpu(5)], n_ctx=8192)
    four = estimate_gpu_layers(LAYOUT_7B, [gpu(5)], n_ctx=2048, n_parallel=4)
    assert four.n_gpu_layers <= one.n_gpu_layers
    single = estimate_gpu_layers(LAYOUT_7B, [gpu(5)], n_ctx=2048)
    assert four.n_gpu_layers < single.n_gpu_layers


def test_quantized_kv_cache_helps_only_with_flash_attention() -> None:
    def layers(**kw: Any) -> int:
        return estimate_gpu_layers(LAYOUT_7B, [gpu(4)], n_ctx=8192, **kw).n_gpu_layers

    f16 = layers()
    assert layers(kv_cache_type="q8_0") == f16
    assert layers(kv_cache_type="q8_0", flash_attn=True) > f16


@pytest.mark.parametrize(
    ("layout", "kwargs", "match"),
    [
        (GgufLayout(**{**synthetic().__dict__, "has_projector": True}), {}, "projector"),
        (GgufLayout(**{**synthetic().__dict__, "layer_bytes": (MiB,)}), {}, "layer sizes"),
        (synthetic(), {"kv_cache_type": "q3_x"}, "KV cache type"),
        (synthetic(), {"n_parallel": 0}, "n_parallel"),
    ],
)
def test_estimate_refuses(layout: GgufLayout, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(EstimateError, match=match):
        estimate_gpu_layers(layout, [gpu(24)], n_ctx=4096, **kwargs)
    n, reason = gpu_layers_or_all(layout, [gpu(24)], n_ctx=4096, **kwargs)
    assert n == -1
    assert match in reason and "every layer goes to the GPU" in reason


def test_gpu_layers_or_all_uses_the_estimate_when_there_is_one() -> None:
    plan = estimate_gpu_layers(LAYOUT_7B, [gpu(4)], n_ctx=4096)
    assert gpu_layers_or_all(LAYOUT_7B, [gpu(4)], n_ctx=4096) == (plan.n_gpu_layers, plan.reason)
    assert gpu_layers_or_all(LAYOUT_7B, [], n_ctx=4096)[0] == 0


def test_gpu_layers_or_all_without_a_layout() -> None:
    n, reason = gpu_layers_or_all(None, [gpu(24)], n_ctx=4096)
    assert n == -1 and "could not be read" in reason


# ------------------------------------------------------------------ serving memory


@pytest.mark.parametrize(
    ("fmt", "quant", "expected"),
    [
        ("pytorch", "none", 2.0),
        ("pytorch", "4-bit", 0.5 + 4 / 64),
        ("pytorch", "8-bit", 1.0 + 4 / 4096),
        ("bnb", "4-bit", 0.5 + 4 / 64),
        ("gptq", "Int4", 0.5 + 4 / 128),
        ("gptq", "Int8", 1.0 + 4 / 128),
        ("gptq", "Int3", 0.375 + 4 / 128),
        ("awq", "Int4", 0.5 + 4 / 128),
        ("fp8", "FP8", 1.0),
        ("fp4", "nvfp4", 0.5 + 1 / 16),
        ("gguf", "Q8_0", 8.5 / 8),
        ("ggufv2", "q4_k_m", 4.89 / 8),
    ],
)
def test_bytes_per_parameter(fmt: str, quant: str, expected: float) -> None:
    assert bytes_per_parameter(fmt, quant) == pytest.approx(expected)


@pytest.mark.parametrize(("fmt", "quant"), [("awq", "Int8"), ("onnx", "none"), ("gguf", "Q4")])
def test_bytes_per_parameter_unknown(fmt: str, quant: str) -> None:
    with pytest.raises(EstimateError):
        bytes_per_parameter(fmt, quant)


def test_serving_memory_7b_pytorch() -> None:
    est = estimate_serving_memory(7, "pytorch", "none")
    assert est.weights_bytes == 14_000_000_000
    # 2 (k, v) x 33 layers x 4096 tokens x 4224 hidden x 2 bytes
    assert est.kv_cache_bytes == 2 * 33 * 4096 * 4224 * 2
    assert 14 * GiB <= est.weights_bytes + est.kv_cache_bytes <= 16 * GiB
    assert est.overhead_bytes == 457 * MiB + 2048 * 4224 * 2 * 16
    assert est.total_bytes == est.weights_bytes + est.kv_cache_bytes + est.overhead_bytes
    assert "457 MiB" in est.formula


def test_serving_memory_uses_given_shape() -> None:
    est = estimate_serving_memory(8, "pytorch", "none", n_layers=32, hidden_size=4096)
    assert est.kv_cache_bytes == 2 * 32 * 4096 * 4096 * 2


def test_serving_memory_gguf_uses_the_llama_cpp_graph() -> None:
    est = estimate_serving_memory(7, "gguf", "Q4_K_M")
    _, full = graph_size(LAYOUT_7B, ctx=4096, batch=512, kv_total=est.kv_cache_bytes)
    assert est.overhead_bytes == CUDA_MINIMUM_MEMORY + full
    assert est.weights_bytes == pytest.approx(7e9 * 4.89 / 8, rel=1e-6)


@pytest.mark.parametrize(
    ("size", "fmt", "quant", "ctx", "gpu_gib", "expected"),
    [
        (70, "pytorch", "none", 4096, 80, 2),
        (70, "pytorch", "none", 8192, 80, 4),
        (70, "gptq", "Int4", 4096, 80, 1),
        (7, "pytorch", "none", 4096, 24, 1),
        (7, "pytorch", "none", 4096, 8, 4),
        (405, "pytorch", "none", 4096, 80, None),
        (405, "fp8", "FP8", 4096, 80, 8),
    ],
)
def test_gpus_needed(
    size: float, fmt: str, quant: str, ctx: int, gpu_gib: int, expected: int | None
) -> None:
    est = estimate_serving_memory(size, fmt, quant, context_length=ctx)
    assert gpus_needed(est, gpu_gib * GiB) == expected


def test_gpus_needed_boundary() -> None:
    # Two GPUs hold 2 x 10 GiB x 0.9 minus the second GPU's CUDA context, not a byte more.
    limit = int(2 * 10 * GiB * 0.9) - CUDA_MINIMUM_MEMORY
    at = MemoryEstimate(limit, 0, 0, limit, "")
    over = MemoryEstimate(limit + 1, 0, 0, limit + 1, "")
    assert (gpus_needed(at, 10 * GiB), gpus_needed(over, 10 * GiB)) == (2, 4)
    assert gpus_needed(at, 10 * GiB, utilization=1.0) == 2


def test_serving_memory_grows_with_context() -> None:
    contexts = (1024, 4096, 16384, 65536, 131072)
    estimates = [estimate_serving_memory(70, "pytorch", "none", context_length=c) for c in contexts]
    totals = [e.total_bytes for e in estimates]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)
    counts = [gpus_needed(e, 80 * GiB) or 16 for e in estimates]
    assert counts == sorted(counts)
    assert counts[0] < counts[-1]


@pytest.mark.parametrize(("memory", "utilization"), [(0, 0.9), (GiB, 0.0), (GiB, 1.5)])
def test_gpus_needed_rejects(memory: int, utilization: float) -> None:
    with pytest.raises(EstimateError):
        gpus_needed(MemoryEstimate(1, 0, 0, 1, ""), memory, utilization=utilization)
