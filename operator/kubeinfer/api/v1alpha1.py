"""ModelDeployment v1alpha1: the spec a user writes and the status the operator reports.

These models are the single source of the API: the CRD in crds/ is generated from them
(kubeinfer.crd) and the operator parses every object through them. Field names are the
wire names (camelCase aliases); Python code uses snake_case (populate_by_name).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
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

from kubeinfer.engines import REGISTRY, Accelerator, EngineName

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
EngineChoice = Literal["auto", EngineName]  # Literal flattens: "auto" and every engine name
Ability = Literal["chat", "generate", "vision", "embed"]
ConditionStatus = Literal["True", "False", "Unknown"]

# The formats each engine can load at all (from its descriptor); a request outside them can
# never work, so the CRD refuses it at the door. Node- and list-dependent rules live in
# kubeinfer.engines.
ENGINE_FORMATS: dict[str, tuple[str, ...]] = {e.name: e.formats for e in REGISTRY}
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

# Bounds that keep every object kubeinfer writes (the pod template's runtime-config annotation
# holds the engine parameters, and a pod's annotations may hold 256 KiB in all; the status
# holds the spec's trace) under the API server's limits.
NAME_TEXT_MAX = 253  # model name, family, architecture, GPU product
URI_MAX = 2048
FILE_MAX = 1024
QUANTIZATION_MAX = 64
ENGINE_PARAMS_MAX = 128  # parameters
ENGINE_PARAMS_BYTES_MAX = 64 * 1024  # all of them as JSON; CEL cannot see into them
ENGINE_PARAMS_SIZE_MESSAGE = (
    f"spec.engineParams must be at most {ENGINE_PARAMS_BYTES_MAX // 1024} KiB as JSON"
)
SELECTOR_MAX = 64
TOLERATIONS_MAX = 32
GPUS_MAX = 64  # per replica; no node has more
REPLICAS_MAX = 1000
CPU_MAX = "1024"  # cores per replica
MEMORY_MAX = "16Ti"  # per replica
# The three model sources (the runtime's fetcher reads the same grammar): a hub repo, a path on
# a PersistentVolumeClaim (a DNS-1123 subdomain claim name), or an absolute path in the image.
# A hub URI may pin a revision (a branch, tag or commit): hf://org/repo@revision[/file].
REVISION_PATTERN = r"[A-Za-z0-9][-A-Za-z0-9_.]*"
_HF_URI = (
    r"hf://[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*"
    f"(@{REVISION_PATTERN})?" + r"(/[^/]+)*/?"
)
_PVC_URI = r"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(/[^/]+)*/?"
URI_PATTERN = f"^({_HF_URI}|{_PVC_URI}|/.*)$"
# A `..` segment would leave the repo, the claim or the model directory.
PARENT_SEGMENT_PATTERN = r"(^|/)\.\.(/|$)"
URI_MESSAGE = (
    "spec.model.uri must be hf://org/repo[@revision][/file], pvc://<claim>/<path> (claim: a "
    "DNS-1123 name) or an absolute path in the image"
)
URI_PARENT_MESSAGE = "spec.model.uri must not contain a '..' segment"
FILE_MESSAGE = "spec.model.file must be a relative path without a '..' segment"
CPU_MESSAGE = f"spec.resources.cpu must be more than 0 and at most {CPU_MAX}"
MEMORY_MESSAGE = f"spec.resources.memory must be more than 0 and at most {MEMORY_MAX}"
_QUANTITY_SUFFIXES: dict[str, int | Decimal] = {
    "": 1,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY_PARTS = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def quantity_value(text: str) -> Decimal | None:
    """A resource.Quantity as a number (None when it is not one)."""
    match = _QUANTITY_PARTS.match(text)
    if not match or match.group(2) not in _QUANTITY_SUFFIXES:
        return None
    try:
        return Decimal(match.group(1)) * Decimal(_QUANTITY_SUFFIXES[match.group(2)])
    except InvalidOperation:
        return None


def _bounded(maximum: str, message: str) -> Any:
    def check(text: str) -> str:
        value = quantity_value(text)
        if value is not None and not 0 < value <= quantity_value(maximum):  # type: ignore[operator]
            raise ValueError(message)
        return text

    return AfterValidator(check)


def _model_uri(uri: str) -> str:
    if not re.match(URI_PATTERN, uri):
        raise ValueError(URI_MESSAGE)
    if re.search(PARENT_SEGMENT_PATTERN, uri):
        raise ValueError(URI_PARENT_MESSAGE)
    return uri


def _model_file(file: str) -> str:
    if file.startswith("/") or re.search(PARENT_SEGMENT_PATTERN, file):
        raise ValueError(FILE_MESSAGE)
    return file


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
TOLERATION_KEY_LENGTH = (
    "spec.tolerations[*].key must be a prefix of at most 253 characters and a name of at most 63"
)


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


CACHE_SIZE_MAX = "1Pi"
CACHE_SIZE_MESSAGE = f"spec.model.cache.size must be more than 0 and at most {CACHE_SIZE_MAX}"
CACHE_URI_MESSAGE = "spec.model.cache needs an hf:// spec.model.uri (other sources are volumes)"


class ModelCache(_Spec):
    """A PersistentVolumeClaim that holds the weights, filled once by a download Job."""

    size: Annotated[Quantity, _bounded(CACHE_SIZE_MAX, CACHE_SIZE_MESSAGE)] = Field(
        description="The claim's storage request (the weights and a margin)."
    )
    storage_class_name: str | None = Field(
        default=None,
        alias="storageClassName",
        max_length=253,
        description="The claim's StorageClass; unset: the cluster's default.",
    )
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = Field(
        default="ReadWriteOnce",
        alias="accessMode",
        description="ReadWriteMany lets replicas on several nodes share it; ReadWriteOnce keeps "
        "them on the node that mounts it.",
    )


class ModelSpec(_Spec):
    """The model to serve: what it is (name or family, format, quantization, size) and where
    its weights are."""

    name: str = Field(
        min_length=1,
        max_length=NAME_TEXT_MAX,
        description="Model name; built-in names are matched against the engines' support "
        "lists (case-insensitive). Also the served (OpenAI) model name.",
    )
    family: str | None = Field(
        default=None,
        max_length=NAME_TEXT_MAX,
        description="Custom models: the built-in family they belong to (matched instead "
        "of the name).",
    )
    format: ModelFormat = Field(description="Weights format.")
    quantization: str = Field(
        default="none",
        min_length=1,
        max_length=QUANTIZATION_MAX,
        description="none, Int3, Int4, Int8, or a GGUF type such as Q4_K_M.",
    )
    size_in_billions: float | None = Field(
        default=None,
        gt=0,
        alias="sizeInBillions",
        description="Parameter count in billions; drives the GPU memory estimate.",
    )
    abilities: tuple[Ability, ...] = Field(default=("chat",), description="What it serves.")
    uri: Annotated[str, AfterValidator(_model_uri)] = Field(
        min_length=1,
        max_length=URI_MAX,
        description="hf://org/repo[@revision][/file] (a branch, tag or commit), "
        "pvc://claim/path, or an absolute path in the image.",
    )
    file: Annotated[str, AfterValidator(_model_file)] | None = Field(
        default=None,
        max_length=FILE_MAX,
        description="The file inside the repo or directory, a relative path (GGUF: required).",
    )
    architecture: str | None = Field(
        default=None,
        max_length=NAME_TEXT_MAX,
        description="Hugging Face architecture (e.g. Qwen2ForCausalLM); lets SGLang match "
        "models whose family is not in kubeinfer's table.",
    )
    cache: ModelCache | None = Field(
        default=None,
        description="hf:// only: keep the weights in a PersistentVolumeClaim shared by the "
        "ModelDeployments of the same source, filled once by a download Job before the engine "
        "pods start. Unset: each pod downloads into a size-limited emptyDir.",
    )

    @model_validator(mode="after")
    def _gguf_names_its_file(self) -> ModelSpec:
        if self.format == "gguf" and not self.file:
            raise ValueError("spec.model.file is required when spec.model.format is gguf")
        return self

    @model_validator(mode="after")
    def _cache_is_for_the_hub(self) -> ModelSpec:
        if self.cache is not None and not self.uri.startswith("hf://"):
            raise ValueError(CACHE_URI_MESSAGE)
        return self


class Resources(_Spec):
    """What each replica gets; unset fields are chosen from the decision and the estimate."""

    gpus: int | None = Field(
        default=None,
        ge=0,
        le=GPUS_MAX,
        description="GPUs per replica; 0 runs on CPU; unset lets kubeinfer choose from the "
        "memory estimate.",
    )
    gpu_product: str | None = Field(
        default=None,
        max_length=NAME_TEXT_MAX,
        alias="gpuProduct",
        description="Preferred GPU product (case-insensitive substring of the node's "
        "product label, e.g. H100).",
    )
    cpu: Annotated[Quantity, _bounded(CPU_MAX, CPU_MESSAGE)] | None = Field(
        default=None, description="CPU request per replica."
    )
    memory: Annotated[Quantity, _bounded(MEMORY_MAX, MEMORY_MESSAGE)] | None = Field(
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


# spec.env / spec.envFrom: core/v1 EnvVar and EnvFromSource, the parts a runtime needs.
ENV_MAX = 64
ENV_FROM_MAX = 16
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# The runtime's own variables: its read-only root filesystem depends on them.
RESERVED_ENV = ("HOME", "TMPDIR")
RESERVED_ENV_MESSAGE = f"spec.env must not set {' or '.join(RESERVED_ENV)} (kubeinfer sets them)"
# A credential written as a literal would sit in the spec, the Deployment and kopf's records:
# names like these must come from a Secret.
SECRET_ENV_NAME = r"(?i).*(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL).*"
SECRET_ENV_MESSAGE = (
    "spec.env[*].value must not hold a credential (a name with TOKEN, SECRET, PASSWORD, "
    "API_KEY or CREDENTIAL): use valueFrom.secretKeyRef"
)
ENV_SOURCE_MESSAGE = "spec.env[*] needs exactly one of value or valueFrom"
ENV_FROM_MESSAGE = "spec.envFrom[*] needs exactly one of secretRef or configMapRef"
ObjectName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=f"^{_DNS_SUBDOMAIN}$")
]


class KeySelector(_Spec):
    """A key of a Secret or ConfigMap in the ModelDeployment's namespace."""

    name: ObjectName = Field(description="The Secret or ConfigMap.")
    key: str = Field(min_length=1, max_length=253, description="The key in it.")
    optional: bool | None = Field(default=None, description="Start even when it is missing.")


