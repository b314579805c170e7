"""spec + node facts -> the decision: engine, placement, parameters, and a trace (pure).

Only the nodes whose labels match spec.nodeSelector count: each class is narrowed to them,
and a class with none is excluded with that reason. Rules (kubeinfer.engines) are evaluated
for every engine on every node class, so the trace says for each engine whether it matched
and the rule that decided. The choice is then:
  - spec.engine names an engine: that engine, or none (with the reason) when it cannot run;
  - auto: the first engine in kubeinfer.engines.REGISTRY (the preference order) that matched;
  - `keep_engine` (the engine chosen earlier for the same spec) wins over a newer
    preference while it still runs, so a node joining never flips a running deployment.
Among the node classes where the chosen engine runs, ties are broken in this order:
  1. the GPU product asked for in spec.resources.gpuProduct (case-insensitive substring);
  2. with GPUs unset: GPU placements before CPU ones; with gpus 0: GPU-less nodes first;
  3. classes whose nodes have enough GPUs for a replica (when none has, the one with the
     most: the pods stay Pending with the scheduler's reason, and the decision says so);
  4. engines that offload layers (llama.cpp): every layer fits on the GPUs first;
  5. the least GPU memory per replica (the smallest GPUs that do the job);
  6. the class with more nodes (room for replicas); 7. the class id.
Everything is sorted, so the same input gives the same decision whatever the node order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from kubeinfer import placement as plc
from kubeinfer.api.v1alpha1 import (
    Candidate,
    ModelDeploymentSpec,
    Placement,
    Toleration,
)
from kubeinfer.engines import REGISTRY, Accelerator, Engine, EngineName
from kubeinfer.engines import engine as descriptor
from kubeinfer.nodes import NodeClass, NodeFacts, node_classes, select

_PREFERENCE_TEXT = ", ".join(engine.name for engine in REGISTRY)
# Reasons are kept readable when many classes fail the same way.
_MAX_CLASSES_PER_REASON = 3


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class GpuLayerEstimate(_Frozen):
    n_gpu_layers: int = Field(alias="nGpuLayers", description="-1: every layer on the GPU.")
    fits_fully: bool = Field(alias="fitsFully")
    reason: str


class PlacementPlan(_Frozen):
    """Where and how the pods run: everything the renderer needs to pin them."""

    node_class: str = Field(alias="nodeClass")
    nodes: tuple[str, ...]
    node_selector: dict[str, str] = Field(alias="nodeSelector")
    affinity: dict[str, JsonValue] | None = None
    tolerations: tuple[Toleration, ...] = ()
    accelerator: Accelerator
    gpu_resource: str | None = Field(default=None, alias="gpuResource")
    gpus_per_replica: int = Field(alias="gpusPerReplica")
    gpu_product: str | None = Field(default=None, alias="gpuProduct")
    gpu_memory_mib: int | None = Field(default=None, alias="gpuMemoryMiB")


class Decision(_Frozen):
    engine: EngineName | None
    # spec.engine named the engine (rather than auto): with no engine, the named one cannot run.
    requested: bool = False
    reason: str
    candidates: tuple[Candidate, ...]
    placement: PlacementPlan | None = None
    # The parameters for the runtime config: what the operator adds, then the user's.
    engine_params: dict[str, JsonValue] = Field(default_factory=dict, alias="engineParams")
    added_params: dict[str, JsonValue] = Field(default_factory=dict, alias="addedParams")
    gpu_layers: GpuLayerEstimate | None = Field(default=None, alias="gpuLayers")
    memory_estimate: str | None = Field(default=None, alias="memoryEstimate")
    assumptions: tuple[str, ...] = ()

    def placement_status(self) -> Placement | None:
        """The placement as ModelDeployment.status reports it."""
        p = self.placement
        if p is None:
            return None
        return Placement(
            node_class=p.node_class,
            nodes=len(p.nodes),
            node_selector=p.node_selector,
            accelerator=p.accelerator,
            gpu_resource=p.gpu_resource,
            gpus_per_replica=p.gpus_per_replica,
            gpu_product=p.gpu_product,
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# Fields added after v1alpha1's first release: left out of the digest while unset, so that
# upgrading the operator does not count as a spec change for every existing object.
_LATER_FIELDS = ("nodeSelector", "tolerations")


def fingerprint(spec: ModelDeploymentSpec) -> str:
    """A digest of what the decision reads from the spec: everything but the replica count,
    the runtime's environment and the model cache."""
    inputs = spec.model_dump(
        mode="json",
        by_alias=True,
        exclude={"replicas": True, "env": True, "env_from": True, "model": {"cache"}},
    )
    for name in _LATER_FIELDS:
        if not inputs[name]:
            del inputs[name]
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def decide(
    spec: ModelDeploymentSpec, nodes: Iterable[NodeFacts], *, keep_engine: str | None = None
) -> Decision:
    """The decision for `spec` on these nodes (see the module doc for the rules)."""
    return decide_for_classes(spec, node_classes(nodes), keep_engine=keep_engine)


