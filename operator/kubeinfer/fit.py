"""GPU memory and llama.cpp layer estimates. Pure: no I/O, no Kubernetes, no engine imports.

One implementation serves two callers. The operator builds an approximate layout from the
model spec (:func:`layout_from_size`) and node labels to choose nodes and GPU counts; the
runtime builds the exact layout from the GGUF it downloaded (:func:`layout_from_gguf`) and
the devices ``xllamacpp.get_device_info()`` reports, and sets ``n_gpu_layers`` from
:func:`gpu_layers_or_all`.

llama.cpp layers (:func:`estimate_gpu_layers`)
----------------------------------------------
Xinference's automatic NGL ports Ollama's ``EstimateGPULayers`` (``llm/memory.go``) and
``GGML.GraphSize`` (``fs/ggml/ggml.go``). The facts carried over, in bytes:

* KV cache per layer: ``ctx * (key_length + value_length) * head_count_kv * b``, where
  ``ctx = n_ctx * n_parallel`` (``n_ctx`` is per sequence, like Ollama's ``num_ctx``; the
  llama.cpp server's own ``n_ctx`` is the total over its slots, so pass ``n_parallel=1``
  with it) and ``b`` is the cache type's bytes per element: f32 4, f16/bf16 2, and ggml's
  block sizes for quantized caches (q8_0 34/32, q4_0 18/32, ...). As in Ollama, a
  quantized cache counts only with flash attention (llama.cpp needs it for a quantized V
  cache); without it the estimate assumes f16.
* Compute graph: two sizes, for partial and for full offload, from Ollama's
  per-architecture formulas (llama, gemma, qwen2, command-r, phi2, stablelm, deepseek2,
  chatglm; ``b`` = batch = ``min(n_ctx, n_batch)``, ``e`` = embedding, ``h`` = heads,
  ``V`` = vocabulary). For llama::

      full    = max(4b(1 + 4e + ctx(1 + h)), 4b(e + V))
      partial = 4be + max(4b(1 + e + max(ctx, e)) + 9e²/16 + 4ctx(bh + (e/h)·h_kv),
                          4b(e + V) + 105eV/128)

  Other architectures use Ollama's fallback ``partial = full = (h / h_kv) * kv_total / 6``.
  On Metal there is no partial-offload overhead (partial = full); with several GPUs the
  partial size is used for both.
* Per GPU: Ollama's ``MinimumMemory`` (457 MiB for CUDA and ROCm, 512 MiB for Metal), an
  optional reserve like ``OLLAMA_GPU_OVERHEAD`` (default 0), and one layer (block 0 plus
  its KV) held as a buffer. A GPU is used only if its free memory holds
  ``reserve + graph + minimum + 2 * buffer``; smaller GPUs are skipped.
* Packing: GPUs are taken by free memory, largest first. Blocks go from the last to the
  first (llama.cpp offloads the top ``n_gpu_layers`` layers), each onto
  ``gpus_with_space[i % len]``; a GPU that cannot take a block leaves the list. The
  output layer (``output.weight`` + ``output_norm``) comes last. The graph size (full if
  everything fits, else partial) is then added to every GPU that got a layer; a GPU with
  no layer reports 0 bytes. Devices named ``CPU`` (xllamacpp lists one) are ignored.
* ``n_gpu_layers`` = blocks placed + 1 if the output layer was placed, so
  ``block_count + 1`` means everything, as in Ollama and llama.cpp.

One deliberate difference from Ollama: llama.cpp offloads the output layer *first* (any
``n_gpu_layers >= 1`` includes it). When Ollama's order places blocks but not the output
layer, its count would make llama.cpp load an output layer it never budgeted, so here
blocks are given back until the output layer fits, and the count is honest. (When no
block fits at all, the count stays 0, as in Ollama.)

If the estimate cannot be made (an embedded multimodal projector, missing data), it raises
:class:`EstimateError` and :func:`gpu_layers_or_all` applies the seed's rule: everything to
the GPU (``-1``).

Layouts from a size (:func:`layout_from_size`)
----------------------------------------------
Without the file, a llama-shaped layout is synthesised. Llama models have about
``12 e²`` parameters per block (``4e²`` attention, ``~8e²`` gated MLP) and about
``e / 128`` blocks (7B: 4096/32, 13B: 5120/40), so ``P ≈ 12 e³ / 128`` and
``e = cbrt(128 P / 12)`` rounded to a multiple of 128, ``blocks = e / 128``, heads of 128
dimensions, a 32,000-token vocabulary with untied input/output embeddings, and full
multi-head attention (``head_count_kv = head_count``: an upper bound on the KV cache;
grouped-query models need 4-8x less). Bytes come from the quantization's average bits per
weight (:data:`GGUF_BITS_PER_WEIGHT`, llama.cpp's quantize table).

Serving memory (:func:`estimate_serving_memory`, :func:`gpus_needed`)
--------------------------------------------------------------------
``total = weights + kv + overhead``:

* weights = parameters x bytes per parameter (:data:`SAFETENSORS_BYTES_PER_PARAM`; GGUF
  from its bits per weight);
* kv = one sequence of the full context in f16: ``2 (k, v) * layers * ctx * hidden * 2``,
  layers and hidden from the shape heuristic above when not given (upper bound, as above);
* overhead = a CUDA context (Ollama's 457 MiB minimum memory) plus activations: for GGUF
  llama.cpp's full-offload graph size; otherwise one prefill chunk of 2,048 tokens with 16
  hidden-sized f16 buffers live (:data:`ACTIVATION_TOKENS`, :data:`ACTIVATION_BUFFERS`).

:func:`gpus_needed` picks the smallest tensor-parallel size (1, 2, 4, 8) whose GPUs hold
``total`` plus one more CUDA context per extra GPU within ``utilization`` of their memory:
vLLM's ``gpu_memory_utilization`` defaults to 0.9, leaving 10% to what it does not manage.
Embeddings and ``lm_head`` kept in 16 bits by quantized checkpoints are not modelled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

MiB = 1024**2
GiB = 1024**3

# Ollama's discover package: memory a CUDA/ROCm (457 MiB) or Metal (512 MiB) process needs
# before any model byte. Doubles as the CUDA context size in the serving estimate.
CUDA_MINIMUM_MEMORY = 457 * MiB
METAL_MINIMUM_MEMORY = 512 * MiB

DEFAULT_N_BATCH = 512  # Ollama's num_batch and llama.cpp's default n_ubatch
ACTIVATION_TOKENS = 2048  # one vLLM prefill chunk (max_num_batched_tokens)
ACTIVATION_BUFFERS = 16  # hidden-sized f16 tensors live at the peak of a forward pass
VOCAB_SIZE_GUESS = 32_000  # Llama/Mistral vocabulary, for layouts made from a size
HEAD_DIM = 128  # the head dimension of nearly every llama-shaped model

# Average bits per weight of a whole GGUF file by its quantization type. Mixed types
# (K-quants with _S/_M/_L) from llama.cpp's quantize table (file size / parameters on
# Llama-3-8B: Q4_K_M 4.58 GiB -> 4.9 bpw); single types from ggml's block sizes
# (Q8_0: 34 bytes per 32 weights = 8.5 bpw).
GGUF_BITS_PER_WEIGHT: Mapping[str, float] = {
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,
    "Q6_K": 6.57,
    "Q5_1": 6.0,
    "Q5_K_M": 5.70,
    "Q5_K_S": 5.54,
    "Q5_0": 5.5,
    "Q4_1": 5.0,
    "Q4_K_M": 4.89,
    "Q4_0": 4.64,
    "Q4_K_S": 4.58,
    "MXFP4": 4.25,
    "IQ4_NL": 4.5,
    "IQ4_XS": 4.25,
    "Q3_K_L": 4.27,
    "Q3_K_M": 3.91,
    "IQ3_M": 3.66,
    "Q3_K_S": 3.5,
    "IQ3_S": 3.44,
    "Q2_K": 3.35,
    "IQ3_XS": 3.3,
    "IQ3_XXS": 3.06,
    "Q2_K_S": 2.96,
    "IQ2_M": 2.7,
    "IQ2_S": 2.5,
    "IQ2_XS": 2.31,
    "IQ2_XXS": 2.06,
    "IQ1_M": 1.75,
    "IQ1_S": 1.56,
}

# KV cache bytes per element by llama.cpp cache type (ggml block size / elements).
KV_BYTES_PER_ELEMENT: Mapping[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}
_UNQUANTIZED_KV = frozenset({"f32", "f16", "bf16"})

# Scale overheads of weight-only quantization, in bytes per parameter.
_GROUP128_SCALES = 4 / 128  # GPTQ/AWQ group size 128: f16 scale + zero point per group
_BNB_4BIT_SCALES = 4 / 64  # bitsandbytes NF4: one f32 absmax per 64 weights
_BNB_8BIT_SCALES = 4 / 4096  # LLM.int8(): one f32 scale per row (~4096 weights)
_FP4_SCALES = 1 / 16  # NVFP4: one FP8 scale per 16 weights (MXFP4: 1 per 32)

# Bytes per parameter for safetensors-style formats, keyed by (format, quantization) with
# the quantization lowercased and stripped of "-", "_" and spaces; "*" matches any.
SAFETENSORS_BYTES_PER_PARAM: Mapping[tuple[str, str], float] = {
    ("pytorch", "none"): 2.0,  # bf16/fp16 checkpoints
    ("pytorch", "8bit"): 1.0 + _BNB_8BIT_SCALES,
    ("pytorch", "4bit"): 0.5 + _BNB_4BIT_SCALES,
    ("bnb", "none"): 2.0,
    ("bnb", "8bit"): 1.0 + _BNB_8BIT_SCALES,
    ("bnb", "4bit"): 0.5 + _BNB_4BIT_SCALES,
    ("gptq", "int8"): 1.0 + _GROUP128_SCALES,
    ("gptq", "int4"): 0.5 + _GROUP128_SCALES,
    ("gptq", "int3"): 0.375 + _GROUP128_SCALES,
    ("gptq", "int2"): 0.25 + _GROUP128_SCALES,
    ("awq", "int4"): 0.5 + _GROUP128_SCALES,
    ("fp8", "*"): 1.0,  # per-tensor/channel scales are negligible
    ("fp4", "*"): 0.5 + _FP4_SCALES,
}

TENSOR_PARALLEL_SIZES: tuple[int, ...] = (1, 2, 4, 8)


class EstimateError(ValueError):
    """The estimate cannot be made from the data given; the message says why."""


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as a node label or ``xllamacpp.get_device_info()`` reports it."""

    name: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class GgufLayout:
    """What the layer estimate needs from a GGUF file."""

    architecture: str
    block_count: int
    context_length: int  # n_ctx_train
    embedding_length: int
    head_count: int
    head_count_kv: int
    key_length: int  # per head
    value_length: int  # per head
    layer_bytes: tuple[int, ...]  # bytes of each block's tensors (blk.N.*)
    output_bytes: int  # output.weight + output_norm (token_embd when tied)
    token_embd_bytes: int
    vocab_size: int
    has_projector: bool = False  # embedded multimodal projector: not supported


