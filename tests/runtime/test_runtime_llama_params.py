"""llama.cpp params onto a real xllamacpp.CommonParams (no model is loaded)."""

from __future__ import annotations

import pytest

xllamacpp = pytest.importorskip("xllamacpp")

from kubeinfer_runtime.engines.flags import ParamError  # noqa: E402
from kubeinfer_runtime.engines.llama_cpp_params import apply_params  # noqa: E402


def test_flat_and_dotted_keys_set_fields() -> None:
    p = xllamacpp.CommonParams()
    apply_params(
        p,
        {
            "n_ctx": 512,
            "n_parallel": 2,
            "sampling.top_k": 1,
            "sampling.temp": 0,
            "cpuparams.n_threads": 2,
            "cache_type_k": "q8_0",
            "flash_attn_type": "enabled",
            "tensor_split": [0.25, 0.75],
            "ctx_shift": True,
        },
    )
    assert (p.n_ctx, p.n_parallel, p.sampling.top_k, p.cpuparams.n_threads) == (512, 2, 1, 2)
    assert p.sampling.temp == 0.0
    assert p.cache_type_k == xllamacpp.ggml_type.GGML_TYPE_Q8_0
    assert p.flash_attn_type.name.endswith("ENABLED")
    assert p.tensor_split[:3] == [0.25, 0.75, 0.0]
    assert p.ctx_shift is True


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_ctxx": 512}, "unknown llama.cpp parameter 'n_ctxx'; did you mean n_ctx"),
        ({"sampling.topk": 1}, "did you mean sampling.top_k"),
        (
            {"samplin.top_k": 1},
            "unknown llama.cpp parameter 'samplin.top_k'; did you mean sampling",
        ),
        ({"n_ctx": "big"}, "'n_ctx' takes a int, got 'big'"),
        ({"n_ctx": True}, "'n_ctx' takes a int"),
        ({"warmup": 1}, "'warmup' takes a bool"),
        ({"cache_type_k": "q9"}, "'cache_type_k' takes one of GGML_TYPE_F32"),
        ({"sampling": 3}, "'sampling' is a group; set its fields (sampling."),
        ({"n_ctx.x": 3}, "'n_ctx' has no fields"),
        ({"port": 1}, "comes from the config document"),
        ({"model.path": "/x"}, "comes from the config document"),
    ],
)
def test_bad_params_name_the_key(params: dict[str, object], message: str) -> None:
    with pytest.raises(ParamError) as exc:
        apply_params(xllamacpp.CommonParams(), params)
    assert message in str(exc.value)
