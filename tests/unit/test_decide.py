"""decide(): choice, placement, added parameters, forced engines, determinism."""

from __future__ import annotations

import random
from typing import Any

import pytest
from unit_helpers import cpu, h100, l4, mac, make_node, mi300x, spec

from kubeinfer.api.v1alpha1 import ModelDeploymentSpec
from kubeinfer.decide import Decision, decide
from kubeinfer.engines import REGISTRY
from kubeinfer.nodes import node_facts

CLUSTER = [h100("h100-0"), h100("h100-1"), l4("l4-0"), l4("l4-1"), mi300x(), cpu("cpu-0")]
GGUF = {"format": "gguf", "quantization": "Q4_K_M", "file": "m.gguf"}


def run(spec_dict: dict[str, Any], nodes: list[dict[str, Any]], **kw: Any) -> Decision:
    return decide(ModelDeploymentSpec.model_validate(spec_dict), map(node_facts, nodes), **kw)


def test_every_engine_is_in_the_trace_in_preference_order() -> None:
    decision = run(spec(sizeInBillions=7), CLUSTER)
    assert [c.engine for c in decision.candidates] == [e.name for e in REGISTRY]
    assert all(c.reason for c in decision.candidates)


def test_vllm_on_a_whole_h100_node_gets_tensor_parallel_8() -> None:
    decision = run(spec(sizeInBillions=70, spec_resources={"gpus": 8}), CLUSTER)
    assert decision.engine == "vllm"
    plan = decision.placement
    assert plan is not None
    assert plan.node_class.startswith("linux/amd64 8x NVIDIA-H100")
    assert plan.nodes == ("h100-0", "h100-1")
    assert (plan.gpu_resource, plan.gpus_per_replica) == ("nvidia.com/gpu", 8)
    assert plan.node_selector == {
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }
    assert [(t.key, t.operator, t.effect) for t in plan.tolerations] == [
        ("nvidia.com/gpu", "Exists", "NoSchedule")
    ]
    assert decision.engine_params == {"tensor_parallel_size": 8}
    assert decision.memory_estimate


def test_smallest_gpu_that_fits_wins() -> None:
    assert run(
        spec(sizeInBillions=7, spec_resources={"gpus": 1}), CLUSTER
    ).placement.gpu_product == (  # type: ignore[union-attr]
        "NVIDIA-L4"
    )


def test_unset_gpus_are_chosen_from_the_memory_estimate() -> None:
    decision = run(spec(sizeInBillions=70), CLUSTER)
    assert decision.placement is not None
    assert decision.placement.gpu_product == "NVIDIA-H100-80GB-HBM3"
    assert decision.placement.gpus_per_replica == 2
    assert decision.engine_params == {"tensor_parallel_size": 2}


def test_gpu_product_preference() -> None:
    decision = run(
        spec(sizeInBillions=7, spec_resources={"gpus": 1, "gpuProduct": "h100"}), CLUSTER
    )
    assert decision.placement is not None
    assert decision.placement.gpu_product == "NVIDIA-H100-80GB-HBM3"


def test_a_model_too_big_for_the_gpus_asked_for() -> None:
    decision = run(spec(sizeInBillions=400, spec_resources={"gpus": 1}), CLUSTER)
    vllm = next(c for c in decision.candidates if c.engine == "vllm")
    assert not vllm.matched
    assert "does not fit" in vllm.reason
    assert decision.engine is None


def test_more_gpus_than_any_node_has_places_on_the_largest_and_says_so() -> None:
    decision = run(spec(spec_resources={"gpus": 16}), CLUSTER)
    assert decision.engine == "vllm"
    assert decision.placement is not None
    assert decision.placement.gpus_per_replica == 16
    assert decision.placement.gpu_product == "NVIDIA-H100-80GB-HBM3"
    assert any("needs 16 GPUs per replica" in note for note in decision.assumptions)


def test_user_tensor_parallel_size_wins_and_is_noted() -> None:
    model = spec(
        sizeInBillions=7, spec_resources={"gpus": 8}, spec_engineParams={"tensor_parallel_size": 4}
    )
    decision = run(model, CLUSTER)
    assert decision.engine_params["tensor_parallel_size"] == 4
    assert decision.added_params == {"tensor_parallel_size": 8}
    assert any("overrides" in a for a in decision.assumptions)


