"""A tiny real Llama the tests make themselves: no hub, built in seconds.

One random-weight Llama in two forms from the same weights:

* ``hf/``: ``save_pretrained`` output (config, safetensors, a byte-level BPE tokenizer
  trained with ``tokenizers`` on a few sentences) for transformers, vLLM and SGLang;
* ``tiny-llama.gguf``: the same weights written with ``gguf.GGUFWriter`` the way
  llama.cpp's converter does (F32 tensors, Q/K rows permuted for llama.cpp's rope).

Greedy decoding must give the same tokens from both (``test_tiny_model.py``), which checks
the conversion. Built once into a folder keyed by :data:`VERSION`; bump it whenever the
recipe changes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

VERSION = "tiny-llama-v1"
DEFAULT_ROOT = Path(__file__).resolve().parent / "_models"  # ignored by git

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Kubernetes schedules pods onto nodes with enough GPUs.",
    "An inference engine serves a language model over an OpenAI compatible API.",
    "llama.cpp loads GGUF files; vLLM and SGLang load safetensors.",
    "Hello, how are you today? I am fine, thank you!",
    "0123456789 + - * / = ( ) [ ] { } < > | _ # @ ! ? ' \" : ; , .",
]
# A plain template both engines render (jinja in llama.cpp, apply_chat_template in HF).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
BOS, EOS = "<s>", "</s>"


@dataclass(frozen=True)
class Shape:
    vocab_size: int = 384
    hidden_size: int = 128  # 2 heads of 64: vLLM's CPU attention needs head_dim >= 64
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1  # grouped-query attention, so the K permutation is tested
    max_position_embeddings: int = 512
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    initializer_range: float = 0.3  # wide logits: greedy argmax far from ties


@dataclass(frozen=True)
class TinyModel:
    hf_dir: Path
    gguf_path: Path
    shape: Shape


def build(root: Path = DEFAULT_ROOT, shape: Shape = Shape()) -> TinyModel:
    """Return the tiny model under ``root/VERSION``, building it on first use."""
    target = root / VERSION
    model = TinyModel(target / "hf", target / "tiny-llama.gguf", shape)
    if (target / "done").exists():
        _readable_by_all(target)
        return model
    scratch = root / f".{VERSION}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    tokenizer = _train_tokenizer(shape.vocab_size)
    state = _save_hf(scratch / "hf", tokenizer, shape)
    _write_gguf(scratch / "tiny-llama.gguf", tokenizer, state, shape)
    (scratch / "done").write_text(VERSION)
    shutil.rmtree(target, ignore_errors=True)
    _readable_by_all(scratch)
    scratch.rename(target)  # atomic: a half-built model is never used
    return model


def _readable_by_all(root: Path) -> None:
    # safetensors writes 0600 files; the runtime's pods read volumes as an unprivileged user.
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))


def _train_tokenizer(vocab_size: int):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # GPT-2's byte-level split: llama.cpp's "gpt-2" pre-tokenizer is the same regex.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 4, trainer=trainer)
    return tok


def _save_hf(out: Path, tokenizer, shape: Shape) -> dict[str, object]:  # type: ignore[no-untyped-def]
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    vocab = tokenizer.get_vocab_size()
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        rms_norm_eps=shape.rms_norm_eps,
        rope_theta=shape.rope_theta,
        initializer_range=shape.initializer_range,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.token_to_id(BOS),
        eos_token_id=tokenizer.token_to_id(EOS),
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(out)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, chat_template=CHAT_TEMPLATE
    )
    fast.save_pretrained(out)
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id})
    )
    return {name: t.detach().float().numpy() for name, t in model.state_dict().items()}


def _permute(w, n_head: int):  # type: ignore[no-untyped-def]
    # llama.cpp's convert_hf_to_gguf.py LlamaModel.permute: HF rotates halves of each head,
    # llama.cpp rotates adjacent pairs, so interleave the two halves of every head's rows.
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


_TENSOR_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _write_gguf(path: Path, tokenizer, state: dict[str, object], shape: Shape) -> None:  # type: ignore[no-untyped-def]
    import gguf
    import numpy as np

    head_dim = shape.hidden_size // shape.num_attention_heads
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(shape.max_position_embeddings)
    w.add_embedding_length(shape.hidden_size)
    w.add_block_count(shape.num_hidden_layers)
    w.add_feed_forward_length(shape.intermediate_size)
    w.add_head_count(shape.num_attention_heads)
    w.add_head_count_kv(shape.num_key_value_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(shape.rope_theta)
    w.add_layer_norm_rms_eps(shape.rms_norm_eps)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {BOS, EOS}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(
        [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    )
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(vocab[BOS])
    w.add_eos_token_id(vocab[EOS])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    def f32(name: str):  # type: ignore[no-untyped-def]
        return np.ascontiguousarray(state[name], dtype=np.float32)

    w.add_tensor("token_embd.weight", f32("model.embed_tokens.weight"))
    for i in range(shape.num_hidden_layers):
        for hf_name, gguf_name in _TENSOR_NAMES.items():
            t = f32(f"model.layers.{i}.{hf_name}")
            if hf_name.startswith("self_attn.q_proj"):
                t = _permute(t, shape.num_attention_heads)
            elif hf_name.startswith("self_attn.k_proj"):
                t = _permute(t, shape.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gguf_name}", t)
    w.add_tensor("output_norm.weight", f32("model.norm.weight"))
    w.add_tensor("output.weight", f32("lm_head.weight"))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    # `python tests/tiny_model.py DIR`: build into DIR (the demo's model volume) and say where.
    import sys

    built = build(Path(sys.argv[1])) if len(sys.argv) > 1 else build()
    print(built.gguf_path.parent)
