"""Rendering: golden files, the official 1.35 schemas, and the invariants that matter.

Regenerate the golden files after an intended change with UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import kubernetes_validate
import pytest
import yaml
from unit_helpers import EXAMPLES, GOLDEN, KUBERNETES_VERSION, load_yaml_documents

from kubeinfer.api.v1alpha1 import ModelDeployment
from kubeinfer.decide import Decision, decide
from kubeinfer.nodes import node_facts
from kubeinfer.render import (
    ImageSettings,
    children,
    deployment,
    endpoint_url,
    runtime_document,
    selector,
)
from kubeinfer.render.children import RUNTIME_CONFIG_ANNOTATION, model_cache_size
from kubeinfer.runtime_config import RuntimeConfig

RENDERED_EXAMPLES = ["gguf-cpu", "gguf-gpu", "vllm-h100", "transformers-fallback"]
UID = "0b8f3c2e-5d2a-4f5e-9a51-6a3c1d2e4f70"


def load(example: str, *, uid: str | None = UID, **model: Any) -> ModelDeployment:
    (manifest,) = load_yaml_documents(EXAMPLES / f"{example}.yaml")
    manifest["metadata"] |= {"namespace": "models", **({"uid": uid} if uid else {})}
    manifest["spec"]["model"] |= model
    return ModelDeployment.from_object(manifest)


def decision_for(md: ModelDeployment, nodes: list[dict[str, Any]]) -> Decision:
    return decide(md.spec, map(node_facts, nodes))


def render(example: str, nodes: list[dict[str, Any]], **model: Any) -> list[dict[str, Any]]:
    md = load(example, **model)
    return list(children(md, decision_for(md, nodes), ImageSettings()))


@pytest.mark.parametrize("example", RENDERED_EXAMPLES)
def test_golden(example: str, example_nodes: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all(render(example, example_nodes), sort_keys=True)
    golden = GOLDEN / f"{example}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.read_text() == text, f"rendering changed; UPDATE_GOLDEN=1 to accept ({golden})"


@pytest.mark.parametrize("example", RENDERED_EXAMPLES)
def test_valid_against_the_pinned_kubernetes_schema(
    example: str, example_nodes: list[dict[str, Any]]
) -> None:
    for obj in render(example, example_nodes):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_inputs_are_not_mutated(example_nodes: list[dict[str, Any]]) -> None:
    md = load("vllm-h100")
    decision = decision_for(md, example_nodes)
    before = (md.model_dump(), decision.model_dump())
    first = children(md, decision, ImageSettings())
    first[-1]["spec"]["template"]["spec"]["nodeSelector"]["x"] = "y"
    assert (md.model_dump(), decision.model_dump()) == before
    assert (
        "x"
        not in children(md, decision, ImageSettings())[-1]["spec"]["template"]["spec"][
            "nodeSelector"
        ]
    )


def test_deployment_essentials(example_nodes: list[dict[str, Any]]) -> None:
    service, dep = render("vllm-h100", example_nodes)
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [
        "kubeinfer-runtime",
        "--config",
        "/etc/kubeinfer/runtime.yaml",
    ]
    assert container["image"] == "ghcr.io/kubeinfer/runtime-vllm-cuda:0.1.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"name": "shm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    owner = dep["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelDeployment", UID, True)
    assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert {p["port"] for p in service["spec"]["ports"]} == {8000, 9090}


@pytest.mark.parametrize("example", RENDERED_EXAMPLES)
def test_runtime_pods_are_pss_restricted_tokenless_and_write_only_to_bounded_emptydirs(
    example: str, example_nodes: list[dict[str, Any]]
) -> None:
    pod = render(example, example_nodes)[-1]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod  # the namespace's default, which holds no rights
    # Pod Security Standards, restricted profile.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    allowed = {"downwardAPI", "emptyDir", "persistentVolumeClaim"}
    assert all(set(v) - {"name"} <= allowed for v in pod["volumes"])
    # Read-only root: every writable mount is an emptyDir with a size limit (shm counts
    # against the memory limit), and the engines' HOME and TMPDIR point at them.
    assert context["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        if mount.get("readOnly"):
            continue
        empty_dir = volumes[mount["name"]]["emptyDir"]
        assert empty_dir.get("sizeLimit") or empty_dir.get("medium") == "Memory", mount
    env = {e["name"]: e["value"] for e in container["env"]}
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert {env["HOME"], env["TMPDIR"], "/models"} <= writable


def test_model_cache_is_sized_from_the_parameter_count(example_nodes: list[dict[str, Any]]) -> None:
    md = load("vllm-h100")
    assert md.spec.model.size_in_billions == 70
    assert model_cache_size(md) == "177Gi"  # 70e9 x 2 bytes x 1.25, plus 2
    unsized = load("vllm-h100", sizeInBillions=None)
    assert model_cache_size(unsized) == "256Gi"


def test_cpu_llama_cpp_has_no_gpu_no_shm_and_the_cpu_image(
    example_nodes: list[dict[str, Any]],
) -> None:
    _, dep = render("gguf-cpu", example_nodes)
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/kubeinfer/runtime-llamacpp:0.1.0"
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert all(v["name"] != "shm" for v in pod["volumes"])
    assert "tolerations" not in pod


def test_runtime_config_document(example_nodes: list[dict[str, Any]]) -> None:
    md = load("gguf-gpu")
    decision = decision_for(md, example_nodes)
    text = runtime_document(md, decision)
    config = RuntimeConfig.model_validate(yaml.safe_load(text))
    assert config.engine == "llama.cpp"
    assert config.gpus == 1
    assert config.model.file == "qwen2.5-14b-instruct-q4_k_m.gguf"
    assert config.params == {"n_ctx": 8192}  # n_gpu_layers is the runtime's to set
    # The pod template carries the document as it is, sorted keys, as libyaml writes it.
    annotations = deployment(md, decision, ImageSettings())["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations[RUNTIME_CONFIG_ANNOTATION] == text
    assert text == yaml.safe_dump(config.to_document(), sort_keys=True)


@pytest.mark.parametrize("example", RENDERED_EXAMPLES)
def test_the_runtime_reads_its_config_from_the_pod_templates_annotation(
    example: str, example_nodes: list[dict[str, Any]]
) -> None:
    objects = render(example, example_nodes)
    assert [o["kind"] for o in objects] == ["Service", "Deployment"]  # no ConfigMap
    template = objects[-1]["spec"]["template"]
    (container,) = template["spec"]["containers"]
    config_path = container["command"][container["command"].index("--config") + 1]
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert mount["readOnly"] is True
    assert volumes["config"] == {
        "name": "config",
        "downwardAPI": {
            "items": [
                {
                    "path": config_path.removeprefix(mount["mountPath"] + "/"),
                    "fieldRef": {
                        "fieldPath": f"metadata.annotations['{RUNTIME_CONFIG_ANNOTATION}']"
                    },
                }
            ]
        },
    }
    assert f"{mount['mountPath']}/runtime.yaml" == config_path == "/etc/kubeinfer/runtime.yaml"
    document = yaml.safe_load(template["metadata"]["annotations"][RUNTIME_CONFIG_ANNOTATION])
    assert (
        RuntimeConfig.model_validate(document).engine
        == objects[-1]["metadata"]["labels"]["kubeinfer.io/engine"]
    )


def test_pvc_models_are_mounted_read_only(example_nodes: list[dict[str, Any]]) -> None:
    _, dep = render("gguf-cpu", example_nodes, uri="pvc://model-store/qwen")
    pod = dep["spec"]["template"]["spec"]
    assert {
        "name": "model-pvc",
        "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True},
    } in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "model-pvc", "mountPath": "/mnt/pvc/model-store", "readOnly": True} in mounts


def test_pod_template_hash_follows_the_template_and_the_config(
    example_nodes: list[dict[str, Any]],
) -> None:
    def pod_hash(objects: list[dict[str, Any]]) -> str:
        annotations = objects[-1]["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["kubeinfer.io/pod-template-hash"]
        return value

    base = pod_hash(render("gguf-cpu", example_nodes))
    assert pod_hash(render("gguf-cpu", example_nodes)) == base
    # A change of the runtime config alone (model.file is only there) rolls the pods too.
    assert pod_hash(render("gguf-cpu", example_nodes, file="other.gguf")) != base


def test_offline_render_has_no_owner(example_nodes: list[dict[str, Any]]) -> None:
    md = load("gguf-cpu", uid=None)
    dep = deployment(md, decision_for(md, example_nodes), ImageSettings())
    assert "ownerReferences" not in dep["metadata"]


def test_nothing_to_render_without_an_engine(example_nodes: list[dict[str, Any]]) -> None:
    md = load("mlx")
    with pytest.raises(ValueError, match="no engine"):
        children(md, decision_for(md, example_nodes), ImageSettings())


def test_endpoint_and_selector() -> None:
    md = load("gguf-cpu")
    assert endpoint_url(md) == "http://qwen-gguf-cpu.models.svc:8000/v1"
    assert selector("qwen-gguf-cpu") == (
        "app.kubernetes.io/instance=qwen-gguf-cpu,app.kubernetes.io/name=kubeinfer-runtime"
    )


def test_image_settings_are_configurable() -> None:
    images = ImageSettings.model_validate({"vllm": {"cuda": "registry.local/vllm:1"}})
    assert images.image_for("vllm", "cuda") == "registry.local/vllm:1"
    with pytest.raises(ValueError, match="no cpu image"):
        images.image_for("vllm", "cpu")
    assert copy.deepcopy(images) == images


def test_env_env_from_and_pull_secrets_reach_the_runtime_container(
    example_nodes: list[dict[str, Any]],
) -> None:
    token = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    (manifest,) = load_yaml_documents(EXAMPLES / "gguf-cpu.yaml")
    manifest["metadata"] |= {"namespace": "models", "uid": UID}
    manifest["spec"] |= {
        "env": [token, {"name": "B", "value": "$(HF_ENDPOINT)/x"}],
        "envFrom": [{"secretRef": {"name": "proxy", "optional": True}}],
    }
    md = ModelDeployment.from_object(manifest)
    images = ImageSettings.model_validate({"pullSecrets": ["registry"]})
    _, dep = children(md, decision_for(md, example_nodes), images)
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # Ours first, then the user's in their order; the token stays a reference to its Secret.
    assert [e["name"] for e in container["env"]] == ["HOME", "TMPDIR", "HF_TOKEN", "B"]
    assert container["env"][2] == token
    assert container["envFrom"] == [{"secretRef": {"name": "proxy", "optional": True}}]
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert (
        "HF_TOKEN"
        not in dep["spec"]["template"]["metadata"]["annotations"][RUNTIME_CONFIG_ANNOTATION]
    )
    kubernetes_validate.validate(dep, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("example", "port_name"),
    [("gguf-cpu", "http"), ("vllm-h100", "http"), ("transformers-fallback", "metrics")],
)
def test_scrape_annotations_name_a_port_that_serves_metrics(
    example: str, port_name: str, example_nodes: list[dict[str, Any]]
) -> None:
    # transformers serves no /metrics of its own: the runtime's port instead.
    template = render(example, example_nodes)[-1]["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: str(p["containerPort"]) for p in container["ports"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == ports[port_name]
