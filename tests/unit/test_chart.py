"""The Helm chart: its CRD copy, its values schema, and what `helm template` renders.

Rendering needs helm (bin/helm comes with the control plane build, `make controlplane`); those
tests skip without it. The CRD copy, values and schema checks run everywhere.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from unit_helpers import KUBERNETES_VERSION, ROOT

from kubeinfer.crd import CRD_FILE
from kubeinfer.render import ImageSettings

CHART = ROOT / "charts" / "kubeinfer"
RULES_FILE = CHART / "files" / "clusterrole-rules.yaml"
NAMESPACE = "kubeinfer-system"
RELEASE = "ki"
# Kinds from the Prometheus Operator's CRDs: kubernetes-validate has no schema for them.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "PodMonitor"}
# A cluster with the Prometheus Operator: its kinds are rendered only where they exist.
PROMETHEUS_OPERATOR = [
    arg
    for kind in sorted(CUSTOM_KINDS)
    for arg in ("--api-versions", f"monitoring.coreos.com/v1/{kind}")
]
# Values whose children are Kubernetes API objects, documented as a whole.
API_OBJECT_VALUES = {"podSecurityContext", "securityContext", "resources"}
EVERYTHING_ON_VALUES = [
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.podMonitor.enabled=true",
    "--set",
    "operator.watchNamespaces={models,team-a}",
    "--set",
    "nodeSelector.kubernetes\\.io/os=linux",
    "--set",
    "tolerations[0].key=dedicated,tolerations[0].operator=Exists",
    "--set",
    "tolerations[0].effect=NoSchedule",
    "--set",
    "imagePullSecrets[0].name=registry",
    "--set",
    "priorityClassName=system-cluster-critical",
    "--set",
    "image.digest=sha256:" + "a" * 64,
    "--set-json",
    'affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":'
    '{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/arch",'
    '"operator":"In","values":["amd64","arm64"]}]}]}}}',
]
EVERYTHING_ON = [*EVERYTHING_ON_VALUES, *PROMETHEUS_OPERATOR]


def _helm() -> str | None:
    built = ROOT / "bin" / "helm"
    return str(built) if built.exists() else shutil.which("helm")


needs_helm = pytest.mark.skipif(
    _helm() is None,
    reason="helm not found: bin/helm comes with the control plane build (`make controlplane`)",
)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    helm_binary = _helm()
    assert helm_binary is not None
    return subprocess.run([helm_binary, *args], capture_output=True, text=True, check=False)


@cache
def _template(args: tuple[str, ...], release: str) -> tuple[dict[str, Any], ...]:
    result = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        f"{KUBERNETES_VERSION}.0",
        *args,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def template(*args: str, release: str = RELEASE) -> list[dict[str, Any]]:
    return list(_template(args, release))


def by_kind(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    return found


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return loaded


def schema_errors(overrides: dict[str, Any]) -> list[str]:
    merged = _merge(values(), overrides)
    validator = jsonschema.Draft7Validator(schema())
    return [error.message for error in validator.iter_errors(merged)]


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------ files, values and schema


def test_chart_crd_is_the_generated_crd() -> None:
    chart_copy = CHART / "crds" / Path(CRD_FILE).name
    assert chart_copy.read_text() == (ROOT / CRD_FILE).read_text(), (
        "the chart's CRD differs from crds/: run `make crd` and commit both copies"
    )
    assert [p.name for p in (CHART / "crds").iterdir()] == [Path(CRD_FILE).name]


def test_chart_versions_are_fixed() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == ("0.1.0", "0.1.0")
    image = values()["image"]
    assert (image["repository"], image["tag"]) == ("ghcr.io/kubeinfer/operator", "0.1.0")


def test_schema_is_draft7_and_accepts_the_defaults() -> None:
    jsonschema.Draft7Validator.check_schema(schema())
    assert schema()["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema_errors({}) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"replicaCount": "x"}, "'x' is not of type 'integer'"),
        ({"replicaCount": 2}, "2 is greater than the maximum of 1"),
        ({"replicaCs": 1}, "Additional properties are not allowed ('replicaCs' was unexpected)"),
        ({"image": {"tag": "latest"}}, "should not be valid"),
        ({"image": {"pullPolicy": "Sometimes"}}, "'Sometimes' is not one of"),
        ({"rbac": {"create": "yes"}}, "'yes' is not of type 'boolean'"),
        ({"runtimeImages": {"llamacpp": {"cpu": "a/b:1"}}}, "'llamacpp' was unexpected"),
        ({"runtimeImages": {"vllm": {"xpu": "a/b:1"}}}, "'xpu' was unexpected"),
        ({"runtimeImages": {"vllm": {"cuda": "a/b:latest"}}}, "should not be valid"),
        ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "does not match"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "does not match"),
    ],
)
def test_schema_rejects_bad_values(overrides: dict[str, Any], expected: str) -> None:
    errors = schema_errors(overrides)
    assert any(expected in error for error in errors), errors


def test_schema_covers_every_value() -> None:
    """Every key in values.yaml is declared in the schema (nothing slips past it)."""

    def walk(value: Any, node: dict[str, Any], path: str) -> Iterator[str]:
        if not isinstance(value, dict) or "properties" not in node:
            return
        for key, child in value.items():
            if key not in node["properties"]:
                yield f"{path}{key}"
            else:
                yield from walk(child, node["properties"][key], f"{path}{key}.")

    assert list(walk(values(), schema(), "")) == []


def test_every_value_is_documented() -> None:
    """Each key of values.yaml has a comment right above it (API objects as a whole)."""
    undocumented: list[str] = []
    parents: list[tuple[int, str]] = []  # (indent, key) of the enclosing keys
    previous = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        match = re.match(r"^(\s*)([A-Za-z][\w.]*):", line)
        if match:
            indent, key = len(match.group(1)), match.group(2)
            parents = [(i, k) for i, k in parents if i < indent]
            inside_api_object = any(k in API_OBJECT_VALUES for _, k in parents)
            if not inside_api_object and not previous.lstrip().startswith("#"):
                undocumented.append(".".join([*(k for _, k in parents), key]))
            parents.append((indent, key))
        if line.strip():
            previous = line
    assert undocumented == []


def test_runtime_image_defaults_are_the_operators() -> None:
    """values.runtimeImages is an ImageSettings document, equal to the code's defaults."""
    assert ImageSettings.model_validate(values()["runtimeImages"]) == ImageSettings()


