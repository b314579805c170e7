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
