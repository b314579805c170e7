"""The API models refuse what the CRD refuses, with messages that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from unit_helpers import spec

from kubeinfer.api.v1alpha1 import ModelDeployment, ModelDeploymentSpec, Resources


def errors(spec_dict: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        ModelDeploymentSpec.model_validate(spec_dict)
    return str(caught.value)


def test_defaults() -> None:
    parsed = ModelDeploymentSpec.model_validate(spec())
    assert (parsed.engine, parsed.replicas, parsed.resources.gpus) == ("auto", 1, None)
    assert parsed.model.quantization == "none"
    assert parsed.model.abilities == ("chat",)


def test_gguf_needs_a_file() -> None:
    assert "spec.model.file is required when spec.model.format is gguf" in errors(
        spec(format="gguf", quantization="Q4_K_M")
    )


def test_mlx_engine_needs_mlx_format() -> None:
    assert "spec.engine mlx needs spec.model.format" in errors(spec(spec_engine="mlx"))


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (spec(format="onnx"), "model.format"),
        (spec(spec_engine="no-such-engine"), "engine"),
        (spec(spec_replicas=-1), "replicas"),
        (spec(spec_resources={"gpus": -1}), "resources.gpus"),
        (spec(spec_engineParams={"1": "x"}), "engineParams"),
        (spec(spec_engineParams={"true": 1}), "engineParams"),
        (spec(typo=1), "model.typo"),
    ],
)
def test_invalid_fields_are_named(bad: dict[str, Any], field: str) -> None:
    assert field in errors(bad)


def test_engine_params_accept_scalars_lists_and_objects() -> None:
    params = {"n_ctx": 4096, "sampling.top_k": 40, "tensor_split": [0.5, 0.5], "x": {"a": 1}}
    assert (
        ModelDeploymentSpec.model_validate(spec(spec_engineParams=params)).engine_params == params
    )


def test_quantities_accept_numbers_and_strings() -> None:
    assert Resources.model_validate({"cpu": 4, "memory": "16Gi"}).cpu == "4"
    with pytest.raises(ValidationError):
        Resources.model_validate({"memory": "lots"})


def test_models_are_frozen_and_round_trip_by_alias() -> None:
    parsed = ModelDeploymentSpec.model_validate(spec(sizeInBillions=7))
    with pytest.raises(ValidationError):
        parsed.replicas = 3  # type: ignore[misc]
    dumped = parsed.model_dump(by_alias=True, exclude_none=True)
    assert dumped["model"]["sizeInBillions"] == 7
    assert ModelDeploymentSpec.model_validate(dumped) == parsed


def test_names_must_fit_a_service_name() -> None:
    body = {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "ModelDeployment", "spec": spec()}
    ModelDeployment.from_object({**body, "metadata": {"name": "qwen-7b"}})
    with pytest.raises(ValidationError, match=r"metadata\.name"):
        ModelDeployment.from_object({**body, "metadata": {"name": "Qwen.7b"}})


def test_env_is_core_v1_and_credentials_come_from_secrets() -> None:
    parsed = ModelDeploymentSpec.model_validate(
        spec(
            uri="hf://org/repo@v1.0",
            spec_env=[
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
                {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
            ],
            spec_envFrom=[{"prefix": "X_", "configMapRef": {"name": "settings"}}],
        )
    )
    assert parsed.env[0].value_from is not None
    assert parsed.env[0].value_from.secret_key_ref is not None
    assert parsed.env_from[0].config_map_ref is not None
    assert "use valueFrom.secretKeyRef" in errors(
        spec(spec_env=[{"name": "HF_TOKEN", "value": "hf_x"}])
    )
    assert "spec.env must not set HOME" in errors(spec(spec_env=[{"name": "HOME", "value": "/"}]))
    assert "must not name a variable twice" in errors(
        spec(spec_env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])
    )