# ------------------------------------------------------------------ rendering (needs helm)


@needs_helm
def test_lint_passes_strict() -> None:
    for args in ([], EVERYTHING_ON_VALUES):  # (lint has no --api-versions)
        result = helm("lint", "--strict", str(CHART), "--kube-version", "1.35.0", *args)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_helm
@pytest.mark.parametrize("args", [[], EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_rendered_objects_are_valid_for_the_pinned_kubernetes(args: list[str]) -> None:
    docs = template(*args)
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@needs_helm
def test_one_object_per_template_file() -> None:
    result = helm("template", RELEASE, str(CHART), "--kube-version", "1.35.0", *EVERYTHING_ON)
    sources = re.findall(r"^# Source: (\S+)$", result.stdout, re.MULTILINE)
    templates = {f"kubeinfer/templates/{p.name}" for p in (CHART / "templates").glob("*.yaml")}
    assert sorted(set(sources)) == sorted(templates)
    # One object per file, except one Role and RoleBinding per watched namespace.
    per_namespace = ("kubeinfer/templates/role.yaml", "kubeinfer/templates/rolebinding.yaml")
    assert all(sources.count(s) == (2 if s in per_namespace else 1) for s in sources)


@needs_helm
def test_default_objects() -> None:
    docs = template()
    assert sorted(kinds(docs)) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert doc["metadata"]["labels"]["app.kubernetes.io/version"] == "0.1.0"


@needs_helm
def test_cluster_role_rules_are_the_rules_file() -> None:
    role = by_kind(template(), "ClusterRole")
    assert role["rules"] == yaml.safe_load(RULES_FILE.read_text())
    binding = by_kind(template(), "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ki-kubeinfer", "namespace": NAMESPACE}
    ]


@needs_helm
def test_watched_namespaces_get_roles_and_the_cluster_role_only_reads_nodes_and_crds() -> None:
    docs = template("--set", "operator.watchNamespaces={models,team-a}")
    rules = yaml.safe_load(RULES_FILE.read_text())
    cluster = by_kind(docs, "ClusterRole")["rules"]
    assert {r for rule in cluster for r in rule["resources"]} == {
        "nodes",
        "customresourcedefinitions",
    }
    assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in cluster)
    roles = [d for d in docs if d["kind"] == "Role"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["models", "team-a"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["models", "team-a"]
    for role in roles:
        assert role["rules"] == [r for r in rules if r not in cluster]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "ki-kubeinfer",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "ki-kubeinfer", "namespace": NAMESPACE}
        ]
    assert not [d for d in template() if d["kind"] in {"Role", "RoleBinding"}]