def test_llama_cpp_gpu_layers_are_estimated_but_not_forced() -> None:
    decision = run(spec(**GGUF, sizeInBillions=14, spec_resources={"gpus": 1}), CLUSTER)
    assert decision.engine == "llama.cpp"
    assert decision.gpu_layers is not None and decision.gpu_layers.fits_fully
    assert decision.gpu_layers.n_gpu_layers > 0
    assert "n_gpu_layers" not in decision.engine_params


def test_llama_cpp_partial_offload_when_the_model_is_bigger_than_the_gpu() -> None:
    decision = run(spec(**GGUF, sizeInBillions=70, spec_resources={"gpus": 1}), [l4()])
    assert decision.engine == "llama.cpp"
    assert decision.gpu_layers is not None
    assert not decision.gpu_layers.fits_fully
    assert 0 < decision.gpu_layers.n_gpu_layers < 80


def test_llama_cpp_unknown_quantization_puts_all_layers_on_the_gpu() -> None:
    model = spec(format="gguf", quantization="Q9_MADE_UP", file="m.gguf", sizeInBillions=7)
    decision = run({**model, "resources": {"gpus": 1}}, [l4()])
    assert decision.gpu_layers is not None
    assert decision.gpu_layers.n_gpu_layers == -1


def test_user_n_gpu_layers_is_kept() -> None:
    model = spec(**GGUF, sizeInBillions=7, spec_engineParams={"n_gpu_layers": 10})
    assert run(model, CLUSTER).engine_params == {"n_gpu_layers": 10}


def test_cpu_pods_stay_off_tainted_gpu_nodes_and_prefer_gpu_less_ones() -> None:
    decision = run(spec(**GGUF, sizeInBillions=7, spec_resources={"gpus": 0}), CLUSTER)
    assert decision.placement is not None
    assert decision.placement.node_class == "linux/amd64 cpu"
    assert decision.placement.tolerations == ()
    assert decision.placement.affinity is not None
    gpu_only = run(spec(**GGUF, spec_resources={"gpus": 0}), [h100()])
    assert gpu_only.engine is None
    assert "tainted nvidia.com/gpu=present:NoSchedule" in gpu_only.candidates[3].reason


def test_unset_gpus_prefer_gpus_for_llama_cpp_and_fall_back_to_cpu() -> None:
    assert run(spec(**GGUF, sizeInBillions=7), CLUSTER).placement.gpus_per_replica == 1  # type: ignore[union-attr]
    on_cpu = run(spec(**GGUF, sizeInBillions=7), [cpu()])
    assert on_cpu.placement is not None and on_cpu.placement.accelerator == "cpu"


def test_other_taints_and_cordoned_nodes_are_skipped() -> None:
    taint = ({"key": "dedicated", "value": "batch", "effect": "NoSchedule"},)
    nodes = [h100("a", extra_taints=taint), h100("b", unschedulable=True)]
    decision = run(spec(spec_resources={"gpus": 1}), nodes)
    assert decision.engine is None
    reason = decision.candidates[0].reason
    assert "tainted dedicated=batch:NoSchedule" in reason and "cordoned" in reason


def test_prefer_no_schedule_taints_do_not_block() -> None:
    taint = ({"key": "spot", "value": "true", "effect": "PreferNoSchedule"},)
    assert run(spec(**GGUF, spec_resources={"gpus": 0}), [cpu(extra_taints=taint)]).engine == (
        "llama.cpp"
    )


@pytest.mark.parametrize("engine", ["vllm", "sglang", "transformers"])
def test_forced_engine_is_used_over_the_preference(engine: str) -> None:
    decision = run(spec(sizeInBillions=7, spec_engine=engine, spec_resources={"gpus": 1}), CLUSTER)
    assert decision.engine == engine
    assert decision.reason.startswith(f"spec.engine asks for {engine}")


@pytest.mark.parametrize(
    ("model", "nodes"),
    [
        (spec(spec_engine="sglang", spec_resources={"gpus": 1}), [cpu(), mi300x()]),
        (spec(format="mlx", spec_engine="mlx"), CLUSTER),
        (spec(spec_engine="transformers", spec_resources={"gpus": 2}), [cpu()]),
        (spec(spec_engine="sglang"), []),
    ],
)
def test_forced_engine_that_cannot_run_gives_no_engine_and_the_reason(
    model: dict[str, Any], nodes: list[dict[str, Any]]
) -> None:
    decision = run(model, nodes)
    assert decision.engine is None
    assert decision.requested
    assert decision.placement is None
    assert decision.reason.startswith("spec.engine asks for")
    assert "cannot run" in decision.reason


