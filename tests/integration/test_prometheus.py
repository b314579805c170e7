"""A real Prometheus scrapes the operator and the runtime pods the way the chart sets them
up, with the chart's alert rules loaded; every PromQL query of the chart's Grafana dashboard
then runs through its HTTP API and must be valid, and return data where it should.

Scrape configuration (scrape_config below), equivalent to what the chart ships:
- the operator: a static target, because the operator under test is a local process, not a
  pod. It stands for the chart's ServiceMonitor: the job is named after the metrics Service
  (what the alert rules select on), labels are honored (the series' own namespace), and the
  target carries the release namespace.
- the runtime pods: Kubernetes service discovery against the test cluster's API server (its
  kubeconfig), with the prometheus.io/scrape|port|path annotations convention, plus the
  PodMonitor's `modeldeployment` label. Only pods on a real node are kept: KWOK's simulated
  pods have made-up IPs (packets to them would leave the machine).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import OperatorProcess
from kubernetes import client
from monitoring import (
    OPERATOR_JOB,
    RELEASE_NAMESPACE,
    Prometheus,
    PromQLError,
    Query,
    chart_rules,
    dashboard_queries,
    dashboard_variables,
    needs_prometheus,
    substitute,
)
from test_operator import Cluster
from test_real_node import GGUF, chat, real_md, service_url
from waiting import wait_for

pytestmark = [pytest.mark.cluster, needs_prometheus]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["gguf-cpu", "gguf-gpu", "vllm-h100", "transformers-fallback", "mlx"]
CONFLICT = "taken"  # a ModelDeployment whose Service name someone else holds
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def cluster(operator: OperatorProcess, api_client: client.ApiClient, namespace: str) -> Cluster:
    return Cluster(api_client, namespace)


def scrape_config(
    operator: OperatorProcess, kubeconfig: str, real_node: str | None
) -> dict[str, Any]:
    pods = {
        "job_name": "kubernetes-pods",
        "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": kubeconfig}],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "action": "keep",
                "regex": "true",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_node_name"],
                "action": "keep",
                "regex": real_node or "^$",  # no real node: no pod target
            },
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {
                "source_labels": [
                    "__address__",
                    "__meta_kubernetes_pod_annotation_prometheus_io_port",
                ],
                "regex": r"([^:]+)(?::\d+)?;(\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {
                "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
                "target_label": "modeldeployment",
            },
        ],
    }
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": OPERATOR_JOB,
                "honor_labels": True,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{operator.metrics_port}"],
                        "labels": {"namespace": RELEASE_NAMESPACE},
                    }
                ],
            },
            pods,
        ],
    }


def apply_examples(cluster: Cluster) -> list[str]:
    names = []
    for example in EXAMPLES:
        manifest = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
        cluster.create(manifest)
        names.append(manifest["metadata"]["name"])
    # A reconcile that keeps failing, so the failure panels have something to show.
    cluster.foreign_service(CONFLICT)
    cpu = yaml.safe_load((ROOT / "examples" / "gguf-cpu.yaml").read_text())
    cluster.create({**cpu, "metadata": {"name": CONFLICT}})
    return [*names, CONFLICT]


def eventually(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(1)


def settled(cluster: Cluster, name: str) -> bool:
    return bool(
        cluster.condition_is(name, "Available", "True")
        or cluster.condition_is(name, "EngineSelected", "False")
        or cluster.condition_is(name, "Degraded", "True")
    )


def run_queries(
    prometheus: Prometheus, queries: list[Query], variables: dict[str, str]
) -> tuple[dict[str, str], dict[str, int]]:
    """(errors by query, series by query), each query with the variables substituted."""
    errors, series = {}, {}
    for query in queries:
        expr = substitute(query.expr, variables)
        try:
            series[query.expr] = len(prometheus.query(expr))
        except PromQLError as error:
            errors[query.expr] = str(error)
    return errors, series


def check_variables(prometheus: Prometheus, variables: dict[str, str]) -> dict[str, list[str]]:
    """The dashboard's query variables as Grafana resolves label_values(selector, label)."""
    found = {}
    for name, definition in dashboard_variables().items():
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
        assert match, f"variable {name}: {definition}"
        selector = substitute(match.group(1), variables)
        found[name] = prometheus.label_values(match.group(2), selector)
    return found


def started_prometheus(
    tmp_path: Path, operator: OperatorProcess, kubeconfig: str, real_node: str | None
) -> Prometheus:
    return Prometheus(tmp_path, scrape_config(operator, kubeconfig, real_node), chart_rules())


