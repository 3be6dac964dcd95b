"""A small whole drill, end to end: three regions, two services, a cluster fault, both runs, the report.

Short phases (3-s samples, an outage held 5 s, new pods Ready 5 s after they are created),
the drill takes 3.3 to 3.6 minutes on the 2-core machine; it is the only test that runs the
README's main job as a user does, so it runs in every ``make test``. The figures are checked
against the simulator's own series (the samples the report plots), not against any duration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from regionshift.local.drill import DrillConfig, DrillReport, RunResult, run_drill

pytestmark = [pytest.mark.integration]


def integral(run: RunResult, *, lost: bool) -> float:
    """Stream starts over the run's samples (trapezoids over the seconds between samples)."""
    total = 0.0
    for (t0, d0, s0, _), (t1, d1, s1, _) in zip(run.samples, run.samples[1:], strict=False):
        a = sum(d0.values()) - (sum(s0.values()) if lost else 0.0)
        b = sum(d1.values()) - (sum(s1.values()) if lost else 0.0)
        total += (t1 - t0) * (a + b) / 2
    return total


def test_a_small_drill_runs_to_the_end_with_its_baseline_and_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGIONSHIFT_STATE", str(tmp_path / "state"))
    config = DrillConfig(services=2, fault="cluster", sample_seconds=3, outage_seconds=5.0,
                         start_up_delay_seconds=5.0, report_dir=tmp_path / "report", timeout_seconds=400.0)
    lines: list[str] = []
    report: DrillReport = run_drill(config, print_=lines.append)

    shift, base = report.regionshift, report.baseline
    assert base is not None
    assert list(shift.timeline)[:5] == ["fault", "detected", "ungated", "shifted", "settled"], shift.timeline
    assert {"detected", "shifted", "scaled", "capacity ready", "healed", "restored"} <= set(base.timeline)
    assert shift.timeline["detected"] <= shift.timeline["settled"] <= shift.timeline["healed"]
    assert base.timeline["detected"] <= base.timeline["capacity ready"]
    # The report's totals are the simulator's own counters; its plotted series must add up to them.
    for run in (shift, base):
        assert 0 <= run.lost_stream_starts <= run.demanded_stream_starts
        assert integral(run, lost=False) == pytest.approx(run.demanded_stream_starts, rel=0.1)
        assert integral(run, lost=True) == pytest.approx(run.lost_stream_starts, rel=0.25, abs=300.0)
        assert run.lost_after_detection is not None and 0 <= run.lost_after_detection <= run.lost_stream_starts
    assert report.ratio is not None and report.ratio_after_detection is not None
    assert [u.region for u in report.operators] == [r.name for r in config.regions]
    assert all(u.cpu_seconds > 0 and u.peak_rss_bytes > 0 and u.api_requests > u.api_writes > 0
               for u in report.operators), report.operators

    text = (config.report_dir / "report.md").read_text()
    assert "| milestone (seconds after the fault) | regionshift | baseline |" in text
    assert "the stream starts regionshift lost" in text
    assert (config.report_dir / "report.png").stat().st_size > 0
    assert any("stopping every process" in line for line in lines)
