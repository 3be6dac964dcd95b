"""The drill's pieces that need no cluster: its RegionFailovers, its history, its lock, its report."""

from __future__ import annotations

from pathlib import Path

import pytest

from regionshift.api.models import RegionFailoverSpec
from regionshift.local import drill
from regionshift.local.drill import DrillConfig, DrillRefused, DrillReport, drill_lock, region_failover, write_report

SERVICES = ["svc-000", "svc-001"]
GATEWAYS = {r.name: f"{r.name}.localhost:4000" for r in drill.DEFAULT_REGIONS}


def test_each_region_failover_is_automatic_sampled_as_configured_and_names_the_other_regions_as_peers() -> None:
    config = DrillConfig(services=2, sample_seconds=5)
    manifest = region_failover(config, region="us-west", gateways=GATEWAYS, prometheus_url="http://127.0.0.1:9090",
                               services=SERVICES)
    spec = RegionFailoverSpec.model_validate(manifest["spec"])
    assert getattr(spec.mode, "value", spec.mode) == "Automatic"
    assert spec.signal.step_seconds == 5
    assert sorted(p.name for p in spec.peers) == ["eu-west", "us-east"]
    assert {getattr(t.kind, "value", t.kind): t.routes for t in spec.traffic} == {"GatewayAPI": SERVICES, "ExternalDNS": SERVICES}


def test_the_history_covers_the_forecasts_window_for_the_signal_and_every_services_replicas() -> None:
    config = DrillConfig(services=2)
    curves = drill._curves(config, start=1_000_000.0)
    history = drill._history(config, curves, end=1_000_000.0, services=SERVICES)
    signal = {m.labels: points for m, points in history.items() if m.name == drill.SIGNAL_METRIC}
    replicas = [m for m in history if m.name == drill.REPLICAS_METRIC]
    assert len(signal) == 3 and len(replicas) == 3 * 2
    points = next(iter(signal.values()))
    assert points[-1][0] == 1_000_000.0
    assert points[-1][0] - points[0][0] == drill.HISTORY_DAYS * 86_400
    assert all(value >= 0 for _, value in points)


def test_a_services_replicas_cover_its_traffic_with_headroom() -> None:
    assert drill._replicas_for(0.0, capacity=10.0) == 1
    assert drill._replicas_for(25.0, capacity=10.0) == 3  # 30 with 20 % headroom


def test_a_second_drill_is_refused_while_one_holds_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drill, "state_root", lambda: tmp_path)
    with drill_lock():
        with pytest.raises(DrillRefused, match="already running"):
            with drill_lock():
                pass
    with drill_lock():  # released: the next drill runs
        pass


def test_the_report_has_the_timeline_and_the_stream_starts_lost(tmp_path: Path) -> None:
    config = DrillConfig(services=2, report_dir=tmp_path)
    report = DrillReport(timeline={"fault": 0.0, "detected": 16.2, "settled": 21.0}, lost_stream_starts=1234.0,
                         demanded_stream_starts=100_000.0,
                         samples=[(0.0, {"us-east": 600.0}, {"us-east": 600.0}, {"us-east": "Steady"}),
                                  (1.0, {"us-east": 600.0}, {"us-east": 590.0}, {"us-east": "Steady"})])
    files = write_report(report, config=config)
    text = (tmp_path / "report.md").read_text()
    assert "| detected | 16.2 |" in text and "lost (demanded minus served): 1,234" in text
    assert files[0] == tmp_path / "report.md"