@dataclass(frozen=True)
class LayerPlan:
    """How many llama.cpp layers to offload, and where."""

    n_gpu_layers: int  # block_count + 1 means all, the output layer included
    layers_per_gpu: tuple[int, ...]  # same order as the gpus argument
    tensor_split: tuple[float, ...]  # llama.cpp tensor_split; () for one GPU or none used
    gpu_bytes: tuple[int, ...]  # estimated bytes used on each GPU
    fits_fully: bool
    reason: str  # one human sentence: why this number


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory a model needs to serve, summed over all its GPUs."""

    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    total_bytes: int
    formula: str


# --------------------------------------------------------------------------- GGUF fields


def _plain(value: object) -> object:
    # numpy scalars and arrays (what gguf's reader returns) become Python ints and lists.
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def _to_int(key: str, value: object) -> int:
    value = _plain(value)
    if isinstance(value, bool):
        raise EstimateError(f"GGUF key {key!r} is a boolean, expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise EstimateError(f"GGUF key {key!r} is {value!r}, expected an integer")


def _to_ints(key: str, value: object) -> list[int]:
    # Some architectures store head counts per layer; a scalar applies to every layer.
    value = _plain(value)
    if isinstance(value, list | tuple):
        if not value:
            raise EstimateError(f"GGUF key {key!r} is an empty array")
        return [_to_int(key, item) for item in value]
    return [_to_int(key, value)]


def _require(fields: Mapping[str, object], key: str) -> object:
    if key not in fields:
        raise EstimateError(f"GGUF metadata lacks {key!r}")
    return fields[key]


def _vocab_size(fields: Mapping[str, object], arch: str) -> int:
    tokens = _plain(fields.get("tokenizer.ggml.tokens"))
    if isinstance(tokens, list | tuple):
        return len(tokens)
    if tokens is not None:
        return _to_int("tokenizer.ggml.tokens", tokens)
    key = f"{arch}.vocab_size"
    if key in fields:
        return _to_int(key, fields[key])
    raise EstimateError(f"GGUF metadata lacks 'tokenizer.ggml.tokens' and {key!r}")


def _block_bytes(tensor_bytes: Mapping[str, int], block_count: int) -> tuple[int, ...]:
    sizes = [0] * block_count
    seen = [False] * block_count
    for name, nbytes in tensor_bytes.items():
        match = re.match(r"blk\.(\d+)\.", name)
        if match and int(match.group(1)) < block_count:
            index = int(match.group(1))
            sizes[index] += int(nbytes)
            seen[index] = True
    if not all(seen):
        missing = seen.index(False)
        raise EstimateError(f"GGUF has no tensors for block {missing} (blk.{missing}.*)")
    return tuple(sizes)


def _prefix_bytes(tensor_bytes: Mapping[str, int], prefix: str) -> int:
    return sum(int(n) for name, n in tensor_bytes.items() if name.startswith(prefix))


def _has_projector(
    fields: Mapping[str, object], tensor_bytes: Mapping[str, int], arch: str
) -> bool:
    # Vision towers and projectors: "v.*" and "mm.*" tensors (Ollama groups them apart),
    # or clip/vision metadata keys.
    if any(name.startswith(("v.", "mm.")) for name in tensor_bytes):
        return True
    return any(key.startswith(("clip.", f"{arch}.vision.")) for key in fields)


def layout_from_gguf(fields: Mapping[str, object], tensor_bytes: Mapping[str, int]) -> GgufLayout:
    """Build a layout from GGUF key/values and tensor sizes (name -> bytes)."""
    arch = str(_require(fields, "general.architecture"))
    p = f"{arch}."
    block_count = _to_int(p + "block_count", _require(fields, p + "block_count"))
    embedding = _to_int(p + "embedding_length", _require(fields, p + "embedding_length"))
    heads = _to_ints(p + "attention.head_count", _require(fields, p + "attention.head_count"))
    kv_key = p + "attention.head_count_kv"
    heads_kv = _to_ints(kv_key, fields[kv_key]) if kv_key in fields else heads
    # Ollama's default head dimension: embedding / the smallest non-zero head count.
    head_dim = embedding // max(min((h for h in heads if h > 0), default=1), 1)
    k_key, v_key = p + "attention.key_length", p + "attention.value_length"
    has_output = any(name.startswith("output.") for name in tensor_bytes)
    embd = _prefix_bytes(tensor_bytes, "token_embd.")
    return GgufLayout(
        architecture=arch,
        block_count=block_count,
        context_length=_to_int(p + "context_length", _require(fields, p + "context_length")),
        embedding_length=embedding,
        head_count=max(heads),
        head_count_kv=max(heads_kv),
        key_length=_to_int(k_key, fields[k_key]) if k_key in fields else head_dim,
        value_length=_to_int(v_key, fields[v_key]) if v_key in fields else head_dim,
        layer_bytes=_block_bytes(tensor_bytes, block_count),
        output_bytes=_prefix_bytes(tensor_bytes, "output_norm.")
        + (_prefix_bytes(tensor_bytes, "output.") if has_output else embd),
        token_embd_bytes=embd,
        vocab_size=_vocab_size(fields, arch),
        has_projector=_has_projector(fields, tensor_bytes, arch),
    )


# ------------------------------------------------------------------- layouts from a size


def _bits_per_weight(quantization: str) -> float:
    key = quantization.strip().upper()
    if key not in GGUF_BITS_PER_WEIGHT:
        known = ", ".join(sorted(GGUF_BITS_PER_WEIGHT))
        raise EstimateError(f"unknown GGUF quantization {quantization!r}; known: {known}")
    return GGUF_BITS_PER_WEIGHT[key]


def llama_shape(parameters: float) -> tuple[int, int]:
    """(hidden size, blocks) of a llama-shaped model with this many parameters."""
    hidden = HEAD_DIM * max(1, round((parameters * HEAD_DIM / 12) ** (1 / 3) / HEAD_DIM))
    return hidden, hidden // HEAD_DIM


def _parameters(size_in_billions: float) -> float:
    if not size_in_billions > 0:
        raise EstimateError(f"model size must be positive, got {size_in_billions}B")
    return size_in_billions * 1e9


def layout_from_size(
    size_in_billions: float, quantization: str, *, context_length: int = 4096
) -> GgufLayout:
    """An approximate llama-shaped layout from a model size and a GGUF quantization name."""
    params = _parameters(size_in_billions)
    bytes_per_weight = _bits_per_weight(quantization) / 8
    hidden, blocks = llama_shape(params)
    embedding_params = VOCAB_SIZE_GUESS * hidden
    # Small models are mostly embeddings; keep at least half the parameters in blocks.
    block_params = max(params - 2 * embedding_params, params / 2) / blocks
    embd_bytes = int(embedding_params * bytes_per_weight)
    heads = hidden // HEAD_DIM
    return GgufLayout(
        architecture="llama",
        block_count=blocks,
        context_length=context_length,
        embedding_length=hidden,
        head_count=heads,
        head_count_kv=heads,
        key_length=HEAD_DIM,
        value_length=HEAD_DIM,
        layer_bytes=(int(block_params * bytes_per_weight),) * blocks,
        output_bytes=embd_bytes + 4 * hidden,  # + the f32 output_norm
        token_embd_bytes=embd_bytes,
        vocab_size=VOCAB_SIZE_GUESS,
    )


# ------------------------------------------------------------------------- graph size


@dataclass(frozen=True)
class _Dims:
    e: int  # embedding length
    h: int  # heads
    hkv: int  # KV heads
    hd: int  # embedding / heads (Ollama's EmbeddingHeadCountMax)
    hk: int  # key length per head
    vocab: int
    ctx: int  # context over all sequences
    b: int  # batch


def _graph_llama(d: _Dims) -> tuple[int, int]:
    e, b, c, v = d.e, d.b, d.ctx, d.vocab
    full = max(4 * b * (1 + 4 * e + c * (1 + d.h)), 4 * b * (e + v))
    partial = 4 * b * e + max(
        4 * b * (1 + e + max(c, e)) + e * e * 9 // 16 + 4 * c * (b * d.h + d.hd * d.hkv),
        4 * b * (e + v) + e * v * 105 // 128,
    )
    return partial, full


def _graph_gemma(d: _Dims) -> tuple[int, int]:
    e, b, c, v, h, hk = d.e, d.b, d.ctx, d.vocab, d.h, d.hk
    full = max(4 * b * (e + v), 4 * b * (2 + c + c * h + 2 * e + 2 * hk * h))
    partial = max(
        4 * e * b + e * v * 105 // 128 + 4 * v * b,
        4 * b * (2 * e + 1 + 2 * hk * h + c + c * h) + 4 * hk * c * 8 + e * hk * h * 9 // 16,
    )
    return partial, full


def _graph_gemma3n(d: _Dims) -> tuple[int, int]:
    partial, full = _graph_gemma(d)
    return 4 * partial, 4 * full


def _graph_command_r(d: _Dims) -> tuple[int, int]:
    e, b, c, v = d.e, d.b, d.ctx, d.vocab
    full = max(4 * b * (e + v), 4 * b * (2 + 4 * e + c * (1 + d.h)))
    partial = max(
        4 * b * (e + v) + e * v * 105 // 128,
        4 * b * (1 + 2 * e + c * (1 + d.h)) + 4 * e * c + e * e * 9 // 16,
    )
    return partial, full


def _graph_qwen2(d: _Dims) -> tuple[int, int]:
    e, b, c, v = d.e, d.b, d.ctx, d.vocab
    full = max(4 * b * (e + v), 4 * b * (1 + 2 * e + c + c * d.h))
    partial = max(
        4 * b * (e + v) + e * v * 105 // 128,
        4 * (b * (1 + 2 * e + c * (1 + d.h)) + e * (1 + c)),
    )
    return partial, full


def _graph_phi2(d: _Dims) -> tuple[int, int]:
    e, b, c, v = d.e, d.b, d.ctx, d.vocab
    full = max(4 * b * (e + v), 4 * b * (1 + 4 * e + c + c * d.h))
    partial = max(4 * b * (2 * e + v) + e * v * 105 // 128, 4 * b * (2 + 3 * e + c + c * d.h))
    return partial, full


def _graph_stablelm(d: _Dims) -> tuple[int, int]:
    full = 4 * d.b * (d.ctx * (1 + d.h) + 3 * d.e + 2)
    return max(4 * d.b * (d.vocab + 2 * d.e), full), full


def _graph_deepseek2(d: _Dims) -> tuple[int, int]:
    e, b, c, v, hkv, hk = d.e, d.b, d.ctx, d.vocab, d.hkv, d.hk
    full = max(4 * b * (3 * e + v), 4 * b * (3 * e + 2 + c * (1 + hkv) + 2 * hk * hkv))
    partial = max(
        4 * b * (3 * e + v) + e * v * 105 // 128,
        4 * b * (2 * e + 1 + 2 * hk * hkv + c + c * hkv)
        + 4 * hk * c * hkv
        + e * hk * hkv * 9 // 16,
    )
    return partial, full


def _graph_chatglm(d: _Dims) -> tuple[int, int]:
    full = 4 * d.b * (d.e + d.vocab)
    return full + d.e * d.vocab * 105 // 128, full


# Ollama's GraphSize cases; every other architecture gets the GQA fallback.
_GRAPH_FORMULAS: Mapping[str, Callable[[_Dims], tuple[int, int]]] = {
    "llama": _graph_llama,
    "llama4": _graph_llama,
    "gemma": _graph_gemma,
    "gemma2": _graph_gemma,
    "gemma3": _graph_gemma,
    "gemma3n": _graph_gemma3n,
    "command-r": _graph_command_r,
    "qwen2": _graph_qwen2,
    "phi2": _graph_phi2,
    "stablelm": _graph_stablelm,
    "deepseek2": _graph_deepseek2,
    "chatglm": _graph_chatglm,
}


def graph_size(layout: GgufLayout, *, ctx: int, batch: int, kv_total: int) -> tuple[int, int]:
    """(partial, full) offload compute-graph bytes, as Ollama's GGML.GraphSize."""
    dims = _Dims(
        e=layout.embedding_length,
        h=layout.head_count,
        hkv=layout.head_count_kv,
        hd=layout.embedding_length // layout.head_count,
        hk=layout.key_length,
        vocab=layout.vocab_size,
        ctx=ctx,
        b=batch,
    )
    formula = _GRAPH_FORMULAS.get(layout.architecture)
    partial, full = formula(dims) if formula else (0, 0)
    if partial == 0:
        partial = layout.head_count // max(layout.head_count_kv, 1) * kv_total // 6
    return partial, full or partial


