"""``kubectl regionshift``: the status text and the edit of ``spec.evacuate``, as pure functions (plan: test_kubectl_plan.py)."""

from __future__ import annotations

import copy
import importlib
import tomllib
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from regionshift.api.models import RegionFailoverStatus
from regionshift.kubectl.button import ButtonError, evacuate_edit, gitops_snippet
from regionshift.kubectl.main import _parser, main
from regionshift.kubectl.render import render_status
from tests.support.status_fixtures import MID_EVACUATION, SPEC

NOW = dt.datetime(2026, 11, 29, 3, 0, 0, tzinfo=dt.timezone.utc)

def rf(*, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "regionshift.io/v1alpha1", "kind": "RegionFailover",
            "metadata": {"name": "streaming", "namespace": "shop", "resourceVersion": "42"},
            "spec": {**copy.deepcopy(SPEC), **spec}, "status": copy.deepcopy(status) if status is not None else {}}


def section(lines: list[str], header: str) -> list[list[str]]:
    """The rows (split in words) of the table whose header line starts with ``header``."""
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_the_fixture_is_a_valid_status() -> None:
    RegionFailoverStatus.model_validate(MID_EVACUATION)


def test_status_shows_every_region_with_signal_verdict_guard_phase_and_role() -> None:
    text = render_status(rf=rf(status=MID_EVACUATION), now=NOW)
    lines = text.splitlines()
    assert lines[0].startswith("RegionFailover shop/streaming  region us-east  mode Automatic  phase Evacuating")
    assert "evaluated 3s ago" in lines[0]
    header = next(line for line in lines if line.startswith("REGION"))
    assert header.split() == ["REGION", "SIGNAL", "EXPECTED", "RATIO", "VERDICT", "GUARD", "PHASE/ROLE"]
    row = {cells[0]: cells for cells in section(lines, "REGION")}
    assert row["us-east"] == ["us-east", "1234", "1180", "1.05", "Healthy", "-", "Savior"]
    assert row["us-west"] == ["us-west", "12", "1150", "0.01", "Unhealthy", "-", "Evacuating"]
    assert row["eu-west"] == ["eu-west", "51.2k", "90k", "0.57", "HeldBack", "RecentRollout", "Savior"]
    assert "  eu-west: a Deployment rolled out 40 s ago" in lines
    assert "evacuation gate: Open" in lines


def test_status_shows_the_share_a_region_failing_back_serves_again() -> None:
    status = copy.deepcopy(MID_EVACUATION)
    status["evacuations"][0].update(phase="FailingBack", share=0.3)
    rows = {cells[0]: cells for cells in section(render_status(rf=rf(status=status), now=NOW).splitlines(), "REGION")}
    assert rows["us-west"][-2:] == ["FailingBack", "30%"]


def test_status_shows_weights_and_a_conflict() -> None:
    lines = render_status(rf=rf(status=MID_EVACUATION), now=NOW).splitlines()
    assert section(lines, "ROUTE") == [
        ["web", "GatewayAPI", "eu-west", "50", "50", "yes"],
        ["us-east", "50", "50"],
        ["us-west", "0", "0"],
        ["web-dns", "ExternalDNS", "eu-west", "33", "50", "CONFLICT"],
        ["us-east", "33", "50"],
        ["us-west", "34", "0"],
    ]
    assert "condition RoutesReady=False Conflict: web-dns: another writer set the weights" in lines
    assert not any(line.startswith("condition Detecting") for line in lines)


def test_status_shows_the_timeline_of_the_evacuation_under_way() -> None:
    lines = render_status(rf=rf(status=MID_EVACUATION), now=NOW).splitlines()
    assert "us-west waits for: DNS weights to hold" in lines
    assert any(line.startswith("evacuation Evacuating: us-west (by Verdict, decided 15s ago)") for line in lines)
    milestones = {line.split()[0]: line.split() for line in lines if line.startswith("  ")}
    assert milestones["ungated"][1] == "+1.2s"
    assert milestones["shifted"][1:] == ["+3.4s", "2026-11-29T02:59:48Z"]
    assert milestones["settled"][1:] == ["-", "-"]
    assert any(line.startswith("last transition: us-west Steady -> Evacuating by Verdict 15s ago") for line in lines)


def test_status_shows_the_last_evacuation_when_none_is_under_way() -> None:
    status = {"phase": "Steady", "lastEvaluatedAt": "2026-11-29T02:00:00Z",
              "lastEvacuation": {**MID_EVACUATION["evacuations"][0]["timeline"], "settledAfterSeconds": 9.0,
                                 "failbackDoneAfterSeconds": 600.0}}
    lines = render_status(rf=rf(status=status), now=NOW).splitlines()
    assert "evaluated 60m ago" in lines[0]
    assert any(line.startswith("last evacuation: us-west") for line in lines)
    assert any(line.split()[:3] == ["failback", "done", "+600.0s"] for line in lines)


