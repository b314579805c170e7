"""ModelDeployment v1alpha1: the spec a user writes and the status the operator reports.

These models are the single source of the API: the CRD in crds/ is generated from them
(kubeinfer.crd) and the operator parses every object through them. Field names are the
wire names (camelCase aliases); Python code uses snake_case (populate_by_name).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

GROUP = "kubeinfer.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
LIST_KIND = "ModelDeploymentList"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAME = "md"
CRD_NAME = f"{PLURAL}.{GROUP}"

ModelFormat = Literal["pytorch", "gptq", "awq", "fp4", "fp8", "bnb", "gguf", "mlx"]
MODEL_FORMATS: tuple[str, ...] = ("pytorch", "gptq", "awq", "fp4", "fp8", "bnb", "gguf", "mlx")
EngineName = Literal["llama.cpp", "vllm", "sglang", "transformers", "mlx"]
EngineChoice = Literal["auto", "llama.cpp", "vllm", "sglang", "transformers", "mlx"]
Ability = Literal["chat", "generate", "vision", "embed"]
ConditionStatus = Literal["True", "False", "Unknown"]

# The formats each engine can load at all; a request outside them can never work, so the
# CRD refuses it at the door. Node- and list-dependent rules live in kubeinfer.engines.
ENGINE_FORMATS: dict[str, tuple[str, ...]] = {
    "llama.cpp": ("gguf",),
    "vllm": ("pytorch", "gptq", "awq", "fp4", "fp8", "bnb"),
    "sglang": ("pytorch", "gptq", "awq", "fp8", "bnb"),
    "transformers": ("pytorch", "gptq", "awq", "bnb", "fp4"),
    "mlx": ("mlx",),
}
# engineParams keys: YAML turns keys such as `1:`, `-1:`, `.5:`, `yes:` or `null:` into the
# strings "1", "-1", ".5", "true", "null" before the apiserver sees them; none of those is a
# parameter name, so the operator and `kubeinfer explain` refuse them when they parse the
# spec. (The CRD cannot: CEL has no type for the free-form values, so no rule can see the keys.)
NON_NAME_KEY_PREFIXES: tuple[str, ...] = tuple("0123456789+-.")
NON_NAME_KEYS: tuple[str, ...] = ("true", "false", "null")
# The Kubernetes resource.Quantity syntax, as the apiserver's own OpenAPI states it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


# Label syntax as Kubernetes checks it (k8s.io/apimachinery/pkg/util/validation): a key is
# an optional DNS-subdomain prefix (253) and a name (63); a value is a name or empty.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_VALUE_PATTERN = f"^({_LABEL_NAME})?$"
LABEL_KEY_MAX_LENGTH = 253 + 1 + 63
# The shape only; the part lengths are checked in _label_key.
TOLERATION_KEY_PATTERN = f"^(({_DNS_SUBDOMAIN}/)?{_LABEL_NAME})?$"
TaintEffect = Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"]
# The core/v1 rules for a toleration, one message each (the CRD's CEL rules say the same).
TOLERATION_EXISTS_VALUE = "spec.tolerations[*].value must be empty when operator is Exists"
TOLERATION_EMPTY_KEY = (
    "spec.tolerations[*].key may be empty only with operator Exists (which tolerates every taint)"
)
TOLERATION_SECONDS_EFFECT = "spec.tolerations[*].tolerationSeconds needs effect NoExecute"


def _label_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    valid = (
        len(name) <= 63
        and re.fullmatch(_LABEL_NAME, name) is not None
        and (not slash or (len(prefix) <= 253 and re.fullmatch(_DNS_SUBDOMAIN, prefix) is not None))
    )
    if not valid:
        raise ValueError(
            f"{key!r} is not a label key ([prefix/]name: a DNS subdomain of up to 253 "
            "characters, then up to 63 of A-Z, a-z, 0-9, '-', '_', '.')"
        )
    return key


def _label_key_or_empty(key: str) -> str:
    return _label_key(key) if key else key


# Map keys cannot carry a schema in a structural CRD: checked when the operator parses the
# spec. Values (and toleration keys) carry theirs, so the apiserver checks them too.
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_PATTERN)]


def _quantity_to_text(value: object) -> object:
    # YAML reads `cpu: 4` as an int; Kubernetes treats quantities as int-or-string.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


# The schema is the one Kubernetes publishes for resource.Quantity (int or string).
Quantity = Annotated[
    str,
    StringConstraints(pattern=QUANTITY_PATTERN),
    BeforeValidator(_quantity_to_text),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def _param_name(key: str) -> str:
    if not key or key.startswith(NON_NAME_KEY_PREFIXES) or key in NON_NAME_KEYS:
        raise ValueError(
            f"key {key!r} is not a parameter name (a number, boolean or null in YAML?)"
        )
    return key


ParamName = Annotated[str, AfterValidator(_param_name)]


class _Spec(BaseModel):
    """What users write: unknown fields are an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class _Observed(BaseModel):
    """What the operator or the apiserver writes: newer fields are tolerated."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class ModelSpec(_Spec):
    name: str = Field(
        min_length=1,
        description="Model name; built-in names are matched against the engines' support "
        "lists (case-insensitive). Also the served (OpenAI) model name.",
    )
    family: str | None = Field(
        default=None,
        description="Custom models: the built-in family they belong to (matched instead "
        "of the name).",
    )
    format: ModelFormat = Field(description="Weights format.")
    quantization: str = Field(
        default="none",
        min_length=1,
        description="none, Int3, Int4, Int8, or a GGUF type such as Q4_K_M.",
    )
    size_in_billions: float | None = Field(
        default=None,
        gt=0,
        alias="sizeInBillions",
        description="Parameter count in billions; drives the GPU memory estimate.",
    )
    abilities: tuple[Ability, ...] = Field(default=("chat",), description="What it serves.")
    uri: str = Field(
        min_length=1,
        description="hf://org/repo[/file], pvc://claim/path, or an absolute path in the image.",
    )
    file: str | None = Field(
        default=None, description="The file inside the repo or directory (GGUF: required)."
    )
    architecture: str | None = Field(
        default=None,
        description="Hugging Face architecture (e.g. Qwen2ForCausalLM); lets SGLang match "
        "models whose family is not in kubeinfer's table.",
    )

    @model_validator(mode="after")
    def _gguf_names_its_file(self) -> ModelSpec:
        if self.format == "gguf" and not self.file:
            raise ValueError("spec.model.file is required when spec.model.format is gguf")
        return self


class Resources(_Spec):
    gpus: int | None = Field(
        default=None,
        ge=0,
        description="GPUs per replica; 0 runs on CPU; unset lets kubeinfer choose from the "
        "memory estimate.",
    )
    gpu_product: str | None = Field(
        default=None,
        alias="gpuProduct",
        description="Preferred GPU product (case-insensitive substring of the node's "
        "product label, e.g. H100).",
    )
    cpu: Quantity | None = Field(default=None, description="CPU request per replica.")
    memory: Quantity | None = Field(
        default=None, description="Memory request and limit per replica."
    )


class Toleration(_Spec):
    """core/v1 Toleration: a node taint the pods accept (Kubernetes' matching rules)."""

    key: Annotated[
        str,
        StringConstraints(max_length=LABEL_KEY_MAX_LENGTH, pattern=TOLERATION_KEY_PATTERN),
        AfterValidator(_label_key_or_empty),
    ] = Field(default="", description="The taint key; empty with operator Exists: every key.")
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", description="Equal compares the value; Exists accepts any value."
    )
    value: LabelValue = Field(default="", description="The taint value (operator Equal).")
    effect: TaintEffect = Field(
        default="", description="NoSchedule, PreferNoSchedule or NoExecute; empty: every effect."
    )
    toleration_seconds: int | None = Field(
        default=None,
        alias="tolerationSeconds",
        description="With effect NoExecute: how long the pod stays after the taint appears.",
    )

    @model_validator(mode="after")
    def _core_v1_rules(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError(TOLERATION_EXISTS_VALUE)
        if not self.key and self.operator != "Exists":
            raise ValueError(TOLERATION_EMPTY_KEY)
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError(TOLERATION_SECONDS_EFFECT)
        return self


class ModelDeploymentSpec(_Spec):
    model: ModelSpec
    engine: EngineChoice = Field(default="auto", description="auto or an engine name.")
    engine_params: dict[ParamName, JsonValue] = Field(
        default_factory=dict,
        alias="engineParams",
        description="Passed to the engine; llama.cpp nested keys with dots (sampling.top_k).",
    )
    resources: Resources = Resources()
    replicas: int = Field(default=1, ge=0, description="Number of serving pods.")
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        alias="nodeSelector",
        description="Only nodes with all these labels are considered (and the pods are pinned "
        "to them).",
    )
    tolerations: tuple[Toleration, ...] = Field(
        default_factory=tuple,
        description="Node taints the pods tolerate (core/v1 Toleration), added to the GPU "
        "tolerations kubeinfer sets.",
    )

    @model_validator(mode="after")
    def _engine_can_load_format(self) -> ModelDeploymentSpec:
        if self.engine != "auto" and self.model.format not in ENGINE_FORMATS[self.engine]:
            raise ValueError(engine_format_message(self.engine))
        return self


