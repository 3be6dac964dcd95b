"""The chart's alerts (charts/regionshift/files/prometheus-rules.yaml) under ``promtool test rules``.

promtool comes with Debian's prometheus package, which the Makefile installs; the test is
skipped only where it is missing. Each alert has a case in prometheus-rules.test.yaml that
makes it fire on the series the operator exports, and a moment where it must not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "regionshift" / "files" / "prometheus-rules.yaml"
TESTS = Path(__file__).with_name("prometheus-rules.test.yaml")
METRICS = ROOT / "operator" / "regionshift" / "metrics.py"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (apt-get install prometheus)")


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


@needs_promtool
def test_rules_are_valid() -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_every_alert_passes_its_promtool_cases() -> None:
    result = subprocess.run([PROMTOOL, "test", "rules", TESTS.name], cwd=TESTS.parent, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_makes_it_fire() -> None:
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    firing = {check["alertname"] for case in cases for check in case.get("alert_rule_test", []) if check["exp_alerts"]}
    assert {rule["alert"] for rule in alerts()} == firing


def test_alerts_name_only_metrics_the_operator_exports() -> None:
    exported = set(re.findall(r'^\w+ = (?:Counter|Gauge|Histogram|Enum)\(\s*"(\w+)"', METRICS.read_text(), re.M))
    exported |= {f"{name}_total" for name in exported}
    for rule in [rule for rule in alerts() if rule["alert"] != "RegionshiftOperatorDown"]:  # that one reads `up`
        selectors_dropped = re.sub(r"\{[^}]*\}", "", rule["expr"])  # label names (an Enum's too) are not metrics
        named = set(re.findall(r"\b(regionshift_\w+)\b", selectors_dropped))
        assert named, rule["alert"]
        assert named <= exported, (rule["alert"], named - exported)