def test_no_nodes_at_all() -> None:
    model = spec()
    decision = run(model, [])
    assert decision.engine is None
    parsed = ModelDeploymentSpec.model_validate(model).model
    model_rules_hold = {e.name for e in REGISTRY if e.check_model(parsed, False).ok}
    assert {"vllm", "sglang", "transformers"} <= model_rules_hold < {e.name for e in REGISTRY}
    for candidate in decision.candidates:
        assert ("no nodes" in candidate.reason) is (candidate.engine in model_rules_hold)


def test_kept_engine_survives_a_better_node_joining() -> None:
    model = spec(sizeInBillions=7)
    before = run(model, [cpu()])
    assert before.engine == "transformers"
    after = run(model, [cpu(), l4()], keep_engine=before.engine)
    assert after.engine == "transformers"
    assert after.reason.startswith("kept transformers")
    assert run(model, [cpu(), l4()]).engine == "vllm"


def test_kept_engine_that_no_longer_runs_is_replaced() -> None:
    decision = run(spec(sizeInBillions=7), [cpu()], keep_engine="vllm")
    assert decision.engine == "transformers"


def test_partial_labels_are_reported_as_assumptions() -> None:
    node = make_node("bare", vendor="nvidia", product=None, memory_mib=None, count=2)
    decision = run(spec(sizeInBillions=7), [node])
    assert decision.engine == "vllm"
    assert decision.placement is not None and decision.placement.gpus_per_replica == 1
    assert any("GPU memory unknown" in a for a in decision.assumptions)
    assert "nvidia.com/gpu.product" not in decision.placement.node_selector


def test_mixed_linux_and_mac_cluster() -> None:
    nodes = [*CLUSTER, mac("mac-0"), mac("mac-1")]
    mlx = run(spec(format="mlx", quantization="4bit"), nodes)
    assert mlx.engine == "mlx"
    assert mlx.placement is not None
    assert mlx.placement.node_selector == {
        "kubernetes.io/os": "darwin",
        "kubernetes.io/arch": "arm64",
    }
    assert mlx.placement.accelerator == "metal"


@pytest.mark.parametrize(
    "model",
    [
        spec(sizeInBillions=7),
        spec(**GGUF, sizeInBillions=13),
        spec(name="x", sizeInBillions=3, spec_resources={"gpus": 0}),
        spec(format="mlx"),
    ],
)
def test_same_input_same_decision_whatever_the_node_order(model: dict[str, Any]) -> None:
    nodes = [*CLUSTER, mac(), cpu("cpu-1"), l4("l4-2"), make_node("arm", arch="arm64")]
    expected = run(model, nodes)
    rng = random.Random(42)
    for _ in range(20):
        rng.shuffle(nodes)
        assert run(model, nodes) == expected


def test_no_engine_names_what_the_cluster_lacks() -> None:
    decision = run(spec(format="mlx", quantization="Int4"), CLUSTER)
    assert decision.engine is None
    assert decision.reason.startswith("no engine can run format mlx")
    # MLX takes the model; only its platform is missing, and the reason says which.
    assert "mlx: format mlx goes to MLX" in decision.reason
    assert "darwin/arm64" in decision.reason


def test_requested_says_whether_spec_engine_named_the_engine() -> None:
    assert run(spec(spec_engine="vllm"), CLUSTER).requested
    assert not run(spec(), CLUSTER).requested
    assert not run(spec(format="mlx"), CLUSTER).requested  # auto, and nothing runs it


@pytest.mark.parametrize(
    ("model", "engine", "params"),
    [
        (spec(sizeInBillions=7), "vllm", {"tensor_parallel_size": 1}),
        (spec(name="my-private-model", sizeInBillions=7), "transformers", {}),
    ],
)
def test_a_pytorch_model_on_an_amd_only_cluster_runs_on_rocm(
    model: dict[str, Any], engine: str, params: dict[str, Any]
) -> None:
    decision = run(model, [mi300x(), cpu()])
    assert decision.engine == engine
    plan = decision.placement
    assert plan is not None
    assert (plan.accelerator, plan.gpu_resource) == ("rocm", "amd.com/gpu")
    assert plan.gpus_per_replica == 1
    assert plan.node_selector == {
        "amd.com/gpu.product-name": "AMD-Instinct-MI300X",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
    }
    assert [(t.key, t.effect) for t in plan.tolerations] == [("amd.com/gpu", "NoSchedule")]
    assert decision.engine_params == params