def decide_for_classes(
    spec: ModelDeploymentSpec, classes: Sequence[NodeClass], *, keep_engine: str | None = None
) -> Decision:
    classes = sorted(classes, key=lambda c: c.id)
    selected: list[NodeClass] = []
    unselected: list[str] = []
    for node_class in classes:
        narrowed = select(node_class, spec.node_selector)
        if narrowed is None:
            unselected.append(node_class.id)
        else:
            selected.append(narrowed)
    best: dict[str, plc.Option] = {}
    candidates: list[Candidate] = []
    for engine in REGISTRY:
        verdict = _evaluate(engine, spec, selected, unselected)
        if isinstance(verdict, str):
            candidates.append(Candidate(engine=engine.name, matched=False, reason=verdict))
        else:
            chosen, reason = verdict
            best[engine.name] = chosen
            candidates.append(Candidate(engine=engine.name, matched=True, reason=reason))

    engine_name, reason = _choose(spec, candidates, best, keep_engine)
    requested = spec.engine != "auto"
    if engine_name is None:
        return Decision(
            engine=None, requested=requested, reason=reason, candidates=tuple(candidates)
        )
    return _decision(spec, engine_name, reason, best[engine_name], tuple(candidates))


def _evaluate(
    engine: Engine,
    spec: ModelDeploymentSpec,
    classes: Sequence[NodeClass],
    unselected: Sequence[str],
) -> tuple[plc.Option, str] | str:
    """The best option for `engine` and its matched reason, or the reason it fails.
    `unselected`: the ids of the classes without a node that matches spec.nodeSelector."""
    model_rule = engine.check_model(spec.model, spec.engine == engine.name)
    if not model_rule.ok:
        return model_rule.rule
    if not classes and not unselected:
        return f"{model_rule.rule}; but the cluster has no nodes"
    options: list[plc.Option] = []
    failures: dict[str, list[str]] = {}
    if unselected:
        failures[_selector_failure(spec)] = list(unselected)
    for node_class in classes:
        failure = _class_failure(engine, spec, node_class)
        if isinstance(failure, plc.Option):
            options.append(failure)
        else:
            failures.setdefault(failure, []).append(node_class.id)
    if not options:
        return f"{model_rule.rule}; but no node qualifies: {_summarise(failures)}"
    chosen = min(options, key=lambda o: _rank(spec, o))
    where = _describe(chosen)
    return chosen, f"{model_rule.rule}; {where}"


def _class_failure(
    engine: Engine, spec: ModelDeploymentSpec, node_class: NodeClass
) -> plc.Option | str:
    profile = node_class.profile
    if not profile.schedulable:
        return "cordoned"
    platform = engine.check_platform(profile)
    if not platform.ok:
        return platform.rule
    found = plc.option(engine, spec, node_class)
    if isinstance(found, str):
        return found
    taints = plc.untolerated_taints(found, spec.tolerations)
    if taints:
        return f"tainted {', '.join(taints)}"
    return found


def _selector_failure(spec: ModelDeploymentSpec) -> str:
    pairs = ", ".join(f"{k}: {v}" for k, v in sorted(spec.node_selector.items()))
    return f"no node matches spec.nodeSelector {{{pairs}}}"


def _rank(spec: ModelDeploymentSpec, option: plc.Option) -> tuple[Any, ...]:
    profile = option.node_class.profile
    wanted = (spec.resources.gpu_product or "").lower()
    product_miss = bool(wanted) and wanted not in (profile.gpu_product or "").lower()
    if spec.resources.gpus is None:
        accelerator_rank = 0 if option.gpus else 1
    else:
        accelerator_rank = 1 if (option.gpus == 0 and profile.gpu_vendor != "none") else 0
    return (
        product_miss,
        accelerator_rank,
        option.short_of_gpus,
        # When no class has enough GPUs, the one closest to holding a replica.
        -profile.allocatable_gpus if option.short_of_gpus else 0,
        not option.fits_fully,
        option.gpu_memory_per_replica_mib,
        -len(option.node_class.nodes),
        option.node_class.id,
    )