def test_dashboard_fleet_queries_and_alert_rules_against_a_real_prometheus(
    cluster: Cluster, operator: OperatorProcess, kubeconfig: str, tmp_path: Path
) -> None:
    names = apply_examples(cluster)
    for name in names:
        wait_for(f"{name} to settle", lambda n=name: settled(cluster, n), timeout=90)
    queries = dashboard_queries()
    fleet = [q for q in queries if q.engine is None]
    engines = [q for q in queries if q.engine is not None]
    variables = {"namespace": cluster.ns, "name": "qwen-gguf-cpu"}
    with started_prometheus(tmp_path, operator, kubeconfig, None) as prometheus:

        def fleet_has_data() -> bool:
            errors, series = run_queries(prometheus, fleet, variables)
            return not errors and all(series.values())

        eventually(fleet_has_data, timeout=60)  # the assertions below say which query
        errors, series = run_queries(prometheus, queries, variables)
        assert errors == {}, errors
        empty = [q.expr for q in fleet if not series[q.expr]]
        assert empty == [], f"fleet panels without data: {empty}\n{prometheus.tail()}"
        # vLLM and llama.cpp panels: valid PromQL here (no engine pods on simulated nodes).
        values = check_variables(prometheus, variables)
        assert cluster.ns in values["namespace"]
        assert set(names) <= set(values["name"])

        # The chart's alert rules, loaded as they are, evaluate without errors and match
        # the operator's real series: pending for the object without an engine and the one
        # whose children are held by someone else.
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        assert rules and all(r["health"] == "ok" for r in rules), rules
        expected = {
            ("KubeinferModelDeploymentNoEngine", "qwen-mlx"),
            ("KubeinferModelDeploymentDegraded", CONFLICT),
        }
        wait_for(
            f"alerts pending: {expected}",
            lambda: _pending(prometheus, cluster.ns) >= expected,
            timeout=20,
        )
        targets = prometheus.targets()
        assert [t["health"] for t in targets if t["labels"]["job"] == OPERATOR_JOB] == ["up"]
    print(
        f"dashboard: {len(queries)} queries valid; fleet {len(fleet)}/{len(fleet)} with data; "
        f"{len(engines)} engine queries syntax-checked (no engine pods on simulated nodes)"
    )

    # The operator's log lines name the time, the object and the handler.
    lines = [line for line in operator.log.read_text().splitlines() if f"{cluster.ns}/" in line]
    assert lines
    assert all(re.match(rf"{STAMP} [A-Z]+ +\[", line) for line in lines), lines[:5]
    conflict = [line for line in lines if f"[{cluster.ns}/{CONFLICT}] [refresh:spec]" in line]
    assert conflict, lines[:10]


def _pending(prometheus: Prometheus, namespace: str) -> set[tuple[str, str]]:
    return {
        (a["labels"]["alertname"], a["labels"].get("name", ""))
        for a in prometheus.api("alerts")["alerts"]
        if a["labels"].get("namespace") == namespace
    }


def test_dashboard_engine_queries_with_a_real_llama_cpp_pod(
    cluster: Cluster,
    operator: OperatorProcess,
    kubeconfig: str,
    real_node: str,
    model_claim: str,
    tmp_path: Path,
) -> None:
    name = "tiny-metrics"
    cluster.create(real_md(name, model_claim, GGUF, engineParams={"n_ctx": 256}))
    wait_for(f"{name} Available", lambda: cluster.condition_is(name, "Available", "True"), 240)
    url = service_url(cluster, name)
    for _ in range(3):
        assert wait_for(f"an answer from {url}", lambda: chat(url), timeout=30)
    queries = dashboard_queries()
    llama = [q for q in queries if q.engine == "llamacpp"]
    variables = {"namespace": cluster.ns, "name": name}
    with started_prometheus(tmp_path, operator, kubeconfig, real_node) as prometheus:

        def llama_has_data() -> bool:
            errors, series = run_queries(prometheus, llama, variables)
            return not errors and all(series.values())

        eventually(llama_has_data, timeout=60)  # the assertions below say which query
        errors, series = run_queries(prometheus, queries, variables)
        assert errors == {}, errors
        pods = [t for t in prometheus.targets() if t["labels"]["job"] == "kubernetes-pods"]
        assert pods and all(t["health"] == "up" for t in pods), pods
        assert {t["labels"].get("modeldeployment") for t in pods} == {name}
        empty = [q.expr for q in llama if not series[q.expr]]
        assert empty == [], f"llama.cpp panels without data: {empty}"
        tokens = prometheus.query(
            substitute(
                'sum(llamacpp:tokens_predicted_total{namespace="$namespace", '
                'modeldeployment="$name"})',
                variables,
            )
        )
        assert float(tokens[0]["value"][1]) > 0
    with_data = sum(1 for q in queries if series[q.expr])
    print(
        f"dashboard with a real llama.cpp pod: {len(queries)} queries valid, {with_data} with "
        f"data (llama.cpp {len(llama)}/{len(llama)}; vLLM panels syntax-checked only)"
    )