def kv_bytes_per_layer(
    layout: GgufLayout, *, ctx: int, kv_cache_type: str = "f16", flash_attn: bool = False
) -> int:
    """KV cache bytes of one layer for ``ctx`` tokens over all sequences."""
    cache_type = kv_cache_type.strip().lower() or "f16"
    if cache_type not in KV_BYTES_PER_ELEMENT:
        known = ", ".join(KV_BYTES_PER_ELEMENT)
        raise EstimateError(f"unknown KV cache type {kv_cache_type!r}; known: {known}")
    if cache_type not in _UNQUANTIZED_KV and not flash_attn:
        cache_type = "f16"  # llama.cpp quantizes the V cache only with flash attention
    elements = ctx * (layout.key_length + layout.value_length) * layout.head_count_kv
    return math.ceil(elements * KV_BYTES_PER_ELEMENT[cache_type])


# ------------------------------------------------------------------------ layer plan


@dataclass
class _Slot:
    """A GPU while layers are being packed."""

    index: int  # position in the caller's gpus
    free: int
    used: int
    placed: list[int] = field(default_factory=list)  # sizes of the layers put here


def _is_cpu(gpu: GpuDevice) -> bool:
    # xllamacpp lists the CPU among its devices; it is no place to offload to.
    return gpu.name.strip().upper().startswith("CPU")


