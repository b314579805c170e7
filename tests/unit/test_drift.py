"""Drift: live children against the desired ones, foreign objects, and handing back the
fields other managers took (pure)."""

from __future__ import annotations

import copy
from typing import Any

from test_status import T0, decision_for, model_deployment, rolled_out

from kubeinfer import conditions as c
from kubeinfer.drift import (
    FIELD_MANAGER,
    Action,
    adopted_managed_fields,
    child_state,
    difference,
    foreign_managers,
    plan_child,
)
from kubeinfer.render import ImageSettings, children
from kubeinfer.render.children import RUNTIME_CONFIG_ANNOTATION
from kubeinfer.status import ChildProblem, desired_status

OWNER = "0b8f3c2e-5d2a-4f5e-9a51-6a3c1d2e4f70"
OURS = {
    "manager": FIELD_MANAGER,
    "operation": "Apply",
    "apiVersion": "apps/v1",
    "fieldsType": "FieldsV1",
    "fieldsV1": {"f:spec": {"f:replicas": {}}},
}
STATUS = {
    "manager": "kube-controller-manager",
    "operation": "Update",
    "subresource": "status",
    "apiVersion": "apps/v1",
    "fieldsType": "FieldsV1",
    "fieldsV1": {"f:status": {}},
}
REVISION = {
    "manager": "kube-controller-manager",
    "operation": "Update",
    "apiVersion": "apps/v1",
    "fieldsType": "FieldsV1",
    "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}},
}
EDIT = {
    "manager": "kubectl-edit",
    "operation": "Update",
    "apiVersion": "apps/v1",
    "fieldsType": "FieldsV1",
    "fieldsV1": {
        "f:spec": {
            "f:template": {
                "f:spec": {"f:containers": {'k:{"name":"sidecar"}': {".": {}, "f:image": {}}}}
            }
        }
    },
}


def desired() -> tuple[dict[str, Any], ...]:
    md = model_deployment()
    return tuple(copy.deepcopy(children(md, decision_for(md), ImageSettings())))


