"""The committed CRD is exactly what the API models generate, and is a valid CRD object."""

from __future__ import annotations

import kubernetes_validate
import yaml
from unit_helpers import KUBERNETES_VERSION, ROOT

from kubeinfer.crd import CRD_FILE, crd_yaml, custom_resource_definition


def test_committed_crd_matches_the_models() -> None:
    committed = (ROOT / CRD_FILE).read_text()
    assert committed == crd_yaml(), "run `kubeinfer crd -o crds/` and commit the result"


def test_crd_is_valid_for_the_pinned_kubernetes() -> None:
    crd = yaml.safe_load(crd_yaml())
    kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


def test_scale_subresource_points_at_replicas_and_selector() -> None:
    (version,) = custom_resource_definition()["spec"]["versions"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_every_cel_message_names_the_field() -> None:
    (version,) = custom_resource_definition()["spec"]["versions"]
    messages: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            messages.extend(rule["message"] for rule in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(version["schema"])
    assert messages
    assert all(message.startswith(("spec.", "metadata.")) for message in messages)


def _undescribed(node: dict[str, object], path: str) -> list[str]:
    missing: list[str] = []
    properties = node.get("properties", {})
    assert isinstance(properties, dict)
    for name, sub in properties.items():
        if not sub.get("description"):
            missing.append(f"{path}.{name}")
        missing += _undescribed(sub, f"{path}.{name}")
    for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        sub = node.get(key)
        if isinstance(sub, dict):
            missing += _undescribed(sub, path + suffix)
    return missing


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    (version,) = custom_resource_definition()["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["description"]
    # metadata: the API server refuses anything but its type (kubectl shows ObjectMeta's).
    assert _undescribed(schema, "") == [".metadata"]
    # The walk itself finds a field without one.
    assert _undescribed({"properties": {"a": {"items": {"properties": {"b": {}}}}}}, "") == [
        ".a",
        ".a[].b",
    ]
