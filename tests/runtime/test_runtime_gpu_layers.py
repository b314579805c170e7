"""The automatic GPU-layer stages and the estimate, fed with fake devices (no GPU needed)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import pytest

from kubeinfer.fit import GgufLayout, GpuDevice
from kubeinfer_runtime.engines.llama_cpp import apply_gpu_layers
from kubeinfer_runtime.gpu_layers import (
    FitFailed,
    GpuLayerChoice,
    GpuLayerDecision,
    Offloaded,
    choose,
    decide,
    gpus_from_device_info,
    needs_retry,
    read_log_line,
    reported_layers,
)

GiB = 1024**3
MiB = 1024**2


class DevType(enum.IntEnum):  # stands in for xllamacpp.ggml_backend_dev_type
    GGML_BACKEND_DEVICE_TYPE_CPU = 0
    GGML_BACKEND_DEVICE_TYPE_GPU = 1


def layout(blocks: int = 32, layer_mib: int = 200) -> GgufLayout:
    return GgufLayout(
        architecture="llama",
        block_count=blocks,
        context_length=4096,
        embedding_length=4096,
        head_count=32,
        head_count_kv=8,
        key_length=128,
        value_length=128,
        layer_bytes=(layer_mib * MiB,) * blocks,
        output_bytes=500 * MiB,
        token_embd_bytes=500 * MiB,
        vocab_size=32000,
    )


def test_device_info_keeps_gpus_in_order_and_drops_the_cpu() -> None:
    devices = [
        {
            "name": "CPU",
            "type": DevType.GGML_BACKEND_DEVICE_TYPE_CPU,
            "memory_free": 1,
            "memory_total": 1,
        },
        {
            "name": "CUDA0",
            "type": DevType.GGML_BACKEND_DEVICE_TYPE_GPU,
            "memory_free": 7 * GiB,
            "memory_total": 8 * GiB,
        },
        {
            "name": "CUDA1",
            "type": DevType.GGML_BACKEND_DEVICE_TYPE_GPU,
            "memory_free": 3 * GiB,
            "memory_total": 4 * GiB,
        },
    ]
    assert gpus_from_device_info(devices) == [
        GpuDevice("CUDA0", 8 * GiB, 7 * GiB),
        GpuDevice("CUDA1", 4 * GiB, 3 * GiB),
    ]


def test_rocm_devices_are_counted_like_cuda_ones() -> None:
    """A HIP build of llama.cpp lists AMD GPUs as GPU devices named ROCm<n> (ggml-cuda.h:
    GGML_CUDA_NAME is "ROCm" under GGML_USE_HIP), only those HIP_VISIBLE_DEVICES /
    ROCR_VISIBLE_DEVICES and the device plugin's /dev/dri nodes leave visible."""
    mi300x = 192 * 1024 * MiB
    devices = [
        {"name": "CPU", "type": DevType.GGML_BACKEND_DEVICE_TYPE_CPU},
        {
            "name": "ROCm0",
            "type": DevType.GGML_BACKEND_DEVICE_TYPE_GPU,
            "memory_free": mi300x - GiB,
            "memory_total": mi300x,
        },
    ]
    (gpu,) = gpus_from_device_info(devices)
    assert gpu == GpuDevice("ROCm0", mi300x, mi300x - GiB)
    assert decide(layout(), [gpu], n_ctx=4096).n_gpu_layers == 33


def test_everything_fits_on_a_big_gpu() -> None:
    d = decide(layout(), [GpuDevice("CUDA0", 80 * GiB, 79 * GiB)], n_ctx=4096)
    assert d.n_gpu_layers == 33
    assert d.tensor_split == ()  # one GPU: no split, llama.cpp's count rules
    assert "all 33 layers fit" in d.reason


def test_part_fits_on_a_small_gpu() -> None:
    d = decide(layout(), [GpuDevice("CUDA0", 4 * GiB, 4 * GiB)], n_ctx=4096)
    assert 0 < d.n_gpu_layers < 33
    assert d.tensor_split == ()
    assert "the rest run on the CPU" in d.reason


