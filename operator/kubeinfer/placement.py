"""Can this engine run on this node class, with how many GPUs, and how is the pod pinned?

Pure. One `Option` per (engine, node class) that works, or the sentence saying why not.
The GPU counts and memory checks come from kubeinfer.fit; where facts are missing (no
memory label, no model size) the check is skipped and the assumption recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeinfer import fit
from kubeinfer.api.v1alpha1 import ModelDeploymentSpec, Toleration
from kubeinfer.engines import GPU_ACCELERATORS, Accelerator, Engine
from kubeinfer.nodes import GPU_RESOURCES, NodeClass, NodeProfile, Taint, product_label

MiB = 1024 * 1024
DEFAULT_CONTEXT_LENGTH = 4096
# Taints a GPU workload is expected to tolerate: the device plugins' conventional taints.
GPU_TAINT_KEYS = frozenset(GPU_RESOURCES.values())
_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True, slots=True)
class GpuLayers:
    """llama.cpp's layer estimate for the chosen GPUs (for display; the runtime decides)."""

    n_gpu_layers: int
    fits_fully: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Option:
    node_class: NodeClass
    accelerator: Accelerator
    gpus: int
    fits_fully: bool
    gpu_layers: GpuLayers | None
    memory_formula: str | None
    notes: tuple[str, ...]

    @property
    def short_of_gpus(self) -> bool:
        """More GPUs per replica than the class's nodes have: its pods would stay Pending."""
        return self.gpus > self.node_class.profile.allocatable_gpus

    @property
    def gpu_memory_per_replica_mib(self) -> int:
        return self.gpus * (self.node_class.profile.gpu_memory_mib or 0)


def context_length(engine: Engine, params: dict[str, Any]) -> int:
    """The context length the engine is given (its descriptor names the parameter)."""
    value = params.get(engine.context_param) if engine.context_param else None
    return value if isinstance(value, int) and value > 0 else DEFAULT_CONTEXT_LENGTH


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' rule (core/v1 Toleration.ToleratesTaint): an empty effect matches every
    effect, an empty key (operator Exists) every key; Equal compares the value."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    return toleration.operator == "Exists" or toleration.value == taint.value


def untolerated_taints(option: Option, spec_tolerations: Sequence[Toleration] = ()) -> list[str]:
    """Taints that would keep the pod off the class's nodes.

    A pod that uses the node's GPUs tolerates the GPU taints (see `tolerations`); a CPU pod
    tolerates nothing else, so GPU nodes stay for the models that need them. The spec's
    tolerations count for every pod. As for the scheduler, tolerationSeconds does not matter.
    """
    tolerated = GPU_TAINT_KEYS if option.gpus else frozenset()
    return [
        f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}"
        for t in option.node_class.profile.taints
        if t.effect in _BLOCKING_EFFECTS
        and t.key not in tolerated
        and not any(tolerates(toleration, t) for toleration in spec_tolerations)
    ]


def option(engine: Engine, spec: ModelDeploymentSpec, node_class: NodeClass) -> Option | str:
    """The way `engine` runs on `node_class`, or why it cannot (a sentence)."""
    profile = node_class.profile
    requested = spec.resources.gpus
    if "metal" in engine.accelerators:
        if requested:
            return "MLX uses Apple silicon's unified memory: spec.resources.gpus must be 0 or unset"
        return _cpu_like(node_class, "metal")
    # The image variant this node's GPUs need, when the engine has one.
    gpu_accelerator = GPU_ACCELERATORS.get(profile.gpu_vendor)
    gpu_here = gpu_accelerator in engine.accelerators
    if requested == 0:
        if "cpu" not in engine.accelerators:
            return f"spec.resources.gpus is 0 but {engine.name} needs GPUs"
        return _cpu_like(node_class, "cpu")
    if requested is None:
        if gpu_here and profile.allocatable_gpus > 0:
            chosen = _auto_gpu_option(engine, spec, node_class)
            if isinstance(chosen, Option) or "cpu" not in engine.accelerators:
                return chosen
        if "cpu" in engine.accelerators:
            return _cpu_like(node_class, "cpu")
        return f"{engine.name} needs GPUs and the node has none allocatable"
    if gpu_accelerator is None:
        return f"spec.resources.gpus is {requested} but the node has no GPU"
    if not gpu_here:
        built = ", ".join(sorted(engine.accelerators))
        return (
            f"kubeinfer's {engine.display} images are {built} builds: no {gpu_accelerator} "
            f"image for this node's {profile.gpu_vendor.upper()} GPUs"
        )
    return _gpu_option(engine, spec, node_class, requested)


def _cpu_like(node_class: NodeClass, accelerator: Accelerator) -> Option:
    return Option(node_class, accelerator, 0, True, None, None, ())


def _estimate(spec: ModelDeploymentSpec, engine: Engine) -> fit.MemoryEstimate | str:
    model = spec.model
    if model.size_in_billions is None:
        return "spec.model.sizeInBillions not set: GPU memory fit not checked"
    try:
        return fit.estimate_serving_memory(
            model.size_in_billions,
            model.format,
            model.quantization,
            context_length=context_length(engine, spec.engine_params),
        )
    except fit.EstimateError as error:
        return f"no memory estimate ({error}): GPU memory fit not checked"


