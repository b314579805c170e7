"""The ModelDeployment CustomResourceDefinition, generated from the API models.

The pydantic models in kubeinfer.api.v1alpha1 are the single source; this module turns
their JSON Schema into the structural OpenAPI v3 subset Kubernetes accepts and adds what
JSON Schema cannot say: CEL rules whose messages name the field, printer columns, and the
status and scale subresources. crds/ holds the output; a unit test keeps them in sync.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from kubeinfer.api import v1alpha1 as api

CRD_FILE = f"crds/{api.CRD_NAME}.yaml"

# Keywords structural schemas do not allow, or that only make sense to pydantic.
_DROPPED_KEYWORDS = frozenset({"title", "additionalProperties", "propertyNames"})

# The CEL rules, by the schema path they sit on. Each message names the field, because
# kubectl shows only the message and the path of the node the rule is attached to.
_GGUF_FILE_RULE = {
    "rule": "self.format != 'gguf' || (has(self.file) && size(self.file) > 0)",
    "message": "spec.model.file is required when spec.model.format is gguf",
    "fieldPath": ".file",
    "reason": "FieldValueRequired",
}
_NAME_RULE = {
    "rule": f"size(self.metadata.name) <= {api.NAME_MAX_LENGTH} && "
    f"self.metadata.name.matches('{api.NAME_PATTERN}')",
    "message": api.NAME_MESSAGE,
}


# On each item of spec.tolerations: the core/v1 rules the apiserver would otherwise apply only
# to the Deployment's pod template, after the ModelDeployment was accepted.
_TOLERATION_RULES = [
    {
        "rule": "!has(self.operator) || self.operator != 'Exists' "
        "|| !has(self.value) || size(self.value) == 0",
        "message": api.TOLERATION_EXISTS_VALUE,
        "fieldPath": ".value",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": "(has(self.key) && size(self.key) > 0) "
        "|| (has(self.operator) && self.operator == 'Exists')",
        "message": api.TOLERATION_EMPTY_KEY,
        "fieldPath": ".key",
        "reason": "FieldValueRequired",
    },
    {
        # The pattern checks the shape; the part lengths need a rule of their own.
        "rule": "!has(self.key) || self.key.matches('^([^/]{1,253}/)?[^/]{0,63}$')",
        "message": api.TOLERATION_KEY_LENGTH,
        "fieldPath": ".key",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        "message": api.TOLERATION_SECONDS_EFFECT,
        "fieldPath": ".tolerationSeconds",
        "reason": "FieldValueInvalid",
    },
]


def _engine_format_rule(engine: str) -> dict[str, str]:
    formats = ", ".join(f"'{f}'" for f in api.ENGINE_FORMATS[engine])
    return {
        "rule": f"!has(self.engine) || self.engine != '{engine}' "
        f"|| self.model.format in [{formats}]",
        "message": api.engine_format_message(engine),
        "fieldPath": ".engine",
    }


_PARENT = f"self.matches(r'{api.PARENT_SEGMENT_PATTERN}')"
_URI_RULES = [
    {"rule": f"self.matches(r'{api.URI_PATTERN}')", "message": api.URI_MESSAGE},
    {"rule": f"!{_PARENT}", "message": api.URI_PARENT_MESSAGE},
]
_FILE_RULES = [{"rule": f"!self.startsWith('/') && !{_PARENT}", "message": api.FILE_MESSAGE}]


def _quantity_rule(maximum: str, message: str) -> dict[str, str]:
    # int-or-string: string() makes both one type; the pattern has already checked the syntax.
    value = "quantity(string(self))"
    return {
        "rule": f"!isQuantity(string(self)) || ({value}.isGreaterThan(quantity('0')) "
        f"&& !{value}.isGreaterThan(quantity('{maximum}')))",
        "message": message,
    }


_RESERVED = ", ".join(f"'{name}'" for name in api.RESERVED_ENV)
_ENV_RULES = [
    {"rule": "has(self.value) != has(self.valueFrom)", "message": api.ENV_SOURCE_MESSAGE},
    {
        "rule": f"!(self.name in [{_RESERVED}])",
        "message": api.RESERVED_ENV_MESSAGE,
        "fieldPath": ".name",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": f"!has(self.value) || !self.name.matches('{api.SECRET_ENV_NAME}')",
        "message": api.SECRET_ENV_MESSAGE,
        "fieldPath": ".value",
        "reason": "FieldValueForbidden",
    },
]
_ENV_FROM_RULES = [
    {"rule": "has(self.secretRef) != has(self.configMapRef)", "message": api.ENV_FROM_MESSAGE}
]


def _spec_rules() -> dict[tuple[str, ...], list[dict[str, str]]]:
    return {
        ("model",): [
            _GGUF_FILE_RULE,
            {
                "rule": "!has(self.cache) || self.uri.startsWith('hf://')",
                "message": api.CACHE_URI_MESSAGE,
                "fieldPath": ".cache",
                "reason": "FieldValueInvalid",
            },
        ],
        ("model", "cache", "size"): [_quantity_rule(api.CACHE_SIZE_MAX, api.CACHE_SIZE_MESSAGE)],
        ("model", "uri"): _URI_RULES,
        ("model", "file"): _FILE_RULES,
        ("resources", "cpu"): [_quantity_rule(api.CPU_MAX, api.CPU_MESSAGE)],
        ("resources", "memory"): [_quantity_rule(api.MEMORY_MAX, api.MEMORY_MESSAGE)],
        ("tolerations", "[]"): _TOLERATION_RULES,
        ("env", "[]"): _ENV_RULES,
        ("envFrom", "[]"): _ENV_FROM_RULES,
        (): [_engine_format_rule(engine) for engine in api.ENGINE_FORMATS],
    }


def structural_schema(model: type[BaseModel], *, with_defaults: bool) -> dict[str, Any]:
    """The model's JSON Schema rewritten into a Kubernetes structural schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions, with_defaults)