def test_status_of_a_new_domain_lists_the_regions_of_the_spec() -> None:
    lines = render_status(rf=rf(status=None), now=NOW).splitlines()
    assert "phase -" in lines[0] and "evaluated - ago" in lines[0]
    rows = section(lines, "REGION")
    assert [r[0] for r in rows] == ["us-east", "us-west", "eu-west"]
    assert all(r[1:] == ["-"] * 6 for r in rows)


def test_status_tables_fit_a_terminal_even_with_long_names() -> None:
    status = copy.deepcopy(MID_EVACUATION)
    status["regions"][0]["name"] = "a-very-long-region-name-that-would-not-fit"
    status["regions"][2]["heldBackBy"] = "SaviorsNotWarmAndSomethingElseEntirely"
    status["weights"][0]["current"] = {f"region-number-{i}-with-a-long-name": 10 for i in range(10)}
    status["weights"][0]["route"] = "a-route-with-a-name-far-longer-than-a-column"
    for text in (render_status(rf=rf(status=status), now=NOW), render_status(rf=rf(status=MID_EVACUATION), now=NOW)):
        lines = text.splitlines()
        limit = 100 if text.count("a-very-long") else 80  # 80 for names of up to 10 characters, 100 at most
        for header in ("REGION", "ROUTE", "  MILESTONE"):
            start = next(i for i, line in enumerate(lines) if line.startswith(header))
            end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
            assert all(len(line) <= limit for line in lines[start:end]), lines[start:end]


def test_evacuate_adds_the_region_with_a_resource_version_precondition() -> None:
    edit = evacuate_edit(obj=rf(evacuate=["eu-west"]), region="us-west", evacuate=True)
    assert edit.before == ["eu-west"] and edit.after == ["eu-west", "us-west"]
    assert edit.patch == {"spec": {"evacuate": ["eu-west", "us-west"]}, "metadata": {"resourceVersion": "42"}}


def test_evacuate_and_failback_are_idempotent() -> None:
    assert evacuate_edit(obj=rf(evacuate=["us-west"]), region="us-west", evacuate=True).patch is None
    assert evacuate_edit(obj=rf(), region="us-west", evacuate=False).patch is None


def test_failback_takes_only_that_region_out() -> None:
    edit = evacuate_edit(obj=rf(evacuate=["us-west", "eu-west"]), region="us-west", evacuate=False)
    assert edit.patch == {"spec": {"evacuate": ["eu-west"]}, "metadata": {"resourceVersion": "42"}}
    last = evacuate_edit(obj=rf(evacuate=["us-west"]), region="us-west", evacuate=False)
    assert last.patch is not None and last.patch["spec"] == {"evacuate": []}  # [] in a merge patch, not null


def test_evacuate_refuses_an_unknown_region_and_the_last_serving_one() -> None:
    with pytest.raises(ButtonError, match="not a region"):
        evacuate_edit(obj=rf(), region="mars", evacuate=True)
    with pytest.raises(ButtonError, match="no region serving"):
        evacuate_edit(obj=rf(evacuate=["us-west", "eu-west"]), region="us-east", evacuate=True)


def test_gitops_snippet_is_the_same_change_as_yaml() -> None:
    doc = yaml.safe_load(gitops_snippet(name="streaming", namespace="shop", evacuate=["us-west"]))
    assert doc == {"apiVersion": "regionshift.io/v1alpha1", "kind": "RegionFailover",
                   "metadata": {"name": "streaming", "namespace": "shop"}, "spec": {"evacuate": ["us-west"]}}


def test_arguments_like_kubectl() -> None:
    args = _parser().parse_args(["-n", "shop", "--context", "us-east", "evacuate", "us-west", "--name", "streaming"])
    assert (args.namespace, args.context, args.command, args.region, args.name) == (
        "shop", "us-east", "evacuate", "us-west", "streaming")
    assert _parser().parse_args(["status"]).name is None
    plan = _parser().parse_args(["plan", "us-west", "--prometheus-url", "http://127.0.0.1:9090"])
    assert (plan.command, plan.region, plan.prometheus_url) == ("plan", "us-west", "http://127.0.0.1:9090")


def test_the_package_installs_the_plugin_as_kubectl_regionshift() -> None:
    scripts = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["kubectl-regionshift"].partition(":")
    assert getattr(importlib.import_module(module), function) is main