def _minimum_memory(gpu: GpuDevice) -> int:
    return METAL_MINIMUM_MEMORY if _is_metal(gpu) else CUDA_MINIMUM_MEMORY


def _is_metal(gpu: GpuDevice) -> bool:
    return gpu.name.strip().lower().startswith("metal")


def _check_layout(layout: GgufLayout, n_ctx: int, n_parallel: int) -> None:
    if layout.has_projector:
        raise EstimateError("the GGUF embeds a multimodal projector, which the estimate skips")
    if layout.block_count <= 0 or len(layout.layer_bytes) != layout.block_count:
        raise EstimateError(
            f"layout has {len(layout.layer_bytes)} layer sizes for {layout.block_count} blocks"
        )
    if layout.head_count <= 0 or layout.embedding_length <= 0:
        raise EstimateError("layout lacks attention heads or an embedding length")
    if n_ctx <= 0 or n_parallel <= 0:
        raise EstimateError(f"n_ctx ({n_ctx}) and n_parallel ({n_parallel}) must be positive")


def _try_place(slots: list[_Slot], start: int, size: int, reserve: int, drop: bool) -> bool:
    """Put one layer on slots[start % n], moving on when it does not fit (Ollama's order).

    With ``drop`` a GPU that cannot take the layer leaves the list for good.
    """
    for n in range(len(slots), 0, -1):
        slot = slots[start % n]
        if slot.free > reserve + slot.used + size:
            slot.used += size
            slot.placed.append(size)
            return True
        if drop:
            slots.remove(slot)
    return False


