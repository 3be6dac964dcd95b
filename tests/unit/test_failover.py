"""Pure parts of the RegionFailover controller and its history cache."""

from __future__ import annotations

import datetime as dt
import math

from regionshift.decide.detection import RegionVerdict
from regionshift.controllers.regionfailover import _align, _dense, _previous, domain_status, expand
from regionshift.adapters.history_store import STORE_STEP_SECONDS, History, decode, encode
from regionshift.api.models import Verdict

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def test_expand_fills_placeholders_and_keeps_promql_braces() -> None:
    assert expand('sum(rate(x{region="{region}",ns="{namespace}"}[1m]))', region="east", namespace="shop") == \
        'sum(rate(x{region="east",ns="shop"}[1m]))'


def test_dense_places_samples_on_the_grid_with_gaps() -> None:
    history = _dense([(100.0, 1.0), (160.0, 2.0), (280.0, 4.0)], step=60.0)
    assert history.start == 100.0 and history.step_seconds == 60.0
    assert history.values[:2] == (1.0, 2.0) and math.isnan(history.values[2]) and history.values[3] == 4.0


def test_align_pairs_traffic_and_replicas_by_time() -> None:
    traffic = History(start=0.0, step_seconds=60.0, values=(10.0, 20.0, math.nan, 40.0))
    replicas = History(start=60.0, step_seconds=60.0, values=(2.0, 3.0, 4.0))
    assert _align(traffic, replicas) == [(20.0, 2.0), (40.0, 4.0)]


def test_history_cache_round_trip_downsamples() -> None:
    minutes = History(start=0.0, step_seconds=60.0, values=tuple(float(i % 5) for i in range(60)))
    data = encode({"signal/east": minutes}, saved_at=1234.0)
    histories, saved_at = decode(data)
    assert saved_at == 1234.0
    east = histories["signal/east"]
    assert east.step_seconds == STORE_STEP_SECONDS and len(east.values) == 12
    assert all(v == 2.0 for v in east.values)
    assert decode(None) == ({}, None)


def test_domain_status_lists_unhealthy_and_held_back_and_keeps_drop_start() -> None:
    verdicts = {
        "east": RegionVerdict(region="east", verdict=Verdict.HEALTHY, message="ok", ratio=0.987654),
        "west": RegionVerdict(region="west", verdict=Verdict.UNHEALTHY, message="down", ratio=0.3,
                              drop_started_at=T0, unhealthy_since=T0 + dt.timedelta(seconds=3)),
        "central": RegionVerdict(region="central", verdict=Verdict.HELD_BACK, message="rollout"),
    }
    detecting = {"type": "Detecting", "status": "True", "reason": "SignalRead", "message": "", "lastTransitionTime": "t"}
    status = domain_status(verdicts=verdicts, old_status={}, detecting=detecting, generation=2,
                           regions=["east", "west", "central"])
    assert status["unhealthy"] == ["west"] and status["heldBack"] == ["central"]
    assert status["regions"][0]["ratio"] == 0.9877
    assert status["regions"][1]["dropStartedAt"] == "2026-11-01T00:00:00Z"
    previous = _previous(status)
    assert previous["west"].verdict == Verdict.UNHEALTHY
    assert previous["west"].drop_started_at == T0
    assert previous["west"].unhealthy_since == T0 + dt.timedelta(seconds=3)
