"""The chart's alert rules, rendered by helm, checked and unit-tested by promtool: every
alert the chart ships has a case in alerts.test.yaml (firing after its `for`, not before,
naming the ModelDeployment, and not for what is not its business)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from monitoring import PROMTOOL, chart_rules, needs_prometheus

HERE = Path(__file__).resolve().parent
TESTS = HERE / "alerts.test.yaml"

pytestmark = needs_prometheus


def _rendered(tmp_path: Path) -> Path:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(chart_rules(), sort_keys=False))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    return rules


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True)


def test_promtool_check_rules(tmp_path: Path) -> None:
    checked = _promtool("check", "rules", "--lint=all", "--lint-fatal", str(_rendered(tmp_path)))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_test_rules(tmp_path: Path) -> None:
    _rendered(tmp_path)
    tested = _promtool("test", "rules", str(tmp_path / TESTS.name))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    print(tested.stdout.strip())


def test_every_alert_has_a_firing_case() -> None:
    shipped = {r["alert"] for g in chart_rules()["groups"] for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    firing = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert shipped == firing, f"without a firing case: {sorted(shipped - firing)}"