def _convert(node: dict[str, Any], defs: dict[str, Any], with_defaults: bool) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs, with_defaults)
    if node.get("x-kubernetes-int-or-string"):
        return {k: v for k, v in node.items() if k not in _DROPPED_KEYWORDS and k != "default"}
    if "anyOf" in node:
        # Optional[X]: absent means "not set". Nulls are not made nullable: the apiserver
        # prunes null values of non-nullable fields, so `file: null` reads as absent.
        kinds = [k for k in node["anyOf"] if k.get("type") != "null"]
        if len(kinds) != 1:
            raise ValueError(f"only Optional unions map to a structural schema: {node}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _convert({**kinds[0], **rest}, defs, with_defaults)
    if node == {}:
        # pydantic's JsonValue: any JSON value, kept as written.
        return {"x-kubernetes-preserve-unknown-fields": True}

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYWORDS or key == "required":
            continue
        if key == "default":
            # An empty-string default says no more than absence, and would be stored in
            # every object (toleration key, value, effect).
            if with_defaults and value not in (None, "") and not isinstance(value, dict):
                out[key] = value
        elif key == "description":
            # Docstrings wrap at the source's width; kubectl explain wraps on its own.
            out[key] = " ".join(value.split())
        elif key == "properties":
            out[key] = {name: _convert(sub, defs, with_defaults) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, with_defaults)
        elif key == "exclusiveMinimum":
            # JSON Schema 2020-12 to OpenAPI v3.0 spelling.
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        else:
            out[key] = value
    if "required" in node:
        out["required"] = sorted(node["required"])
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["type"] = "object"
        out["additionalProperties"] = _convert(additional, defs, with_defaults)
    return out


def _attach_rules(
    schema: dict[str, Any], rules: dict[tuple[str, ...], list[dict[str, str]]]
) -> None:
    for path, node_rules in rules.items():
        node = schema
        for name in path:
            node = node["items"] if name == "[]" else node["properties"][name]
        node["x-kubernetes-validations"] = node_rules


def spec_schema() -> dict[str, Any]:
    schema = structural_schema(api.ModelDeploymentSpec, with_defaults=True)
    _attach_rules(schema, _spec_rules())
    # engineParams values are free-form JSON, which CEL cannot type (the apiserver refuses any
    # rule there): their number is bounded here, their size when the operator parses the spec.
    # Two variables of one name: the apiserver refuses them (and server-side apply needs that).
    env = schema["properties"]["env"]
    env["x-kubernetes-list-type"] = "map"
    env["x-kubernetes-list-map-keys"] = ["name"]
    return schema


def status_schema() -> dict[str, Any]:
    schema = structural_schema(api.ModelDeploymentStatus, with_defaults=False)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Engine", "type": "string", "jsonPath": ".status.engine"},
    {
        "name": "Ready",
        "type": "string",
        "description": "The Available condition: all replicas serve the model.",
        "jsonPath": '.status.conditions[?(@.type=="Available")].status',
    },
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "priority": 1},
    {
        "name": "Ready-Replicas",
        "type": "integer",
        "jsonPath": ".status.readyReplicas",
        "priority": 1,
    },
    {"name": "Nodes", "type": "string", "jsonPath": ".status.placement.nodeClass", "priority": 1},
]


def custom_resource_definition() -> dict[str, Any]:
    """The CRD object, ready to apply."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": api.CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "kubeinfer"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": api.LIST_KIND,
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": [api.SHORT_NAME],
                "categories": ["kubeinfer"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A model served by an inference engine that "
                            "kubeinfer chooses from the model and the cluster's nodes.",
                            "required": ["spec"],
                            "x-kubernetes-validations": [_NAME_RULE],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": f"The API version: {api.API_VERSION}.",
                                },
                                "kind": {
                                    "type": "string",
                                    "description": f"The kind: {api.KIND}.",
                                },
                                # The API server allows nothing but the type here (kubectl
                                # explain shows ObjectMeta's own description).
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": _PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `kubeinfer crd` from kubeinfer.api.v1alpha1; do not edit.\n"
    body = yaml.safe_dump(custom_resource_definition(), sort_keys=True, width=100)
    return header + body