@needs_helm
def test_admission_policy_limits_the_operators_own_writes() -> None:
    docs = template()
    policy = by_kind(docs, "ValidatingAdmissionPolicy")
    binding = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    (match,) = policy["spec"]["matchConditions"]
    assert match["expression"] == (
        f"request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:ki-kubeinfer'"
    )
    text = yaml.safe_dump(policy["spec"])
    for rule in ("automountServiceAccountToken", "privileged", "hostPath", "hostPID", "managed-by"):
        assert rule in text


@needs_helm
def test_cluster_scoped_names_carry_the_release() -> None:
    names = {
        release: {
            d["metadata"]["name"]
            for d in template(release=release)
            if d["kind"].startswith("ClusterRole")
        }
        for release in ("one", "two")
    }
    assert names == {"one": {"one-kubeinfer"}, "two": {"two-kubeinfer"}}


@needs_helm
def test_operator_deployment() -> None:
    dep = by_kind(template(), "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ki-kubeinfer"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/kubeinfer/operator:0.1.0"
    assert container["command"] == [
        "kubeinfer",
        "operator",
        "--metrics-port",
        "9090",
        "--liveness-port",
        "8080",
        "--images",
        "/etc/kubeinfer/images.yaml",
        "--workers",
        "16",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9090, "health": 8080}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/kubeinfer")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert (
        volume["configMap"]["name"]
        == by_kind(template(), "ConfigMap", "-images")["metadata"]["name"]
    )