def _output_in_place_of_blocks(slots: list[_Slot], size: int, reserve: int) -> bool:
    """Give back the fewest blocks from one GPU so the output layer fits there."""
    best: tuple[int, _Slot] | None = None
    for slot in slots:
        room, given_back = slot.free - reserve - slot.used, 0
        while room <= size and given_back < len(slot.placed):
            given_back += 1
            room += slot.placed[-given_back]
        if room > size and (best is None or given_back < best[0]):
            best = (given_back, slot)
    if best is None:
        return False
    given_back, slot = best
    for _ in range(given_back):
        slot.used -= slot.placed.pop()
    slot.used += size
    slot.placed.append(size)
    return True


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


def _empty_plan(gpus: Sequence[GpuDevice], reason: str, fits: bool = False) -> LayerPlan:
    return LayerPlan(0, (0,) * len(gpus), (), (0,) * len(gpus), fits, reason)


def estimate_gpu_layers(
    layout: GgufLayout,
    gpus: Sequence[GpuDevice],
    *,
    n_ctx: int,
    n_parallel: int = 1,
    kv_cache_type: str = "f16",
    flash_attn: bool = False,
    n_batch: int = DEFAULT_N_BATCH,
    gpu_overhead_bytes: int = 0,
) -> LayerPlan:
    """How many llama.cpp layers fit on these GPUs (Ollama's estimate; see the module doc)."""
    _check_layout(layout, n_ctx, n_parallel)
    usable = [i for i, gpu in enumerate(gpus) if not _is_cpu(gpu)]
    if not usable:
        return _empty_plan(gpus, "no GPUs: every layer runs on the CPU")
    ctx = n_ctx * n_parallel
    kv = kv_bytes_per_layer(layout, ctx=ctx, kv_cache_type=kv_cache_type, flash_attn=flash_attn)
    partial, full = graph_size(
        layout, ctx=ctx, batch=min(n_ctx, n_batch), kv_total=kv * layout.block_count
    )
    if any(_is_metal(gpus[i]) for i in usable):
        partial = full  # unified memory: no partial-offload overhead
    elif len(usable) > 1:
        full = partial  # several GPUs always use the partial graph
    graph = max(partial, full)
    reserve = gpu_overhead_bytes + graph
    buffer = layout.layer_bytes[0] + kv  # one layer held back on each GPU

    slots: list[_Slot] = []
    for i in sorted(usable, key=lambda i: -gpus[i].free_bytes):
        minimum = _minimum_memory(gpus[i])
        if gpus[i].free_bytes >= reserve + minimum + 2 * buffer:
            slots.append(_Slot(i, gpus[i].free_bytes, minimum + buffer))
    all_slots = list(slots)

    blocks = 0
    for b in reversed(range(layout.block_count)):
        if not _try_place(slots, b, layout.layer_bytes[b] + kv, reserve, drop=True):
            break
        blocks += 1
    output = _try_place(slots, blocks, layout.output_bytes, reserve, drop=False)
    if not output and blocks:
        output = _output_in_place_of_blocks(all_slots, layout.output_bytes, reserve)
        blocks = sum(len(s.placed) for s in all_slots) - int(output)

    fits = blocks == layout.block_count and output
    gpu_graph = full if fits else partial
    per_gpu = [0] * len(gpus)
    used = [0] * len(gpus)
    for slot in all_slots:
        if slot.placed:
            per_gpu[slot.index] = len(slot.placed)
            used[slot.index] = slot.used + gpu_graph
    n_layers = blocks + int(output)
    weights = sum(layout.layer_bytes) + kv * layout.block_count + layout.output_bytes
    minimum_first = _minimum_memory(gpus[usable[0]])
    needed = weights + gpu_graph + minimum_first + buffer
    return LayerPlan(
        n_gpu_layers=n_layers,
        layers_per_gpu=tuple(per_gpu),
        tensor_split=_tensor_split(per_gpu, n_layers),
        gpu_bytes=tuple(used),
        fits_fully=fits,
        reason=_reason(
            layout, gpus, usable, n_layers, needed, reserve + minimum_first + 2 * buffer
        ),
    )