class FieldSelector(_Spec):
    """A field of the pod (core/v1 ObjectFieldSelector)."""

    field_path: str = Field(
        alias="fieldPath", min_length=1, max_length=256, description="e.g. metadata.name"
    )


class EnvVarSource(_Spec):
    """Where a variable's value comes from: exactly one source."""

    secret_key_ref: KeySelector | None = Field(
        default=None, alias="secretKeyRef", description="A key of a Secret (credentials)."
    )
    config_map_key_ref: KeySelector | None = Field(
        default=None, alias="configMapKeyRef", description="A key of a ConfigMap."
    )
    field_ref: FieldSelector | None = Field(
        default=None, alias="fieldRef", description="A field of the pod."
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        given = [self.secret_key_ref, self.config_map_key_ref, self.field_ref]
        if sum(x is not None for x in given) != 1:
            raise ValueError(
                "spec.env[*].valueFrom needs exactly one of secretKeyRef, configMapKeyRef, fieldRef"
            )
        return self


class EnvVar(_Spec):
    """core/v1 EnvVar for the runtime container (HF_TOKEN from a Secret, proxies, ...)."""

    name: str = Field(
        min_length=1, max_length=256, pattern=ENV_NAME_PATTERN, description="Variable name."
    )
    value: str | None = Field(
        default=None,
        max_length=32 * 1024,
        description="A literal value (not for credentials: use valueFrom.secretKeyRef).",
    )
    value_from: EnvVarSource | None = Field(
        default=None, alias="valueFrom", description="The value from a Secret, ConfigMap or field."
    )

    @model_validator(mode="after")
    def _checked(self) -> EnvVar:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(ENV_SOURCE_MESSAGE)
        if self.name in RESERVED_ENV:
            raise ValueError(RESERVED_ENV_MESSAGE)
        if self.value is not None and re.fullmatch(SECRET_ENV_NAME, self.name):
            raise ValueError(SECRET_ENV_MESSAGE)
        return self


class EnvFromRef(_Spec):
    """A Secret or ConfigMap in the ModelDeployment's namespace."""

    name: ObjectName = Field(description="Its name.")
    optional: bool | None = Field(default=None, description="Start even when it is missing.")


class EnvFromSource(_Spec):
    """core/v1 EnvFromSource: every key of a Secret or ConfigMap as a variable."""

    prefix: str | None = Field(
        default=None,
        max_length=256,
        pattern=ENV_NAME_PATTERN,
        description="Put before every key to make the variable's name.",
    )
    secret_ref: EnvFromRef | None = Field(
        default=None, alias="secretRef", description="Every key of this Secret."
    )
    config_map_ref: EnvFromRef | None = Field(
        default=None, alias="configMapRef", description="Every key of this ConfigMap."
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError(ENV_FROM_MESSAGE)
        return self


class ModelDeploymentSpec(_Spec):
    """What to serve and with what: the model, the engine (auto: kubeinfer decides from the
    model and the nodes), its parameters, resources, replicas and node constraints."""

    model: ModelSpec
    engine: EngineChoice = Field(default="auto", description="auto or an engine name.")
    engine_params: dict[ParamName, JsonValue] = Field(
        default_factory=dict,
        alias="engineParams",
        max_length=ENGINE_PARAMS_MAX,
        description="Passed to the engine; llama.cpp nested keys with dots (sampling.top_k).",
    )
    resources: Resources = Field(
        default=Resources(),
        description="GPUs, GPU product, CPU and memory per replica; unset: chosen by kubeinfer.",
    )
    replicas: int = Field(default=1, ge=0, le=REPLICAS_MAX, description="Number of serving pods.")
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        alias="nodeSelector",
        max_length=SELECTOR_MAX,
        description="Only nodes with all these labels are considered (and the pods are pinned "
        "to them).",
    )
    tolerations: tuple[Toleration, ...] = Field(
        default_factory=tuple,
        max_length=TOLERATIONS_MAX,
        description="Node taints the pods tolerate (core/v1 Toleration), added to the GPU "
        "tolerations kubeinfer sets.",
    )
    env: tuple[EnvVar, ...] = Field(
        default_factory=tuple,
        max_length=ENV_MAX,
        description="Environment of the runtime container (core/v1 EnvVar): HF_TOKEN from a "
        "Secret for gated hub repos, proxies, engine settings. Also used to fetch the model.",
    )
    env_from: tuple[EnvFromSource, ...] = Field(
        default_factory=tuple,
        alias="envFrom",
        max_length=ENV_FROM_MAX,
        description="Secrets or ConfigMaps whose keys become environment variables.",
    )

    @model_validator(mode="after")
    def _engine_params_fit(self) -> ModelDeploymentSpec:
        if len(json.dumps(self.engine_params)) > ENGINE_PARAMS_BYTES_MAX:
            raise ValueError(ENGINE_PARAMS_SIZE_MESSAGE)
        return self

    @model_validator(mode="after")
    def _env_names_unique(self) -> ModelDeploymentSpec:
        names = [e.name for e in self.env]
        if len(names) != len(set(names)):
            raise ValueError("spec.env must not name a variable twice")
        return self

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

    engine: EngineName = Field(description="The engine.")
    matched: bool = Field(description="Whether it can run the model on some class of nodes.")
    reason: str = Field(description="The rule that decided it.")


class Placement(_Observed):
    """Where the chosen engine runs, as the status reports it."""

    node_class: str = Field(alias="nodeClass", description="The chosen class of nodes.")
    nodes: int = Field(ge=0, description="Nodes in that class.")
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        alias="nodeSelector",
        description="The labels the pods are pinned to (the class's and the spec's).",
    )
    accelerator: Accelerator = Field(description="What the engine runs on.")
    gpu_resource: str | None = Field(
        default=None,
        alias="gpuResource",
        description="The extended resource requested for GPUs (e.g. nvidia.com/gpu).",
    )
    gpus_per_replica: int = Field(
        default=0, ge=0, alias="gpusPerReplica", description="GPUs each replica requests."
    )
    gpu_product: str | None = Field(
        default=None, alias="gpuProduct", description="The nodes' GPU product label."
    )


