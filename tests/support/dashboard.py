"""The Grafana dashboard's queries (``charts/regionshift/files/grafana-dashboard.json``), for the tests that run them.

* :func:`dashboard_queries`: every query of every panel and of every query variable, with
  Grafana's variables expanded as Grafana expands them for a dashboard of the last hour
  (a multi-value variable becomes a regex alternation of the chosen values).
* :func:`check_dashboard_finds_data`: runs them all against a Prometheus until each returns
  at least one series with a number (not NaN), and fails the test naming every query that
  never did and what it returned. The two-region evacuation test
  (``tests/integration/test_two_regions_evacuation.py``) calls it mid-evacuation, against the
  shared Prometheus scraping both regions' operator processes: the dashboard's data is what
  running operators export, not a stand-in.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from regionshift.local.prometheus import PrometheusServer

__all__ = ["DASHBOARD", "check_dashboard_finds_data", "dashboard", "dashboard_queries", "queries_without_data"]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "regionshift" / "files" / "grafana-dashboard.json"

RATE_INTERVAL = "1m"
"""Grafana's ``$__rate_interval`` for a one-hour dashboard (four scrape intervals at least)."""
RANGE = "1h"
"""Grafana's ``$__range``: the dashboard's default time range (``time.from: now-1h``)."""


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana imports it."""
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def _alternation(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else "(" + "|".join(values) + ")"


def dashboard_queries(*, namespaces: Sequence[str] = (".*",),
                      regionfailovers: Sequence[str] = (".*",)) -> list[tuple[str, str]]:
    """``(where, PromQL)`` of every panel target and every query variable, Grafana's variables expanded.

    ``namespaces`` and ``regionfailovers`` are the values chosen for the ``namespace`` and
    ``regionfailover`` variables, as regexes (Kubernetes names are: no character of theirs needs
    escaping); the default is Grafana's "All".
    """
    variables: Mapping[str, str] = {
        "$__rate_interval": RATE_INTERVAL,
        "$__range": RANGE,
        "$namespace": _alternation(namespaces),
        "$regionfailover": _alternation(regionfailovers),
    }
    board = dashboard()
    found = [(f"panel {panel['title']!r} {target['refId']}", target["expr"])
             for panel in board["panels"] for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            call = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable["query"]["query"])
            assert call, variable
            found.append((f"variable {variable['name']}", call.group(1)))
    expanded = []
    for where, expr in found:
        for name in sorted(variables, key=len, reverse=True):  # $__range before a shorter name it starts with
            expr = expr.replace(name, variables[name])
        assert "$" not in expr, (where, expr)
        expanded.append((where, expr))
    return expanded


def _numbers(result: list[dict[str, Any]]) -> list[float]:
    return [value for value in (float(series["value"][1]) for series in result) if math.isfinite(value)]


def queries_without_data(prometheus: PrometheusServer, queries: Sequence[tuple[str, str]]) -> dict[str, str]:
    """``{where: "PromQL -> what it returned"}`` for every query without one series holding a number.

    A query Prometheus refuses raises RuntimeError (a syntax error is not "no data yet").
    """
    empty = {}
    for where, expr in queries:
        result = prometheus.query(expr)
        if not _numbers(result):
            empty[where] = f"{expr} -> {[series['value'][1] for series in result] or 'no series'}"
    return empty


def check_dashboard_finds_data(prometheus: PrometheusServer, *, namespaces: Sequence[str],
                               regionfailovers: Sequence[str], timeout_seconds: float = 90.0) -> int:
    """Run every dashboard query until each finds data; returns how many queries ran, fails the test otherwise.

    Polls, because a rate or an increase needs two scrapes in its window and the stage
    durations a scrape after the milestone.
    """
    queries = dashboard_queries(namespaces=namespaces, regionfailovers=regionfailovers)
    deadline = time.monotonic() + timeout_seconds
    while True:
        empty = queries_without_data(prometheus, queries)
        if not empty:
            return len(queries)
        if time.monotonic() > deadline:
            pytest.fail(f"dashboard queries that found no data in {timeout_seconds:g} s:\n"
                        + "\n".join(f"  {where}: {what}" for where, what in empty.items()))
        time.sleep(1.0)
