"""The chart's monitoring pieces for tests: its alert rules as a Prometheus rules file, its
dashboard's queries, and a real Prometheus (bin/prometheus, `make prometheus`) to run them."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "kubeinfer"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
BIN = ROOT / "bin"
PROMETHEUS, PROMTOOL = BIN / "prometheus", BIN / "promtool"
# The rules name the operator's scrape job after its metrics Service: "<fullname>-metrics".
RELEASE, RELEASE_NAMESPACE = "kubeinfer", "kubeinfer-system"
OPERATOR_JOB = f"{RELEASE}-metrics"

needs_prometheus = pytest.mark.skipif(
    not (PROMETHEUS.exists() and PROMTOOL.exists()),
    reason="bin/prometheus and bin/promtool not built (`make prometheus`)",
)


def _helm() -> str:
    built = BIN / "helm"
    found = str(built) if built.exists() else shutil.which("helm")
    if found is None:
        pytest.skip("helm not found: bin/helm comes with the control plane build")
    return found


def chart_rules(**values: str) -> dict[str, Any]:
    """The chart's PrometheusRule, rendered with its defaults (or `values`), as the rules file
    Prometheus loads: {"groups": [...]}."""
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    rendered = subprocess.run(
        [
            _helm(),
            "template",
            RELEASE,
            str(CHART),
            "-n",
            RELEASE_NAMESPACE,
            "--api-versions",
            "monitoring.coreos.com/v1/PrometheusRule",
            "--set",
            "metrics.prometheusRule.enabled=true",
            *sets,
            "-s",
            "templates/prometheusrule.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (rule,) = [d for d in yaml.safe_load_all(rendered) if d]
    return {"groups": rule["spec"]["groups"]}


@dataclass(frozen=True)
class Query:
    panel: str
    expr: str
    engine: str | None  # "llamacpp" or "vllm" for an engine panel, None for the fleet's


def dashboard_queries() -> list[Query]:
    """Every PromQL target of every panel (rows' nested panels too)."""
    dashboard = json.loads(DASHBOARD.read_text())

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    found = []
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            engine = re.search(r"\b(llamacpp|vllm):", target["expr"])
            found.append(Query(panel["title"], target["expr"], engine and engine.group(1)))
    return found


def dashboard_variables() -> dict[str, str]:
    """name -> the `label_values(metric, label)` query of each query variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {
        v["name"]: v["definition"]
        for v in dashboard["templating"]["list"]
        if v.get("type") == "query"
    }


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's variables as it expands them before sending a query."""
    for name, value in sorted(variables.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A real Prometheus on a free loopback port, with the given config and rules."""

    def __init__(self, workdir: Path, config: dict[str, Any], rules: dict[str, Any]) -> None:
        self.workdir = workdir
        self.port = _free_port()
        (workdir / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config = {**config, "rule_files": [str(workdir / "rules.yaml")]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited:\n{self.tail()}"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"prometheus not ready in 60s:\n{self.tail()}")

    def __exit__(self, *_: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def api(self, path: str, **params: str) -> Any:
        """The `data` of an HTTP API answer; an error answer raises naming Prometheus' error."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as reply:
                answer = json.load(reply)
        except urllib.error.HTTPError as error:
            answer = json.load(error)
        if answer.get("status") != "success":
            raise PromQLError(f"{answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = (
            data["result"] if data["resultType"] in ("vector", "matrix") else [data]
        )
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        return list(self.api(f"label/{label}/values", **{"match[]": match}))

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets")["activeTargets"])


class PromQLError(Exception):
    pass