def _describe(option: plc.Option) -> str:
    count = len(option.node_class.nodes)
    nodes = f"{count} node{'s' if count != 1 else ''}"
    if option.gpus:
        return f"runs on {option.node_class.id} ({nodes}) with {option.gpus} GPU(s) per replica"
    return f"runs on {option.node_class.id} ({nodes}) on {option.accelerator}"


def _summarise(failures: dict[str, list[str]]) -> str:
    parts = []
    for reason in sorted(failures):
        ids = failures[reason]
        shown = ", ".join(ids[:_MAX_CLASSES_PER_REASON])
        more = len(ids) - _MAX_CLASSES_PER_REASON
        parts.append(f"{shown}{f' and {more} more' if more > 0 else ''}: {reason}")
    return "; ".join(parts)


def _choose(
    spec: ModelDeploymentSpec,
    candidates: Sequence[Candidate],
    best: dict[str, plc.Option],
    keep_engine: str | None,
) -> tuple[EngineName | None, str]:
    by_name: dict[str, Candidate] = {c.engine: c for c in candidates}
    if spec.engine != "auto":
        asked = by_name[spec.engine]
        if asked.matched:
            return asked.engine, f"spec.engine asks for {asked.engine}"
        return None, f"spec.engine asks for {asked.engine}, which cannot run: {asked.reason}"
    matched = [c.engine for c in candidates if c.matched]
    if not matched:
        # The engines that take this model but lack a node say what to add to the cluster.
        near = [
            f"{e.name}: {by_name[e.name].reason}"
            for e in REGISTRY
            if e.check_model(spec.model, False).ok
        ]
        return None, (
            f"no engine can run format {spec.model.format} on this cluster's nodes"
            + (f"; {'; '.join(near)}" if near else " (each engine's reason is in the candidates)")
        )
    if keep_engine in best and keep_engine != matched[0]:
        kept = by_name[keep_engine].engine
        return kept, (
            f"kept {kept}, chosen earlier for this spec (the preference would now be "
            f"{matched[0]}; change the spec to re-decide)"
        )
    return matched[0], (
        f"{matched[0]} is the first engine whose rules hold in the preference order "
        f"({_PREFERENCE_TEXT})"
    )


def _decision(
    spec: ModelDeploymentSpec,
    engine_name: EngineName,
    reason: str,
    option: plc.Option,
    candidates: tuple[Candidate, ...],
) -> Decision:
    profile = option.node_class.profile
    added: dict[str, JsonValue] = {}
    assumptions = list(profile.assumptions) + list(option.notes)
    tp_param = descriptor(engine_name).tensor_parallel_param
    if tp_param and option.gpus:
        added[tp_param] = option.gpus
        user_tp = spec.engine_params.get(tp_param)
        if user_tp is not None and user_tp != option.gpus:
            assumptions.append(
                f"spec.engineParams.{tp_param}={user_tp} overrides the "
                f"{option.gpus} GPUs per replica"
            )
    layers = option.gpu_layers
    plan = PlacementPlan(
        node_class=option.node_class.id,
        nodes=option.node_class.nodes,
        node_selector=plc.node_selector(option, spec.node_selector),
        affinity=plc.affinity(option),
        tolerations=plc.tolerations(option, spec.tolerations),
        accelerator=option.accelerator,
        gpu_resource=profile.gpu_resource if option.gpus else None,
        gpus_per_replica=option.gpus,
        gpu_product=profile.gpu_product if option.gpus else None,
        gpu_memory_mib=profile.gpu_memory_mib if option.gpus else None,
    )
    return Decision(
        engine=engine_name,
        requested=spec.engine != "auto",
        reason=f"{reason}; {_describe(option)}",
        candidates=candidates,
        placement=plan,
        engine_params={**added, **spec.engine_params},
        added_params=added,
        gpu_layers=(
            GpuLayerEstimate(
                n_gpu_layers=layers.n_gpu_layers, fits_fully=layers.fits_fully, reason=layers.reason
            )
            if layers
            else None
        ),
        memory_estimate=option.memory_formula,
        assumptions=tuple(assumptions),
    )
