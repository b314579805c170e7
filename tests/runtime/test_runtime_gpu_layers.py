"""The automatic GPU-layer decision, fed with fake devices (no GPU needed)."""

from __future__ import annotations

import enum

import pytest

from kubeinfer.fit import GgufLayout, GpuDevice
from kubeinfer_runtime.gpu_layers import decide, gpus_from_device_info

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