class Condition(_Observed):
    """The standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(
        description="EngineSelected, Available, Progressing, Degraded, Ready or ModelCache."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="A CamelCase reason for the last transition.")
    message: str = Field(default="", description="What happened, for people; often the fix.")
    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        description="The metadata.generation the condition was set from.",
    )
    last_transition_time: str = Field(
        alias="lastTransitionTime", description="When the status last changed (RFC 3339)."
    )


class ModelDeploymentStatus(_Observed):
    """What the operator observed: the engine it chose and why, where the pods run, the
    endpoint, replica counts and conditions."""

    engine: EngineName | None = Field(
        default=None, description="The chosen engine; unset while none can run the model."
    )
    decided_for: str | None = Field(
        default=None,
        alias="decidedFor",
        description="Fingerprint of the spec fields the decision reads (all but replicas); "
        "the engine is kept while it matches, so new nodes or scaling never switch engines.",
    )
    candidates: tuple[Candidate, ...] = Field(
        default=(), description="The decision trace: every engine, matched or not, and why."
    )
    placement: Placement | None = Field(default=None, description="Where the engine runs.")
    endpoint: str | None = Field(
        default=None, description="The OpenAI-compatible base URL of the Service."
    )
    replicas: int = Field(default=0, description="Pods the Deployment has (its status.replicas).")
    ready_replicas: int = Field(
        default=0, alias="readyReplicas", description="Pods that pass their readiness probe."
    )
    selector: str | None = Field(
        default=None, description="Label selector of the pods (for the scale subresource)."
    )
    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        description="The metadata.generation this status was computed from.",
    )
    conditions: tuple[Condition, ...] = Field(
        default=(),
        description="EngineSelected, Available, Progressing, Degraded and Ready (like a "
        "Deployment's), and ModelCache with spec.model.cache.",
    )


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