def _auto_gpu_option(
    engine: Engine, spec: ModelDeploymentSpec, node_class: NodeClass
) -> Option | str:
    profile = node_class.profile
    estimate = _estimate(spec, engine)
    if isinstance(estimate, str) or profile.gpu_memory_mib is None:
        note = estimate if isinstance(estimate, str) else "GPU memory unknown"
        return _gpu_option(engine, spec, node_class, 1, (f"{note}; assumed 1 GPU",))
    needed = fit.gpus_needed(estimate, profile.gpu_memory_mib * MiB)
    if needed is not None and needed <= profile.allocatable_gpus:
        return _gpu_option(engine, spec, node_class, needed)
    if engine.offloads_layers:
        # llama.cpp can keep the layers that do not fit in CPU memory.
        return _gpu_option(engine, spec, node_class, profile.allocatable_gpus)
    return (
        f"estimated {estimate.total_bytes / 2**30:.1f} GiB does not fit on "
        f"{profile.allocatable_gpus} x {profile.gpu_memory_mib} MiB"
    )


def _gpu_option(
    engine: Engine,
    spec: ModelDeploymentSpec,
    node_class: NodeClass,
    gpus: int,
    notes: tuple[str, ...] = (),
) -> Option | str:
    profile = node_class.profile
    accelerator = GPU_ACCELERATORS[profile.gpu_vendor]  # callers checked: the node has GPUs
    if profile.allocatable_gpus < gpus:
        # Still a placement: the pods stay Pending and the scheduler's message says why,
        # which is what users look for when a request outgrows the cluster (or until a
        # larger node joins). Ranked after every class where the request fits.
        note = (
            f"needs {gpus} GPUs per replica, the node has {profile.allocatable_gpus} "
            "allocatable: pods stay Pending until a node can hold one"
        )
        return Option(node_class, accelerator, gpus, False, None, None, (*notes, note))
    if engine.offloads_layers:
        layers = _gpu_layers(engine, spec, profile, gpus)
        return Option(node_class, accelerator, gpus, layers.fits_fully, layers, None, notes)
    estimate = _estimate(spec, engine)
    if isinstance(estimate, str):
        return Option(node_class, accelerator, gpus, True, None, None, (*notes, estimate))
    if profile.gpu_memory_mib is None:
        return Option(node_class, accelerator, gpus, True, None, estimate.formula, notes)
    needed = fit.gpus_needed(estimate, profile.gpu_memory_mib * MiB)
    if needed is None or needed > gpus:
        return (
            f"estimated {estimate.total_bytes / 2**30:.1f} GiB does not fit on "
            f"{gpus} x {profile.gpu_memory_mib} MiB"
        )
    return Option(node_class, accelerator, gpus, True, None, estimate.formula, notes)


def _gpu_layers(
    engine: Engine, spec: ModelDeploymentSpec, profile: NodeProfile, gpus: int
) -> GpuLayers:
    model = spec.model
    params = spec.engine_params
    if model.size_in_billions is None or profile.gpu_memory_mib is None:
        return GpuLayers(-1, True, "model size or GPU memory unknown: all layers on the GPU")
    memory = profile.gpu_memory_mib * MiB
    device = fit.GpuDevice(name=profile.gpu_product or "gpu", total_bytes=memory, free_bytes=memory)
    # llama.cpp's n_ctx already spans all n_parallel slots, so the estimate sees one
    # sequence of n_ctx (the runtime asks the same way).
    n_ctx = context_length(engine, params)
    try:
        layout = fit.layout_from_size(
            model.size_in_billions, model.quantization, context_length=n_ctx
        )
        plan = fit.estimate_gpu_layers(
            layout,
            [device] * gpus,
            n_ctx=n_ctx,
        )
    except fit.EstimateError as error:
        # The seed's rule: when the estimate fails, everything goes to the GPU.
        return GpuLayers(-1, True, f"estimate failed ({error}): all layers on the GPU")
    return GpuLayers(plan.n_gpu_layers, plan.fits_fully, plan.reason)


def node_selector(option: Option, spec_selector: Mapping[str, str] | None = None) -> dict[str, str]:
    """Pins the pod to the chosen class: platform, and GPU product when GPUs are used; plus
    the spec's nodeSelector (sorted). The two cannot disagree: the class was chosen among
    the nodes whose labels match the spec's."""
    profile = option.node_class.profile
    selector = {**(spec_selector or {})}
    selector.update({"kubernetes.io/os": profile.os, "kubernetes.io/arch": profile.arch})
    if option.gpus and profile.gpu_product:
        selector[product_label(profile.gpu_vendor)] = profile.gpu_product
    return dict(sorted(selector.items()))


def tolerations(
    option: Option, spec_tolerations: Sequence[Toleration] = ()
) -> tuple[Toleration, ...]:
    """The GPU taints of the chosen class, only when the pod uses its GPUs, then the spec's
    tolerations in their order; each once."""
    gpu: list[Toleration] = []
    if option.gpus:
        resource = str(option.node_class.profile.gpu_resource)
        effects = sorted(
            {t.effect for t in option.node_class.profile.taints if t.key == resource}
            or {"NoSchedule"}
        )
        gpu = [
            Toleration.model_validate({"key": resource, "operator": "Exists", "effect": e})
            for e in effects
        ]
    return tuple(dict.fromkeys([*gpu, *spec_tolerations]))


def affinity(option: Option) -> dict[str, Any] | None:
    """CPU pods prefer nodes without GPUs, leaving those for the models that need them."""
    if option.gpus or option.accelerator != "cpu":
        return None
    return {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "preference": {
                        "matchExpressions": [
                            {"key": f"{vendor}.com/gpu.present", "operator": "DoesNotExist"}
                            for vendor in sorted(GPU_RESOURCES)
                        ]
                    },
                }
            ]
        }
    }