def _tensor_split(per_gpu: Sequence[int], n_layers: int) -> tuple[float, ...]:
    # A split list overrides llama.cpp's placement, so give none unless there is a choice.
    if len(per_gpu) < 2 or n_layers == 0:
        return ()
    return tuple(count / n_layers for count in per_gpu)


def _reason(
    layout: GgufLayout,
    gpus: Sequence[GpuDevice],
    usable: Sequence[int],
    n_layers: int,
    needed: int,
    smallest_useful: int,
) -> str:
    total = layout.block_count + 1
    free = sum(gpus[i].free_bytes for i in usable)
    where = f"{len(usable)} GPU{'s' if len(usable) > 1 else ''} with {_gib(free)} free"
    if n_layers == total:
        return f"all {total} layers fit on {where} (the model needs about {_gib(needed)})"
    if n_layers:
        return (
            f"{n_layers} of {total} layers fit on {where} (the whole model needs about "
            f"{_gib(needed)}); the rest run on the CPU"
        )
    return (
        f"no layer fits on {where}: a GPU needs over {_gib(smallest_useful)} free for the "
        f"compute graph, its minimum memory and two layers; every layer runs on the CPU"
    )


def gpu_layers_or_all(
    layout: GgufLayout | None,
    gpus: Sequence[GpuDevice],
    *,
    n_ctx: int,
    n_parallel: int = 1,
    kv_cache_type: str = "f16",
    flash_attn: bool = False,
    n_batch: int = DEFAULT_N_BATCH,
    gpu_overhead_bytes: int = 0,
) -> tuple[int, str]:
    """``(n_gpu_layers, reason)``; -1 (every layer on the GPU) when no estimate can be made.

    That fallback is the seed's rule; ``layout=None`` stands for a GGUF that could not be read.
    """
    if layout is None:
        return -1, "the GGUF could not be read for an estimate, so every layer goes to the GPU"
    try:
        plan = estimate_gpu_layers(
            layout,
            gpus,
            n_ctx=n_ctx,
            n_parallel=n_parallel,
            kv_cache_type=kv_cache_type,
            flash_attn=flash_attn,
            n_batch=n_batch,
            gpu_overhead_bytes=gpu_overhead_bytes,
        )
    except EstimateError as err:
        return -1, f"no estimate ({err}), so every layer goes to the GPU"
    return plan.n_gpu_layers, plan.reason


