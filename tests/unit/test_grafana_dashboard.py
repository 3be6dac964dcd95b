"""The Grafana dashboard (charts/regionshift/files/grafana-dashboard.json), without a cluster.

Every panel has queries, every query names only metrics the operator exports
(operator/regionshift/metrics.py), and the chart ships the dashboard for Grafana's sidecar on
request. That every query finds data in a real Prometheus scraping running operators is
checked mid-evacuation by tests/integration/test_two_regions_evacuation.py
(:func:`tests.support.dashboard.check_dashboard_finds_data`).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.dashboard import dashboard, dashboard_queries, queries_without_data

ROOT = Path(__file__).resolve().parents[2]
METRICS = ROOT / "operator" / "regionshift" / "metrics.py"


def test_every_panel_has_queries_and_a_unique_id() -> None:
    panels = dashboard()["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    assert all(panel.get("targets") for panel in panels if panel["type"] != "row")
    titles = " ".join(panel["title"] for panel in panels).lower()
    for subject in ("verdict", "phase", "warm and desired", "route weights", "stage durations"):
        assert subject in titles


def test_grafanas_variables_are_expanded_as_grafana_expands_them() -> None:
    queries = dict(dashboard_queries(namespaces=["rg-1", "rg-2"], regionfailovers=["domain"]))
    assert all("$" not in expr for expr in queries.values())
    signal = next(expr for where, expr in queries.items() if "Signal and expected" in where)
    assert 'namespace=~"(rg-1|rg-2)"' in signal and 'regionfailover=~"domain"' in signal


def test_a_query_finds_data_only_with_a_series_holding_a_number() -> None:
    class Answers:
        """Stands in for the Prometheus of the integration test: fixed answers by query."""

        def query(self, promql: str) -> list[dict[str, Any]]:
            return {"a": [{"metric": {}, "value": [0, "NaN"]}, {"metric": {}, "value": [0, "2"]}],
                    "nan": [{"metric": {}, "value": [0, "NaN"]}], "none": []}[promql]

    empty = queries_without_data(Answers(), [("A", "a"), ("N", "nan"), ("E", "none")])  # type: ignore[arg-type]
    assert empty == {"N": "nan -> ['NaN']", "E": "none -> no series"}


def test_queries_name_only_metrics_the_operator_exports() -> None:
    exported = set(re.findall(r'^\w+ = (?:Counter|Gauge|Histogram|Enum)\(\s*"(\w+)"', METRICS.read_text(), re.M))
    exported |= {f"{name}{suffix}" for name in exported for suffix in ("_total", "_bucket", "_sum", "_count")}
    for where, expr in dashboard_queries():
        named = set(re.findall(r"\b(regionshift_\w+)\b", re.sub(r"\{[^}]*\}", "", expr)))
        assert named and named <= exported, (where, named - exported)


def test_the_chart_installs_the_dashboard_for_grafanas_sidecar_on_request() -> None:
    from regionshift.local.cluster import build_control_plane

    helm = build_control_plane().path("helm")
    chart = ROOT / "charts" / "regionshift"

    def configmaps(*values: str) -> list[dict[str, Any]]:
        args = [str(helm), "template", "rs", str(chart), "-n", "ops", "--skip-crds", "--set", "region=west"]
        for value in values:
            args += ["--set", value]
        done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc and doc["kind"] == "ConfigMap"]

    assert configmaps() == []
    (configmap,) = configmaps("grafanaDashboard.enabled=true")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["regionshift.json"]) == dashboard()