def engine_format_message(engine: str) -> str:
    formats = ", ".join(ENGINE_FORMATS[engine])
    return f"spec.engine {engine} needs spec.model.format to be one of: {formats}"


class Candidate(_Observed):
    """One engine's line in the decision trace."""

    engine: EngineName
    matched: bool
    reason: str = Field(description="The rule that decided it.")


class Placement(_Observed):
    """Where the chosen engine runs, as the status reports it."""

    node_class: str = Field(alias="nodeClass", description="The chosen class of nodes.")
    nodes: int = Field(ge=0, description="Nodes in that class.")
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    accelerator: Literal["cpu", "cuda", "metal"]
    gpu_resource: str | None = Field(default=None, alias="gpuResource")
    gpus_per_replica: int = Field(default=0, ge=0, alias="gpusPerReplica")
    gpu_product: str | None = Field(default=None, alias="gpuProduct")


class Condition(_Observed):
    """The standard Kubernetes condition (metav1.Condition)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    last_transition_time: str = Field(alias="lastTransitionTime")


class ModelDeploymentStatus(_Observed):
    engine: EngineName | None = None
    decided_for: str | None = Field(
        default=None,
        alias="decidedFor",
        description="Fingerprint of the spec fields the decision reads (all but replicas); "
        "the engine is kept while it matches, so new nodes or scaling never switch engines.",
    )
    candidates: tuple[Candidate, ...] = ()
    placement: Placement | None = None
    endpoint: str | None = None
    replicas: int = 0
    ready_replicas: int = Field(default=0, alias="readyReplicas")
    selector: str | None = Field(
        default=None, description="Label selector of the pods (for the scale subresource)."
    )
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    conditions: tuple[Condition, ...] = ()


# Children (the Service above all) are named after the ModelDeployment, so its name must
# be a DNS-1035 label.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX_LENGTH = 63
NAME_MESSAGE = (
    "metadata.name must be at most 63 characters of a-z, 0-9 and '-', starting with a "
    "letter and ending with a letter or digit (the Service is named after it)"
)


class ObjectMeta(_Observed):
    """The part of metav1.ObjectMeta kubeinfer reads."""

    name: str = Field(pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ModelDeployment(_Observed):
    api_version: Literal["kubeinfer.io/v1alpha1"] = Field(
        default="kubeinfer.io/v1alpha1", alias="apiVersion"
    )
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> ModelDeployment:
        """Parse a manifest or an API object (raises pydantic.ValidationError)."""
        return cls.model_validate(obj)