# -------------------------------------------------------------------- serving memory


def _quant_key(quantization: str) -> str:
    return re.sub(r"[-_\s]", "", quantization.strip().lower()) or "none"


def bytes_per_parameter(fmt: str, quantization: str) -> float:
    """Bytes one parameter takes in this model format and quantization."""
    fmt_key = fmt.strip().lower()
    if fmt_key in ("gguf", "ggufv2"):
        return _bits_per_weight(quantization) / 8
    quant = _quant_key(quantization)
    for key in ((fmt_key, quant), (fmt_key, "*")):
        if key in SAFETENSORS_BYTES_PER_PARAM:
            return SAFETENSORS_BYTES_PER_PARAM[key]
    known = ", ".join(f"{f}/{q}" for f, q in SAFETENSORS_BYTES_PER_PARAM)
    raise EstimateError(f"no bytes-per-parameter for {fmt}/{quantization}; known: {known}")


def estimate_serving_memory(
    size_in_billions: float,
    fmt: str,
    quantization: str,
    *,
    context_length: int = 4096,
    n_layers: int | None = None,
    hidden_size: int | None = None,
) -> MemoryEstimate:
    """Weights + one full-context sequence of KV cache + CUDA context and activations."""
    if context_length <= 0:
        raise EstimateError(f"context length must be positive, got {context_length}")
    params = _parameters(size_in_billions)
    per_param = bytes_per_parameter(fmt, quantization)
    guess_hidden, guess_layers = llama_shape(params)
    hidden = hidden_size or guess_hidden
    layers = n_layers or guess_layers
    weights = math.ceil(params * per_param)
    kv = 2 * layers * context_length * hidden * 2
    if fmt.strip().lower() in ("gguf", "ggufv2"):
        layout = layout_from_size(size_in_billions, quantization, context_length=context_length)
        _, activations = graph_size(
            layout,
            ctx=context_length,
            batch=min(context_length, DEFAULT_N_BATCH),
            kv_total=kv,
        )
        act_text = f"llama.cpp graph {_gib(activations)}"
    else:
        activations = ACTIVATION_TOKENS * hidden * 2 * ACTIVATION_BUFFERS
        act_text = f"activations {ACTIVATION_TOKENS} x {hidden} x 2 B x {ACTIVATION_BUFFERS}"
    overhead = CUDA_MINIMUM_MEMORY + activations
    formula = (
        f"weights {size_in_billions:g}B x {per_param:.4g} B = {_gib(weights)}; "
        f"kv 2 x {layers} layers x {context_length} ctx x {hidden} x 2 B = {_gib(kv)}; "
        f"overhead CUDA context 457 MiB + {act_text} = {_gib(overhead)}"
    )
    return MemoryEstimate(weights, kv, overhead, weights + kv + overhead, formula)


def gpus_needed(
    estimate: MemoryEstimate, gpu_memory_bytes: int, *, utilization: float = 0.9
) -> int | None:
    """Smallest tensor-parallel size (1, 2, 4, 8) that holds the estimate; None if none does."""
    if gpu_memory_bytes <= 0 or not 0 < utilization <= 1:
        raise EstimateError(
            f"need positive GPU memory and 0 < utilization <= 1, got "
            f"{gpu_memory_bytes} and {utilization}"
        )
    for n in TENSOR_PARALLEL_SIZES:
        # Every extra GPU runs its own CUDA context.
        need = estimate.total_bytes + (n - 1) * CUDA_MINIMUM_MEMORY
        if need <= n * gpu_memory_bytes * utilization:
            return n
    return None