def test_two_gpus_get_a_consistent_split() -> None:
    gpus = [GpuDevice("CUDA0", 8 * GiB, 5 * GiB), GpuDevice("CUDA1", 8 * GiB, 5 * GiB)]
    d = decide(layout(), gpus, n_ctx=4096)
    assert d.n_gpu_layers > 0
    assert len(d.tensor_split) == 2
    assert sum(d.tensor_split) == pytest.approx(1.0)


def test_no_estimate_means_all_layers_on_the_gpu() -> None:
    gpus = [GpuDevice("CUDA0", 8 * GiB, 8 * GiB)]
    assert decide(None, gpus, n_ctx=4096).n_gpu_layers == -1
    with_projector = GgufLayout(**{**layout().__dict__, "has_projector": True})
    d = decide(with_projector, gpus, n_ctx=4096)
    assert d.n_gpu_layers == -1 and "every layer goes to the GPU" in d.reason


def test_server_n_ctx_zero_means_the_models_context() -> None:
    small = [GpuDevice("CUDA0", 4 * GiB, 4 * GiB)]
    assert decide(layout(), small, n_ctx=0) == decide(layout(), small, n_ctx=4096)


# --- the stages: user, llama.cpp's fit, the estimate, everything to the GPU


def estimate_of(n: int, split: tuple[float, ...] = ()) -> Callable[[], GpuLayerDecision]:
    return lambda: GpuLayerDecision(n, split, f"estimate says {n}")


def never() -> GpuLayerDecision:
    raise AssertionError("the estimate reads the GGUF: only when no earlier stage decides")


@pytest.mark.parametrize("fit_available", [True, False])
def test_a_given_n_gpu_layers_always_wins(fit_available: bool) -> None:
    for given in (0, 12, 999, -2):
        c = choose(given, fit_available=fit_available, fit_failed=False, gpus=1, estimate=never)
        assert (c.source, c.n_gpu_layers) == ("user", given)


@pytest.mark.parametrize("given", [None, -1])  # -1 is llama.cpp's "auto": not given
def test_without_a_value_llama_cpps_fit_decides(given: int | None) -> None:
    c = choose(given, fit_available=True, fit_failed=False, gpus=2, estimate=never)
    assert (c.source, c.n_gpu_layers, c.tensor_split) == ("fit", None, ())


def test_the_fit_also_runs_without_gpus() -> None:
    # On a CPU it still checks host memory (and may shrink an unset context).
    c = choose(None, fit_available=True, fit_failed=False, gpus=0, estimate=never)
    assert c.source == "fit" and c.n_gpu_layers is None


@pytest.mark.parametrize(
    ("fit_available", "fit_failed", "why"),
    [(False, False, "fit is not available"), (True, True, "fit failed")],
)
def test_the_estimate_where_the_fit_is_missing_or_failed(
    fit_available: bool, fit_failed: bool, why: str
) -> None:
    c = choose(
        None,
        fit_available=fit_available,
        fit_failed=fit_failed,
        gpus=2,
        estimate=estimate_of(20, (0.5, 0.5)),
    )
    assert (c.source, c.n_gpu_layers, c.tensor_split) == ("estimate", 20, (0.5, 0.5))
    assert why in c.reason and "estimate says 20" in c.reason


def test_no_estimate_means_everything_to_the_gpu() -> None:
    c = choose(None, fit_available=False, fit_failed=False, gpus=1, estimate=estimate_of(-1))
    assert (c.source, c.n_gpu_layers) == ("all", -1)


def test_no_gpus_and_no_fit_offload_nothing_without_reading_the_gguf() -> None:
    c = choose(None, fit_available=False, fit_failed=False, gpus=0, estimate=never)
    assert (c.source, c.n_gpu_layers) == ("estimate", 0)
    assert "no GPU devices" in c.reason


FIT = GpuLayerChoice("fit", None, (), "")


@pytest.mark.parametrize(
    ("choice", "started", "fit_failed", "gpus", "retry"),
    [
        (FIT, False, False, 1, True),  # the load with the fit's layers failed
        (FIT, True, True, 1, True),  # llama.cpp survived a failed fit with its default: all
        (FIT, True, False, 1, False),
        (FIT, False, False, 0, False),  # no GPU: the layers are not what failed
        (FIT, True, True, 0, False),
        (GpuLayerChoice("estimate", 10, (), ""), False, False, 1, False),  # one retry only
        (GpuLayerChoice("user", 10, (), ""), False, False, 1, False),
    ],
)
def test_start_again_with_the_estimate_only_after_the_fit_failed_on_gpus(
    choice: GpuLayerChoice, started: bool, fit_failed: bool, gpus: int, retry: bool
) -> None:
    assert needs_retry(choice, started=started, fit_failed=fit_failed, gpus=gpus) == retry