@needs_helm
def test_scheduling_values_and_namespaces_reach_the_pod() -> None:
    pod = by_kind(template(*EVERYTHING_ON), "Deployment")["spec"]["template"]["spec"]
    # The user's selector is added to the operator image's architecture.
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
    arm = by_kind(template("--set", "nodeSelector.kubernetes\\.io/arch=arm64"), "Deployment")
    assert arm["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert "nodeAffinity" in pod["affinity"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/kubeinfer/operator@sha256:" + "a" * 64
    command = container["command"]
    assert command[command.index("--namespace") :][:4] == [
        "--namespace",
        "models",
        "--namespace",
        "team-a",
    ]


@needs_helm
def test_images_config_map_is_what_the_operator_reads() -> None:
    config_map = by_kind(template(), "ConfigMap", "-images")
    settings = ImageSettings.model_validate(yaml.safe_load(config_map["data"]["images.yaml"]))
    assert settings == ImageSettings()
    overridden = by_kind(
        template(
            "--set",
            "runtimeImages.vllm.cuda=registry.local/vllm:0.11.0-cu128",
            "--set",
            "runtimeImages.pullPolicy=Always",
        ),
        "ConfigMap",
        "-images",
    )
    settings = ImageSettings.model_validate(yaml.safe_load(overridden["data"]["images.yaml"]))
    assert settings.image_for("vllm", "cuda") == "registry.local/vllm:0.11.0-cu128"
    assert settings.image_for("llama.cpp", "cpu") == ImageSettings().image_for("llama.cpp", "cpu")
    assert settings.pull_policy == "Always"


@needs_helm
def test_changed_images_roll_the_operator() -> None:
    def checksum(*args: str) -> str:
        dep = by_kind(template(*args), "Deployment")
        annotation: str = dep["spec"]["template"]["metadata"]["annotations"]["checksum/images"]
        return annotation

    assert checksum() != checksum("--set", "runtimeImages.pullPolicy=Always")


@needs_helm
def test_metrics_service_and_service_monitor() -> None:
    docs = template(*EVERYTHING_ON)
    service = by_kind(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_metadata = by_kind(docs, "Deployment")["spec"]["template"]["metadata"]
    assert service["spec"]["selector"].items() <= pod_metadata["labels"].items()
    # Without the Prometheus Operator: the prometheus.io/* annotations name the same port.
    assert {k: v for k, v in pod_metadata["annotations"].items() if "prometheus.io" in k} == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
    }
    monitor = by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True  # the object's namespace
    rule = by_kind(docs, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "KubeinferOperatorDown",
        "KubeinferReconcileErrors",
        "KubeinferModelDeploymentDegraded",
        "KubeinferModelDeploymentUnschedulable",
        "KubeinferModelDeploymentUnavailable",
        "KubeinferModelDeploymentRolloutStalled",
        "KubeinferModelDeploymentNoEngine",
    }
    for name, alert in alerts.items():
        if name != "KubeinferOperatorDown":  # every other alert names the ModelDeployment
            assert "by (namespace, name" in alert["expr"], name
            assert "{{ $labels.namespace }}/{{ $labels.name }}" in alert["annotations"]["summary"]
    assert alerts["KubeinferModelDeploymentUnschedulable"]["for"] == "15m"
    pods = by_kind(docs, "PodMonitor")
    assert pods["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "kubeinfer"}
    assert [e["port"] for e in pods["spec"]["podMetricsEndpoints"]] == ["http", "metrics"]


@needs_helm
def test_prometheus_operator_kinds_are_skipped_where_the_cluster_lacks_them() -> None:
    """An upgrade with a ServiceMonitor switched on must not fail on a cluster without the
    Prometheus Operator's CRDs."""
    assert not kinds(template(*EVERYTHING_ON_VALUES)) & CUSTOM_KINDS


@needs_helm
def test_grafana_dashboard_is_the_json_file_and_can_be_turned_off() -> None:
    dashboard = by_kind(template(), "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["kubeinfer.json"]) == shipped
    exprs = [t["expr"] for p in shipped["panels"] for t in p.get("targets", [])]
    assert any("llamacpp:" in e for e in exprs) and any("vllm:" in e for e in exprs)
    assert any("kubeinfer_modeldeployment_status_condition" in e for e in exprs)
    off = template("--set", "metrics.grafanaDashboard.enabled=false")
    assert not [d for d in off if d["metadata"]["name"].endswith("-dashboard")]


@needs_helm
def test_helm_template_needs_no_kube_version() -> None:
    result = helm("template", RELEASE, str(CHART))
    assert result.returncode == 0, result.stderr
    assert "kind: ValidatingAdmissionPolicy\n" in result.stdout


@needs_helm
def test_switches_turn_objects_off() -> None:
    docs = template(
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=platform-operator",
        "--set",
        "admissionPolicy.enabled=false",
    )
    assert kinds(docs) == {"ConfigMap", "Deployment", "Service"}
    pod = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-operator"
    named = template("--set", "serviceAccount.name=kubeinfer")
    assert by_kind(named, "ServiceAccount")["metadata"]["name"] == "kubeinfer"
    assert by_kind(named, "ClusterRoleBinding")["subjects"][0]["name"] == "kubeinfer"


@needs_helm
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "replicaCount=x"], "at '/replicaCount'"),
        (["--set", "unknownKey=1"], "'unknownKey' not allowed"),
        (["--set", "image.tag=latest"], "at '/image/tag'"),
    ],
)
def test_helm_enforces_the_schema(args: list[str], expected: str) -> None:
    result = helm("template", RELEASE, str(CHART), *args)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
