"""The reconcile plan on every condition path: what to write, and the status it ends with."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from unit_helpers import EXAMPLES, load_yaml_documents, make_node

from kubeinfer import conditions as cond
from kubeinfer.api.v1alpha1 import Condition, ModelDeploymentStatus
from kubeinfer.drift import Action, child_state
from kubeinfer.nodes import NodeClass, node_classes, node_facts
from kubeinfer.plan import Conclusion, Observed, Plan, conclude, plan
from kubeinfer.render import ImageSettings
from kubeinfer.render.children import POD_TEMPLATE_HASH
from kubeinfer.status import ChildProblem
from kubeinfer.workload import DeploymentSummary, PodSummary

NOW = datetime(2026, 12, 1, tzinfo=UTC)
IMAGES = ImageSettings()
UID = "md-uid"


def cpu_classes() -> tuple[NodeClass, ...]:
    return node_classes([node_facts(make_node("cpu-0"))])


def gguf_body(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = load_yaml_documents(EXAMPLES / "gguf-cpu.yaml")[0]
    body["metadata"] |= {"namespace": "default", "generation": 1, "uid": UID}
    body["spec"] |= spec
    return body


def conditions_of(done: Conclusion) -> dict[str, Condition]:
    return {c.type: c for c in done.status.conditions}


def run(
    observed: Observed,
    *,
    problem: ChildProblem | None = None,
    cache: Condition | None = None,
    apply_always: bool = True,
) -> tuple[Plan, Conclusion]:
    planned = plan(observed, IMAGES, apply_always=apply_always)
    done = conclude(observed, planned, problem=problem, cache=cache, applied=True, now=NOW)
    return planned, done


def live_children(planned: Plan, *, owner: str = UID) -> dict[str, Any]:
    """The planned children as the API server would hold them, controlled by `owner`."""
    live = {}
    for step in planned.steps:
        body = copy.deepcopy(dict(step.obj))
        body["metadata"] |= {
            "uid": f"{step.obj['kind']}-uid",
            "resourceVersion": "1",
            "ownerReferences": [{"uid": owner, "controller": True}],
        }
        live[step.obj["kind"]] = child_state(body)
    return live


def test_a_spec_the_models_refuse_plans_nothing_and_says_why() -> None:
    body = gguf_body(replicas=-1)
    planned, done = run(Observed(body, None, cpu_classes()))
    assert planned.steps == () and planned.invalid and "spec.replicas" in planned.invalid
    selected = conditions_of(done)[cond.ENGINE_SELECTED]
    assert (selected.status, selected.reason) == ("False", cond.INVALID_SPEC)
    assert conditions_of(done)[cond.AVAILABLE].status == "False"
    assert done.patch is not None and done.result == "changed"


def pytorch_body(**spec: Any) -> dict[str, Any]:
    body = gguf_body(**spec)
    body["spec"]["model"] = {
        "name": "qwen2.5-instruct",
        "format": "pytorch",
        "sizeInBillions": 0.5,
        "uri": "hf://Qwen/Qwen2.5-0.5B-Instruct",
    }
    body["spec"].pop("engineParams", None)  # llama.cpp's
    body["spec"].pop("resources", None)  # gpus: 0 would pin it to CPUs
    return body


def test_no_engine_plans_nothing_and_is_neither_available_nor_progressing() -> None:
    body = pytorch_body(engine="vllm")  # vLLM needs a GPU; the cluster has CPUs only
    planned, done = run(Observed(body, None, cpu_classes()))
    assert planned.steps == () and planned.invalid is None and planned.decision is not None
    found = conditions_of(done)
    assert found[cond.ENGINE_SELECTED].reason == cond.REQUESTED_ENGINE_CANNOT_RUN
    assert found[cond.AVAILABLE].status == found[cond.PROGRESSING].status == "False"
    assert found[cond.READY].status == "False"
    assert done.status.engine is None and done.status.endpoint is None


def test_a_new_model_creates_its_children_in_order_with_the_template_hash() -> None:
    planned, done = run(Observed(gguf_body(), None, cpu_classes()))
    assert [(s.action, s.obj["kind"]) for s in planned.steps] == [
        (Action.CREATE, "Service"),
        (Action.CREATE, "Deployment"),
    ]
    template = planned.steps[-1].obj["spec"]["template"]
    assert planned.template_hash == template["metadata"]["annotations"][POD_TEMPLATE_HASH]
    found = conditions_of(done)
    assert found[cond.ENGINE_SELECTED].reason == cond.ENGINE_CHOSEN
    assert found[cond.AVAILABLE].status == "False"
    assert [e.reason for e in done.events] == [cond.ENGINE_SELECTED]
    assert done.status.decided_for


def test_children_in_line_are_left_alone_unless_the_spec_changed() -> None:
    first, _ = run(Observed(gguf_body(), None, cpu_classes()))
    observed = Observed(gguf_body(), None, cpu_classes(), live=live_children(first))
    refresh = plan(observed, IMAGES, apply_always=False)
    assert [s.action for s in refresh.steps] == [Action.NONE] * 2
    new_spec = plan(observed, IMAGES, apply_always=True)
    assert [s.action for s in new_spec.steps] == [Action.APPLY] * 2
    assert all(s.why == "" for s in new_spec.steps)  # a new spec, not drift


def test_a_drifted_child_is_applied_and_says_where() -> None:
    first, _ = run(Observed(gguf_body(), None, cpu_classes()))
    live = live_children(first)
    deployment = live["Deployment"]
    content = copy.deepcopy(dict(deployment.content))
    content["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    live["Deployment"] = type(deployment)(**{**deployment.__dict__, "content": content})
    refresh = plan(
        Observed(gguf_body(), None, cpu_classes(), live=live), IMAGES, apply_always=False
    )
    step = refresh.steps[-1]
    assert step.action is Action.APPLY
    assert "containers[runtime].image" in step.why


def test_a_name_held_by_another_object_is_a_conflict_and_degrades() -> None:
    first, _ = run(Observed(gguf_body(), None, cpu_classes()))
    observed = Observed(
        gguf_body(), None, cpu_classes(), live=live_children(first, owner="someone-else")
    )
    planned = plan(observed, IMAGES, apply_always=True)
    assert planned.steps[0].action is Action.CONFLICT
    problem = ChildProblem(cond.NAME_CONFLICT, planned.steps[0].why)
    done = conclude(observed, planned, problem=problem, cache=None, applied=False, now=NOW)
    found = conditions_of(done)
    assert (found[cond.DEGRADED].status, found[cond.DEGRADED].reason) == (
        "True",
        cond.NAME_CONFLICT,
    )
    assert found[cond.AVAILABLE].status == "False"
    assert done.result == "error"
    assert any(e.warning and e.reason == cond.NAME_CONFLICT for e in done.events)


def test_a_refused_write_degrades_with_the_api_servers_message() -> None:
    problem = ChildProblem(cond.APPLY_FAILED, "Deployment x: denied (422)")
    _, done = run(Observed(gguf_body(), None, cpu_classes()), problem=problem)
    degraded = conditions_of(done)[cond.DEGRADED]
    assert (degraded.reason, degraded.message) == (cond.APPLY_FAILED, problem.message)
    assert done.result == "error"


def test_a_ready_replica_makes_it_available_and_a_second_look_writes_nothing() -> None:
    first, _ = run(Observed(gguf_body(), None, cpu_classes()))
    ready = DeploymentSummary(
        generation=1,
        observed_generation=1,
        replicas=1,
        ready_replicas=1,
        updated_replicas=1,
        template_hash=first.template_hash,
    )
    pod = PodSummary("p", first.template_hash, "Running", None, None, False)
    observed = Observed(gguf_body(), None, cpu_classes(), ready, (pod,), live_children(first))
    _, done = run(observed, apply_always=False)
    found = conditions_of(done)
    assert found[cond.AVAILABLE].status == found[cond.READY].status == "True"
    again = Observed(gguf_body(), done.status, cpu_classes(), ready, (pod,), observed.live)
    planned = plan(again, IMAGES, apply_always=False)
    settled = conclude(again, planned, problem=None, cache=None, applied=False, now=NOW)
    assert settled.patch is None and settled.events == () and settled.result == "unchanged"


@pytest.mark.parametrize(
    ("reason", "progressing", "degraded"),
    [(cond.DOWNLOADING, "True", None), (cond.DOWNLOAD_FAILED, "False", cond.MODEL_FETCH_FAILED)],
)
def test_a_model_cache_not_filled_holds_the_engine_back(
    reason: str, progressing: str, degraded: str | None
) -> None:
    cache = cond.condition(cond.MODEL_CACHE, "False", reason, "12/40 MiB", generation=1, now=NOW)
    body = gguf_body()
    body["spec"]["model"]["cache"] = {"size": "1Gi"}
    planned, done = run(Observed(body, None, cpu_classes()), cache=cache)
    assert planned.cache is not None  # (PVC, download Job) to ensure
    found = conditions_of(done)
    assert found[cond.MODEL_CACHE] == cache
    assert (found[cond.AVAILABLE].status, found[cond.AVAILABLE].reason) == (
        "False",
        cond.WAITING_FOR_MODEL_CACHE,
    )
    assert found[cond.PROGRESSING].status == progressing
    assert (found[cond.DEGRADED].reason if degraded else None) == degraded


def test_a_filled_cache_only_adds_its_condition() -> None:
    cache = cond.condition(
        cond.MODEL_CACHE, "True", cond.CACHE_READY, "in PVC", generation=1, now=NOW
    )
    body = gguf_body()
    body["spec"]["model"]["cache"] = {"size": "1Gi"}
    _, done = run(Observed(body, None, cpu_classes()), cache=cache)
    found = conditions_of(done)
    assert found[cond.MODEL_CACHE] == cache
    assert found[cond.AVAILABLE].reason != cond.WAITING_FOR_MODEL_CACHE


def test_the_engine_is_kept_while_the_spec_is_unchanged() -> None:
    _, first = run(Observed(pytorch_body(), None, cpu_classes()))
    assert first.status.engine == "transformers"
    # H100 nodes join: vLLM would be preferred now, but the decision made for this spec stands.
    h100 = node_classes(
        [node_facts(make_node("cpu-0")), node_facts(make_node("h100", vendor="nvidia"))]
    )
    planned = plan(Observed(pytorch_body(), first.status, h100), IMAGES, apply_always=False)
    assert planned.decision is not None and planned.decision.engine == "transformers"
    fresh = plan(Observed(pytorch_body(), None, h100), IMAGES, apply_always=False)
    assert fresh.decision is not None and fresh.decision.engine == "vllm"


def test_a_refresh_is_skipped_only_when_it_would_read_the_same() -> None:
    """The refresh queue's fixed point (handlers._inputs): a status tick of a child (a new
    resourceVersion) reads the same; an edit of what kubeinfer wrote, a pod's change or a
    new ModelDeployment version does not."""
    from kubeinfer.handlers import _inputs

    planned, _ = run(Observed(body=gguf_body(), previous=None, classes=cpu_classes()))
    live = live_children(planned)
    base = Observed(gguf_body(), None, cpu_classes(), live=live)
    same = _inputs(base)

    ticked = {
        k: child_state(
            {**_live_body(s), "metadata": {**_live_body(s)["metadata"], "resourceVersion": "99"}}
        )
        for k, s in live.items()
    }
    assert _inputs(Observed(base.body, None, base.classes, live=ticked)) == same

    edited = dict(live)
    deployment = _live_body(live["Deployment"])
    deployment["spec"] = {**deployment["spec"], "replicas": 7}
    edited["Deployment"] = child_state(deployment)
    assert _inputs(Observed(base.body, None, base.classes, live=edited)) != same

    pod = PodSummary("p", None, "Pending", None, None, False)
    assert _inputs(Observed(base.body, None, base.classes, pods=(pod,), live=live)) != same

    newer = gguf_body()
    newer["metadata"]["resourceVersion"] = "2"
    assert _inputs(Observed(newer, None, base.classes, live=live)) != same


def _live_body(state: Any) -> dict[str, Any]:
    return {
        "kind": state.kind,
        "metadata": {
            "name": state.name,
            "uid": state.uid,
            "resourceVersion": state.resource_version,
            "labels": dict(state.labels),
            "ownerReferences": [{"uid": state.controller_uid, "controller": True}],
        },
        **copy.deepcopy(dict(state.content)),
    }


def test_a_rendering_is_reused_while_its_sources_are_the_same() -> None:
    from kubeinfer.plan import Renders

    renders = Renders()
    body = gguf_body()
    body["metadata"] |= {"resourceVersion": "1", "generation": 1}
    first = plan(Observed(body, None, cpu_classes()), IMAGES, apply_always=False, renders=renders)
    assert [s.action for s in first.steps] == [Action.CREATE, Action.CREATE]

    # The children appeared: the same rendering, compared with them (no step left stale).
    classes = cpu_classes()
    again = plan(
        Observed(body, None, classes, live=live_children(first)),
        IMAGES,
        apply_always=False,
        renders=renders,
    )
    assert [s.action for s in again.steps] == [Action.NONE, Action.NONE]
    # cpu_classes() built anew: equal classes, the same rendering.
    assert again.steps[-1].obj is first.steps[-1].obj

    # The operator's own status write: a new resourceVersion, and the engine the plan chose
    # now kept by the status; nothing rendered changed.
    written = copy.deepcopy(body)
    written["metadata"]["resourceVersion"] = "2"
    assert first.decision is not None and first.decision.engine == "llama.cpp"
    own = ModelDeploymentStatus(engine="llama.cpp", decidedFor=first.decided_for)
    after_status = plan(
        Observed(written, own, classes), IMAGES, apply_always=False, renders=renders
    )
    assert after_status.steps[-1].obj is first.steps[-1].obj
    # Another engine in the status for this spec (kept from before the nodes changed): the
    # decision is made again (here transformers cannot load GGUF, so llama.cpp again).
    other = own.model_copy(update={"engine": "transformers"})
    kept = plan(Observed(written, other, classes), IMAGES, apply_always=False, renders=renders)
    assert kept.steps[-1].obj is not first.steps[-1].obj

    # A label is copied nowhere today, but it is the object's metadata: rendered anew.
    labelled = copy.deepcopy(body)
    labelled["metadata"]["labels"] = {"team": "a"}
    relabelled = plan(
        Observed(labelled, None, classes), IMAGES, apply_always=False, renders=renders
    )
    assert relabelled.steps[-1].obj is not first.steps[-1].obj

    newer = copy.deepcopy(body)
    newer["metadata"] |= {"resourceVersion": "3", "generation": 2}
    newer["spec"]["replicas"] = 3
    changed = plan(Observed(newer, None, classes), IMAGES, apply_always=False, renders=renders)
    assert changed.steps[-1].obj["spec"]["replicas"] == 3


def test_a_child_found_in_line_is_compared_again_whole_not_walked() -> None:
    from dataclasses import replace

    from kubeinfer.plan import Renders

    renders = Renders()
    body = gguf_body()
    body["metadata"] |= {"resourceVersion": "1", "generation": 1}
    first = plan(Observed(body, None, cpu_classes()), IMAGES, apply_always=False, renders=renders)
    live = live_children(first)
    classes = cpu_classes()

    def planned(children: dict[str, Any]) -> list[tuple[Action, str]]:
        got = plan(
            Observed(body, None, classes, live=children),
            IMAGES,
            apply_always=False,
            renders=renders,
        )
        return [(s.action, s.why) for s in got.steps]

    assert planned(live) == [(Action.NONE, ""), (Action.NONE, "")]
    # A status write: a new resourceVersion, the same content: still in line.
    ticked = {k: replace(s, resource_version="2") for k, s in live.items()}
    assert planned(ticked) == [(Action.NONE, ""), (Action.NONE, "")]
    # A hand edit is found, however often the same content was seen before.
    deployment = ticked["Deployment"]
    edited_content = copy.deepcopy(dict(deployment.content))
    edited_content["spec"]["replicas"] = 7
    edited = ticked | {"Deployment": replace(deployment, content=edited_content)}
    actions = planned(edited)
    assert actions[0] == (Action.NONE, "")
    assert actions[1][0] is not Action.NONE and "spec.replicas" in actions[1][1]
    # Put back: in line again.
    assert planned(ticked) == [(Action.NONE, ""), (Action.NONE, "")]