def live(obj: dict[str, Any], *managed: dict[str, Any], **meta: Any) -> dict[str, Any]:
    """What the API server gives back: the object, defaults added, uid and managedFields."""
    body = copy.deepcopy(obj)
    body["metadata"] |= {
        "uid": "child-uid",
        "resourceVersion": "42",
        "managedFields": list(managed or (OURS,)),
        **meta,
    }
    if body["kind"] == "Deployment":
        pod = body["spec"]["template"]["spec"]
        pod |= {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always"}
        pod["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
        (config,) = [v for v in pod["volumes"] if v["name"] == "config"]
        config["downwardAPI"]["defaultMode"] = 420
        for item in config["downwardAPI"]["items"]:
            item["fieldRef"]["apiVersion"] = "v1"
    if body["kind"] == "Service":
        body["spec"] |= {"clusterIP": "10.0.0.12", "sessionAffinity": "None"}
    return body


def step(obj: dict[str, Any], body: dict[str, Any] | None, changed_spec: bool = False) -> Any:
    state = child_state(body) if body is not None else None
    return plan_child(obj, state, OWNER, changed_spec=changed_spec)


def test_a_child_as_applied_needs_nothing_even_with_the_apiservers_defaults() -> None:
    for obj in desired():
        assert step(obj, live(obj)).action is Action.NONE, obj["kind"]
        assert step(obj, live(obj), changed_spec=True).action is Action.APPLY


def test_missing_children_are_created() -> None:
    for obj in desired():
        planned = step(obj, None)
        assert planned.action is Action.CREATE and "missing" in planned.why


def test_an_object_this_modeldeployment_does_not_control_is_a_conflict() -> None:
    service = desired()[0]
    users = live(service, ownerReferences=[])
    users["spec"]["selector"] = {"app": "mine"}
    planned = step(service, users)
    assert planned.action is Action.CONFLICT
    assert "Service qwen already exists and has no controller" in planned.why
    other = live(service)
    other["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    assert "has another controller" in step(service, other).why


def test_changed_or_removed_values_are_applied_again() -> None:
    service, deployment = desired()
    edited = live(deployment)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    planned = step(deployment, edited)
    assert planned.action is Action.APPLY
    assert planned.why == (
        "Deployment models/qwen differs at .spec.template.spec.containers[runtime].image"
    )
    config = live(deployment)
    config["spec"]["template"]["metadata"]["annotations"][RUNTIME_CONFIG_ANNOTATION] = "engine: x"
    planned = step(deployment, config)
    assert planned.action is Action.APPLY
    assert planned.why == (
        "Deployment models/qwen differs at .spec.template.metadata.annotations."
        f"{RUNTIME_CONFIG_ANNOTATION}"
    )
    gone = live(deployment)
    del gone["spec"]["template"]["metadata"]["annotations"][RUNTIME_CONFIG_ANNOTATION]
    assert step(deployment, gone).action is Action.APPLY
    relabelled = live(service)
    del relabelled["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    assert step(service, relabelled).action is Action.APPLY


def test_fields_another_manager_owns_are_reclaimed() -> None:
    deployment = desired()[-1]
    sidecar = live(deployment, OURS, STATUS, REVISION, EDIT)
    sidecar["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "x"})
    planned = step(deployment, sidecar)
    assert planned.action is Action.RECLAIM
    assert planned.why == "Deployment models/qwen was changed by kubectl-edit"


def test_only_spec_or_data_owners_count_as_foreign() -> None:
    assert foreign_managers([OURS, STATUS, REVISION]) == ()
    assert foreign_managers([OURS, EDIT, {**EDIT, "manager": "helm"}]) == ("helm", "kubectl-edit")


def test_reclaimed_fields_go_to_kubeinfers_apply_entry_and_the_rest_stays() -> None:
    fields = adopted_managed_fields([OURS, STATUS, REVISION, EDIT])
    assert fields[:2] == [STATUS, REVISION]
    (ours,) = [f for f in fields if f["manager"] == FIELD_MANAGER]
    assert ours["operation"] == "Apply"
    assert ours["fieldsV1"]["f:spec"]["f:replicas"] == {}
    assert (
        'k:{"name":"sidecar"}' in ours["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    )


CREATED = {**OURS, "operation": "Update", "fieldsV1": {"f:spec": {"f:paused": {}}}}


def test_a_created_child_is_adopted_into_the_apply_entry_at_the_next_new_spec() -> None:
    """Children are created with a plain create: kubeinfer's fields sit in an Update entry,
    which an apply would not prune. Not drift, so nothing happens until the next apply (a
    new spec, a repair), which first hands them to the apply entry (so that the apply
    removes what the new spec drops)."""
    deployment = desired()[-1]
    created = live(deployment, CREATED, STATUS, REVISION)
    assert child_state(created).created and child_state(created).foreign_managers == ()
    assert step(deployment, created).action is Action.NONE
    assert step(deployment, created, changed_spec=True).action is Action.RECLAIM
    edited = copy.deepcopy(created)
    edited["spec"]["replicas"] = 5
    assert step(deployment, edited).action is Action.RECLAIM  # a repair adopts them too
    assert step(deployment, live(deployment), changed_spec=True).action is Action.APPLY

    fields = adopted_managed_fields([CREATED, STATUS, REVISION])
    assert fields[:2] == [STATUS, REVISION]
    (ours,) = [f for f in fields if f["manager"] == FIELD_MANAGER]
    assert (ours["operation"], ours["fieldsV1"]) == ("Apply", {"f:spec": {"f:paused": {}}})


def test_quantities_compare_by_value() -> None:
    assert difference({"cpu": "0.5", "memory": "1024Mi"}, {"cpu": "500m", "memory": "1Gi"}) is None
    assert difference({"cpu": "1"}, {"cpu": "2"}) == ".cpu"
    assert difference({"image": "a"}, {"image": "b"}) == ".image"


def test_lists_compare_by_their_merge_key_and_length() -> None:
    want = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    assert difference(want, {"env": list(reversed(want["env"]))}) is None
    assert difference(want, {"env": want["env"][:1]}) == ".env"
    assert difference({"args": ["a", "b"]}, {"args": ["b", "a"]}) == ".args[0]"


def test_a_child_problem_is_never_available_and_degraded_names_it() -> None:
    md = model_deployment()
    problem = ChildProblem(c.NAME_CONFLICT, "Service qwen already exists and has no controller")
    status = desired_status(
        md, None, decision_for(md), "3f2a9c1d7b6e5a40", rolled_out(), [], problem=problem, now=T0
    )
    available = c.find(status.conditions, c.AVAILABLE)
    degraded = c.find(status.conditions, c.DEGRADED)
    assert available and available.status == "False" and available.reason == "NameConflict"
    assert degraded and degraded.status == "True" and problem.message in degraded.message
