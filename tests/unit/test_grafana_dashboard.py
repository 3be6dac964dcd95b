"""The Grafana dashboard (charts/regionshift/files/grafana-dashboard.json) against a real Prometheus.

Every query of every panel (and of the template variables) must be accepted by Prometheus,
name only metrics the operator exports (operator/regionshift/metrics.py), and find data when
Prometheus scrapes the operator's own metric objects: a child process imports
:mod:`regionshift.metrics`, sets each metric as an evacuation would, and serves them with
:func:`regionshift.metrics.serve_metrics` (the operator's /metrics, without the operator:
no running operator is needed to prove the queries read its series). Skipped only where
Prometheus is missing (the Makefile installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from regionshift.local.prometheus import PrometheusServer

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "regionshift" / "files" / "grafana-dashboard.json"
METRICS = ROOT / "operator" / "regionshift" / "metrics.py"

# Grafana's variables, as Grafana would expand them for "All" and a 1 h dashboard.
VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$regionfailover": ".*"}

FEEDER = """
import sys, time
from regionshift import metrics as m
ns, rf = "shop", "streaming"
for region, verdict in (("us-east", "Healthy"), ("us-west", "Unhealthy")):
    m.VERDICTS.labels(ns, rf, region).state(verdict)
    m.REGION_SIGNAL.labels(ns, rf, region).set(100.0 if region == "us-east" else 0.0)
    m.REGION_EXPECTED.labels(ns, rf, region).set(110.0)
    m.EVACUATION_PHASE.labels(ns, rf, region).state("Evacuated" if region == "us-west" else "Steady")
    m.EVACUATION_SHARE.labels(ns, rf, region).set(0.0 if region == "us-west" else 1.0)
    m.ROUTE_WEIGHT.labels(ns, rf, "GatewayAPI", "web", region).set(0 if region == "us-west" else 100)
    m.REGION_DARK_REPLICAS.labels(rf, region, "warm").set(4)
m.REGIONFAILOVER_PHASE.labels(ns, rf).state("Evacuated")
m.EVACUATION_RECOMMENDED.labels(ns, rf, "us-west").set(0)
m.EVACUATION_DEFERRED.labels(ns, rf, "us-west").set(0)
m.ROUTE_HOLDS.labels(ns, rf, "GatewayAPI", "web").set(1)
m.ROUTE_CONFLICT.labels(ns, rf, "GatewayAPI", "web").set(0)
for state, value in (("desired", 4), ("warm", 3), ("serving", 3)):
    m.DARK_REPLICAS.labels(ns, "web", state).set(value)
m.serve_metrics(port=int(sys.argv[1]))
print("serving", flush=True)
while True:  # counters and histograms move, as they do while the operator runs
    m.DETECTIONS.labels("SignalRead").inc()
    for stage, seconds in (("ungated", 0.8), ("shifted", 2.0), ("settled", 9.0)):
        m.EVACUATION_STAGE_SECONDS.labels(stage).observe(seconds)
    time.sleep(0.25)
"""

needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                      reason="prometheus missing (apt-get install prometheus)")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable, Grafana's variables expanded."""
    found = [(f"{panel['title']} {target['refId']}", target["expr"])
             for panel in dashboard()["panels"] for target in panel.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            call = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable["query"]["query"])
            assert call, variable
            found.append((f"variable {variable['name']}", call.group(1)))
    expanded = []
    for where, expr in found:
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, (where, expr)
        expanded.append((where, expr))
    return expanded


def test_every_panel_has_queries_and_a_unique_id() -> None:
    panels = dashboard()["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    assert all(panel.get("targets") for panel in panels if panel["type"] != "row")
    titles = " ".join(panel["title"] for panel in panels).lower()
    for subject in ("verdict", "phase", "warm and desired", "route weights", "stage durations"):
        assert subject in titles


def test_queries_name_only_metrics_the_operator_exports() -> None:
    exported = set(re.findall(r'^\w+ = (?:Counter|Gauge|Histogram|Enum)\(\s*"(\w+)"', METRICS.read_text(), re.M))
    exported |= {f"{name}{suffix}" for name in exported for suffix in ("_total", "_bucket", "_sum", "_count")}
    for where, expr in queries():
        named = set(re.findall(r"\b(regionshift_\w+)\b", re.sub(r"\{[^}]*\}", "", expr)))
        assert named and named <= exported, (where, named - exported)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@needs_prometheus
def test_prometheus_accepts_every_query_and_finds_data() -> None:
    port = _free_port()
    feeder = subprocess.Popen([sys.executable, "-c", FEEDER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert feeder.stdout is not None and feeder.stdout.readline().strip() == "serving"
        with PrometheusServer(history={}) as prometheus:
            prometheus.add_scrape_target(f"127.0.0.1:{port}")
            prometheus.wait_until_scraped(f"127.0.0.1:{port}")
            empty: dict[str, str] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                empty = {}
                for where, expr in queries():
                    if not prometheus.query(expr):  # RuntimeError if Prometheus refuses the query
                        empty[where] = expr
                if not empty:
                    break
                time.sleep(1)  # rate() needs two scrapes in its window
            assert not empty, f"queries that found no data: {empty}"
    finally:
        feeder.kill()
        feeder.wait(timeout=10)


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
