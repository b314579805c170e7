"""spec.nodeSelector and spec.tolerations: pinning a ModelDeployment to a node pool.

The case that drives it: one real node, `real-0`, labelled kubeinfer.io/node-kind=real and
tainted kubeinfer.io/real-node=true:NoSchedule, beside simulated nodes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from unit_helpers import KUBERNETES_VERSION, cpu, h100, l4, make_node, spec

from kubeinfer import placement as plc
from kubeinfer.api import v1alpha1 as api
from kubeinfer.api.v1alpha1 import ModelDeployment, ModelDeploymentSpec, Toleration
from kubeinfer.cli import EXIT_NO_ENGINE, main
from kubeinfer.crd import spec_schema
from kubeinfer.decide import Decision, decide, fingerprint
from kubeinfer.nodes import NodeClass, Taint, node_classes, node_facts, select
from kubeinfer.render import ImageSettings, children
from kubeinfer.render.children import pod_toleration


def classes_of(nodes: Iterable[dict[str, Any]]) -> tuple[NodeClass, ...]:
    """Node objects to classes, as the operator groups them."""
    return node_classes(node_facts(node) for node in nodes)


REAL_LABEL = {"kubeinfer.io/node-kind": "real"}
REAL_TAINT = {"key": "kubeinfer.io/real-node", "value": "true", "effect": "NoSchedule"}
REAL_TOLERATION = {"key": "kubeinfer.io/real-node", "operator": "Exists", "effect": "NoSchedule"}
GGUF = {"format": "gguf", "quantization": "Q4_K_M", "file": "m.gguf", "sizeInBillions": 0.5}


def real(name: str = "real-0") -> dict[str, Any]:
    return make_node(name, extra_labels=REAL_LABEL, extra_taints=(REAL_TAINT,))


CLUSTER = [h100("h100-0"), h100("h100-1"), l4("l4-0"), cpu("cpu-0"), cpu("cpu-1"), real()]
PINNED = spec(**GGUF, spec_nodeSelector=REAL_LABEL, spec_tolerations=[REAL_TOLERATION])


def run(spec_dict: dict[str, Any], nodes: list[dict[str, Any]] = CLUSTER) -> Decision:
    return decide(ModelDeploymentSpec.model_validate(spec_dict), map(node_facts, nodes))


def toleration(**fields: Any) -> Toleration:
    return Toleration.model_validate(fields)


# --- node facts and classes ----------------------------------------------------------------


def test_facts_carry_labels_and_classes_keep_them_beside_their_nodes() -> None:
    facts = node_facts(real())
    assert facts.labels["kubeinfer.io/node-kind"] == "real"
    # Labels differ from a plain CPU node's: a relabelled node is a change the controller sees.
    assert node_facts(real("x")) != node_facts(cpu("x"))
    for node_class in classes_of(CLUSTER):
        assert [labels["kubernetes.io/hostname"] for labels in node_class.node_labels] == list(
            node_class.nodes
        )


def test_select_narrows_a_class_to_its_matching_nodes() -> None:
    pool = {"pool": "a"}
    (h100s,) = classes_of([h100("h100-0", extra_labels=pool), h100("h100-1")])
    narrowed = select(h100s, pool)
    assert narrowed is not None
    assert (narrowed.id, narrowed.profile, narrowed.nodes) == (h100s.id, h100s.profile, ("h100-0",))
    assert select(h100s, {}) is h100s
    assert select(h100s, {"pool": "b"}) is None
    # A class built without labels has no node that matches a selector.
    assert select(NodeClass(h100s.id, h100s.profile, h100s.nodes), pool) is None


# --- Kubernetes' toleration rules ----------------------------------------------------------

TAINT = Taint("kubeinfer.io/real-node", "true", "NoSchedule")


@pytest.mark.parametrize(
    ("fields", "tolerated"),
    [
        ({"operator": "Exists"}, True),  # empty key and effect: every taint
        ({"operator": "Exists", "effect": "NoSchedule"}, True),
        ({"operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "kubeinfer.io/real-node", "operator": "Exists"}, True),
        ({"key": "kubeinfer.io/real-node", "value": "true"}, True),  # Equal is the default
        ({"key": "kubeinfer.io/real-node", "operator": "Equal", "value": "false"}, False),
        ({"key": "kubeinfer.io/real-node", "operator": "Equal"}, False),  # "" != "true"
        ({"key": "other", "operator": "Exists"}, False),
        ({"key": "kubeinfer.io/real-node", "value": "true", "effect": "PreferNoSchedule"}, False),
    ],
)
def test_tolerates_follows_kubernetes(fields: dict[str, Any], tolerated: bool) -> None:
    assert plc.tolerates(toleration(**fields), TAINT) is tolerated


def test_spec_tolerations_lift_a_taint_from_a_class() -> None:
    (real_class,) = classes_of([real()])
    option = plc.Option(real_class, "cpu", 0, True, None, None, ())
    assert plc.untolerated_taints(option) == ["kubeinfer.io/real-node=true:NoSchedule"]
    assert plc.untolerated_taints(option, [toleration(**REAL_TOLERATION)]) == []
    assert plc.untolerated_taints(option, [toleration(key="other", operator="Exists")]) == [
        "kubeinfer.io/real-node=true:NoSchedule"
    ]


def test_gpu_tolerations_come_first_and_each_toleration_once() -> None:
    (h100s,) = classes_of([h100()])
    option = plc.Option(h100s, "cuda", 8, True, None, None, ())
    mine = toleration(**REAL_TOLERATION)
    again = toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    assert plc.tolerations(option, [mine, again, mine]) == (again, mine)
    cpu_option = plc.Option(h100s, "cpu", 0, True, None, None, ())
    assert plc.tolerations(cpu_option, [mine]) == (mine,)


# --- the decision --------------------------------------------------------------------------


def test_without_a_selector_the_tainted_real_node_is_left_alone() -> None:
    decision = run(spec(**GGUF, spec_resources={"gpus": 0}))
    assert decision.placement is not None
    assert decision.placement.nodes == ("cpu-0", "cpu-1")


def test_pinned_to_the_real_node() -> None:
    decision = run(PINNED)
    assert decision.engine == "llama.cpp"
    plan = decision.placement
    assert plan is not None
    assert plan.nodes == ("real-0",)
    assert plan.node_selector == {
        "kubeinfer.io/node-kind": "real",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
    }
    assert list(plan.node_selector) == sorted(plan.node_selector)
    assert plan.tolerations == (toleration(**REAL_TOLERATION),)
    assert decision.placement_status().node_selector == plan.node_selector  # type: ignore[union-attr]


def test_selector_without_the_toleration_says_both_reasons() -> None:
    decision = run({**PINNED, "tolerations": []})
    assert decision.engine is None
    (llama,) = [c for c in decision.candidates if c.engine == "llama.cpp"]
    assert "tainted kubeinfer.io/real-node=true:NoSchedule" in llama.reason
    assert "no node matches spec.nodeSelector {kubeinfer.io/node-kind: real}" in llama.reason


def test_selector_that_matches_no_node() -> None:
    decision = run(spec(**GGUF, spec_nodeSelector={"pool": "gone", "a": "b"}))
    assert decision.engine is None
    assert "no node matches spec.nodeSelector {a: b, pool: gone}" in decision.reason


def test_selector_narrows_a_class_to_the_matching_nodes() -> None:
    nodes = [h100("h100-0", extra_labels={"pool": "a"}), h100("h100-1"), l4()]
    decision = run(spec(sizeInBillions=7, spec_nodeSelector={"pool": "a"}), nodes)
    plan = decision.placement
    assert plan is not None
    assert plan.node_class.startswith("linux/amd64 8x NVIDIA-H100")  # the L4 would win otherwise
    assert plan.nodes == ("h100-0",)
    assert plan.node_selector["pool"] == "a"
    assert plan.node_selector["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"


def test_a_tolerate_everything_toleration_opens_every_tainted_node() -> None:
    nodes = [h100(), real()]
    pinned_to_h100 = spec(
        **GGUF,
        spec_resources={"gpus": 0},
        spec_nodeSelector={"kubernetes.io/hostname": "h100-0"},
    )
    assert run(pinned_to_h100, nodes).engine is None  # a CPU pod does not tolerate GPU taints
    opened = run({**pinned_to_h100, "tolerations": [{"operator": "Exists"}]}, nodes)
    assert opened.placement is not None and opened.placement.nodes == ("h100-0",)


def test_same_decision_whatever_the_node_order() -> None:
    nodes = list(CLUSTER)
    first = run(PINNED, nodes)
    for seed in range(5):
        random.Random(seed).shuffle(nodes)
        assert run(PINNED, nodes) == first


def test_fingerprint_covers_the_new_fields_and_keeps_old_ones() -> None:
    base = spec(spec_resources={"gpus": 1})

    def digest(extra: dict[str, Any]) -> str:
        return fingerprint(ModelDeploymentSpec.model_validate({**base, **extra}))

    # The value before these fields existed: upgrading the operator re-decides nothing.
    assert digest({}) == "90e5c58c0af3b096"
    assert digest({"nodeSelector": {}, "tolerations": []}) == digest({})
    assert digest({"nodeSelector": REAL_LABEL}) != digest({})
    assert digest({"tolerations": [REAL_TOLERATION]}) != digest({})
    assert digest({"tolerations": [{**REAL_TOLERATION, "effect": "NoExecute"}]}) != digest(
        {"tolerations": [REAL_TOLERATION]}
    )


# --- rendering -----------------------------------------------------------------------------


def test_pod_template_is_pinned_and_valid() -> None:
    md = ModelDeployment.from_object(
        {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": "real", "namespace": "models", "uid": "u-1"},
            "spec": PINNED,
        }
    )
    objects = children(md, run(PINNED), ImageSettings())
    pod = objects[-1]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {
        "kubeinfer.io/node-kind": "real",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
    }
    assert pod["tolerations"] == [REAL_TOLERATION]
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_gpu_pod_gets_the_gpu_toleration_then_the_spec_ones() -> None:
    wanted = spec(
        sizeInBillions=7,
        spec_resources={"gpus": 1},
        spec_tolerations=[
            {"key": "team", "value": "ml", "effect": "NoExecute", "tolerationSeconds": 0}
        ],
    )
    plan = run(wanted).placement
    assert plan is not None
    assert [pod_toleration(t) for t in plan.tolerations] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "team",
            "operator": "Equal",
            "value": "ml",
            "effect": "NoExecute",
            "tolerationSeconds": 0,
        },
    ]


def test_pod_toleration_leaves_empty_fields_out() -> None:
    assert pod_toleration(toleration(operator="Exists")) == {"operator": "Exists"}


# --- the API and the CRD -------------------------------------------------------------------


def errors(spec_dict: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        ModelDeploymentSpec.model_validate(spec_dict)
    return str(caught.value)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
            api.TOLERATION_EXISTS_VALUE,
        ),
        ({"tolerations": [{"value": "v"}]}, api.TOLERATION_EMPTY_KEY),
        ({"tolerations": [{"key": "k", "tolerationSeconds": 5}]}, api.TOLERATION_SECONDS_EFFECT),
        ({"tolerations": [{"key": "k", "effect": "Sometimes"}]}, "tolerations.0.effect"),
        ({"tolerations": [{"key": "k", "operator": "In"}]}, "tolerations.0.operator"),
        ({"tolerations": [{"key": "-k-"}]}, "tolerations.0.key"),
        ({"tolerations": [{"key": "k", "typo": 1}]}, "tolerations.0.typo"),
        ({"nodeSelector": {"-bad": "x"}}, "nodeSelector"),
        ({"nodeSelector": {"Example.com/x": "y"}}, "nodeSelector"),
        ({"nodeSelector": {"pool": "has space"}}, "nodeSelector.pool"),
        ({"nodeSelector": {"pool": "x" * 64}}, "nodeSelector.pool"),
    ],
)
def test_invalid_pinning_is_refused_naming_the_field(bad: dict[str, Any], message: str) -> None:
    assert message in errors({**spec(), **bad})


def test_valid_pinning_round_trips_by_alias() -> None:
    parsed = ModelDeploymentSpec.model_validate(
        {
            **spec(),
            "nodeSelector": {"example.com/pool": "a", "kubernetes.io/hostname": "real-0"},
            "tolerations": [
                {"operator": "Exists"},
                {"key": "k", "effect": "NoExecute", "tolerationSeconds": 30},
            ],
        }
    )
    assert parsed.tolerations[1].operator == "Equal"
    assert ModelDeploymentSpec.model_validate(parsed.model_dump(by_alias=True)) == parsed


def test_crd_refuses_the_same_tolerations_with_the_same_messages() -> None:
    schema = spec_schema()
    item = schema["properties"]["tolerations"]["items"]
    assert [rule["message"] for rule in item["x-kubernetes-validations"]] == [
        api.TOLERATION_EXISTS_VALUE,
        api.TOLERATION_EMPTY_KEY,
        api.TOLERATION_KEY_LENGTH,
        api.TOLERATION_SECONDS_EFFECT,
    ]
    assert [rule["fieldPath"] for rule in item["x-kubernetes-validations"]] == [
        ".value",
        ".key",
        ".key",
        ".tolerationSeconds",
    ]
    assert item["properties"]["effect"]["enum"] == [
        "",
        "NoSchedule",
        "PreferNoSchedule",
        "NoExecute",
    ]
    assert item["properties"]["operator"] == {
        "default": "Equal",
        "description": item["properties"]["operator"]["description"],
        "enum": ["Exists", "Equal"],
        "type": "string",
    }
    # Empty-string defaults would be stored in every object for nothing.
    assert all("default" not in item["properties"][name] for name in ("key", "value", "effect"))
    values = schema["properties"]["nodeSelector"]["additionalProperties"]
    assert (values["type"], values["maxLength"]) == ("string", 63)


# --- kubeinfer explain ---------------------------------------------------------------------


def explain(
    tmp_path: Path,
    spec_dict: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    *,
    code: int = 0,
) -> str:
    manifest = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": "m"}}
    model = tmp_path / "model.yaml"
    model.write_text(yaml.safe_dump({**manifest, "spec": spec_dict}))
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": CLUSTER}))
    assert main(["explain", "-f", str(model), "--nodes", str(nodes)]) == code
    return capsys.readouterr().out


def test_explain_shows_the_pinning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = explain(tmp_path, PINNED, capsys)
    assert "Nodes:" in out and "(real-0)" in out
    assert "kubeinfer.io/node-kind=real" in out
    assert re.search(r"^Tolerations: +kubeinfer.io/real-node:NoSchedule$", out, re.MULTILINE)


def test_explain_says_which_classes_the_selector_excludes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    selector = spec(**GGUF, spec_nodeSelector={"pool": "gone"})
    out = explain(tmp_path, selector, capsys, code=EXIT_NO_ENGINE)
    assert "no node matches spec.nodeSelector {pool: gone}" in out