# Lines as the xllamacpp build prints them (its format strings:
# "%s: offloaded %d/%d layers to GPU", "%s: failed to fit params to free device memory: %s").
OFFLOADED = "0.00.412.003 I load_tensors: offloaded 21/33 layers to GPU"
FIT_FAILED = (
    "0.00.114.083 W common_fit_params: failed to fit params to free device memory: "
    "was unable to fit model into system memory by reducing context, abort"
)
FIT_ERROR = (
    "0.00.020.001 E common_fit_params: encountered an error while trying to fit params to "
    "free device memory: failed to load model"
)


def test_llama_cpps_log_lines_are_read() -> None:
    assert read_log_line(OFFLOADED) == Offloaded(21, 33)
    assert read_log_line(FIT_FAILED) == FitFailed(
        "was unable to fit model into system memory by reducing context, abort"
    )
    assert read_log_line(FIT_ERROR) == FitFailed("failed to load model")
    assert read_log_line("0.00.037.159 I srv          init: model loaded") is None
    assert read_log_line("common_fit_params: successfully fit params to free device memory") is None


@pytest.mark.parametrize(
    ("choice", "offloaded", "gpus", "layers"),
    [
        (FIT, Offloaded(21, 33), 1, 21),  # llama.cpp's own count first
        (GpuLayerChoice("estimate", 30, (), ""), Offloaded(30, 33), 1, 30),
        (FIT, None, 1, -1),  # the fit's choice, not logged below verbosity 4
        (GpuLayerChoice("estimate", 30, (), ""), None, 1, 30),
        (GpuLayerChoice("all", -1, (), ""), None, 1, -1),
        (FIT, None, 0, 0),
        (GpuLayerChoice("user", 99, (), ""), None, 0, 0),
    ],
)
def test_the_reported_count(
    choice: GpuLayerChoice, offloaded: Offloaded | None, gpus: int, layers: int
) -> None:
    assert reported_layers(choice, offloaded, gpus) == layers


# --- applied to a real CommonParams


@pytest.fixture
def params() -> Any:
    xllamacpp = pytest.importorskip("xllamacpp")
    return xllamacpp.CommonParams()


def test_the_fit_keeps_n_gpu_layers_unset_and_asks_for_the_log_line(params: Any) -> None:
    apply_gpu_layers(params, FIT, gpus=1, verbosity_given=False)
    assert (params.n_gpu_layers, params.fit_params, params.verbosity) == (-1, True, 4)


@pytest.mark.parametrize(("gpus", "given"), [(0, False), (1, True)])
def test_the_verbosity_stays_without_gpus_or_when_given(
    params: Any, gpus: int, given: bool
) -> None:
    apply_gpu_layers(params, FIT, gpus=gpus, verbosity_given=given)
    assert params.verbosity == 3


def test_the_estimate_turns_the_fit_off_and_sets_the_split(params: Any) -> None:
    choice = GpuLayerChoice("estimate", 20, (0.75, 0.25), "")
    apply_gpu_layers(params, choice, gpus=2, verbosity_given=False)
    assert (params.n_gpu_layers, params.fit_params, params.verbosity) == (20, False, 3)
    assert params.tensor_split[:3] == [0.75, 0.25, 0.0]


def test_everything_to_the_gpu_turns_the_fit_off(params: Any) -> None:
    # -1 with the fit on would be the fit again; off, it is llama.cpp's default: all layers.
    apply_gpu_layers(params, GpuLayerChoice("all", -1, (), ""), gpus=1, verbosity_given=False)
    assert (params.n_gpu_layers, params.fit_params) == (-1, False)


def test_a_user_value_is_left_as_given(params: Any) -> None:
    params.n_gpu_layers = 7
    apply_gpu_layers(params, GpuLayerChoice("user", 7, (), ""), gpus=1, verbosity_given=False)
    assert (params.n_gpu_layers, params.fit_params) == (7, True)
