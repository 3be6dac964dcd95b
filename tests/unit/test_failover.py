"""Pure parts of the RegionFailover controller: histories, their cache, status, sizing plans."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from itertools import count

import numpy as np
import pytest

from regionshift.adapters.history_store import STORE_STEP_SECONDS, decode, encode
from regionshift.api.models import Condition, DarkCapacityPolicy, RegionSignalStatus, Verdict
from regionshift.controllers.regionfailover.domain import expand
from regionshift.controllers.regionfailover.status import (
    detection_status,
    make_condition,
    previous_verdicts,
    wire,
)
from regionshift.decide.detection import RegionVerdict
from regionshift.decide.history import History, SeriesKey, align, dense, fetch_window, finite_span_seconds, merge
from regionshift.decide.sizing import SizingTarget, plan_sizing

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
DAY = 86_400.0


def test_expand_fills_placeholders_and_keeps_promql_braces() -> None:
    assert expand('sum(rate(x{region="{region}",ns="{namespace}"}[1m]))', region="east", namespace="shop") == \
        'sum(rate(x{region="east",ns="shop"}[1m]))'


def test_dense_places_samples_on_the_grid_with_gaps_as_float32() -> None:
    history = dense([(100.0, 1.0), (160.0, 2.0), (280.0, 4.0)], step_seconds=60.0)
    assert history.start == 100.0 and history.step_seconds == 60.0
    assert history.values.dtype == np.float32
    assert history.values[:2].tolist() == [1.0, 2.0] and math.isnan(history.values[2]) and history.values[3] == 4.0


def test_a_history_of_two_weeks_of_minutes_takes_four_bytes_a_sample() -> None:
    minutes = int(14 * DAY / 60)
    history = History(start=0.0, step_seconds=60.0, values=np.ones(minutes))
    assert history.values.dtype == np.float32 and history.nbytes == 4 * minutes


def test_first_fetch_asks_for_the_whole_window_on_the_grid() -> None:
    start, end = fetch_window(None, now=10_030.0, step_seconds=60.0, window_seconds=3600.0)
    assert (start, end) == (6420.0, 10_030.0)  # floor(6430 / 60) * 60
    assert start % 60 == 0


def test_a_refresh_asks_only_for_what_is_new_with_a_small_overlap() -> None:
    history = History(start=6420.0, step_seconds=60.0, values=np.arange(61, dtype=np.float32))
    assert history.end == 10_020.0
    start, end = fetch_window(history, now=10_630.0, step_seconds=60.0, window_seconds=3600.0)
    assert (start, end) == (10_020.0 - 2 * 60.0, 10_630.0)


def test_a_history_older_than_the_window_or_at_another_step_is_fetched_whole() -> None:
    old = History(start=0.0, step_seconds=60.0, values=np.ones(10, dtype=np.float32))
    assert fetch_window(old, now=100_000.0, step_seconds=60.0, window_seconds=3600.0)[0] == 96_360.0
    assert fetch_window(old, now=700.0, step_seconds=30.0, window_seconds=3600.0)[0] == -2910.0


def test_merge_appends_overwrites_the_overlap_and_drops_what_left_the_window() -> None:
    history = History(start=0.0, step_seconds=60.0, values=np.array([1, 2, 3, 4], dtype=np.float32))
    # re-read of 180 (was incomplete), then 240 and 360 new; 300 missing; window keeps 5 minutes
    merged = merge(history, [(180.0, 40.0), (240.0, 5.0), (360.0, 7.0)], now=360.0, step_seconds=60.0,
                   window_seconds=300.0)
    assert merged.start == 60.0
    assert merged.values.tolist()[:4] == [2.0, 3.0, 40.0, 5.0]
    assert math.isnan(merged.values[4]) and merged.values[5] == 7.0
    assert merged.values.dtype == np.float32


def test_merge_of_nothing_new_only_trims_and_merge_into_nothing_starts_on_the_grid() -> None:
    history = History(start=0.0, step_seconds=60.0, values=np.array([1, 2, 3], dtype=np.float32))
    assert merge(history, [], now=150.0, step_seconds=60.0, window_seconds=90.0).values.tolist() == [2.0, 3.0]
    fresh = merge(None, [(61.0, 1.0), (121.0, 2.0)], now=130.0, step_seconds=60.0, window_seconds=3600.0)
    assert fresh.start == 60.0 and fresh.values.tolist() == [1.0, 2.0]


def test_incremental_refresh_equals_a_whole_fetch() -> None:
    step, window = 60.0, 6 * 3600.0
    truth = {t: float(np.sin(t / 5000.0)) for t in np.arange(0.0, 2 * DAY, step)}

    def fetch(start: float, end: float) -> list[tuple[float, float]]:
        return [(t, v) for t, v in truth.items() if start <= t <= end]

    history = None
    for now in np.arange(window, 2 * DAY - step, 977.0):
        start, end = fetch_window(history, now=now, step_seconds=step, window_seconds=window)
        history = merge(history, fetch(start, end), now=now, step_seconds=step, window_seconds=window)
    assert history is not None
    start, end = fetch_window(None, now=now, step_seconds=step, window_seconds=window)
    whole = merge(None, fetch(start, end), now=now, step_seconds=step, window_seconds=window)
    assert history.start == whole.start
    np.testing.assert_array_equal(history.values, whole.values)


def test_finite_span_counts_from_first_to_last_value() -> None:
    values = np.array([np.nan, 1, np.nan, 2, np.nan], dtype=np.float32)
    assert finite_span_seconds(History(start=0.0, step_seconds=60.0, values=values)) == 120.0
    assert finite_span_seconds(History(start=0.0, step_seconds=60.0, values=np.array([np.nan, 1.0]))) == 0.0


def test_align_pairs_traffic_and_replicas_by_time() -> None:
    traffic = History(start=0.0, step_seconds=60.0, values=np.array([10.0, 20.0, math.nan, 40.0]))
    replicas = History(start=60.0, step_seconds=60.0, values=np.array([2.0, 3.0, 4.0]))
    x, y = align(traffic, replicas)
    assert list(zip(x.tolist(), y.tolist())) == [(20.0, 2.0), (40.0, 4.0)]


def test_align_averages_the_finer_history_to_the_coarser_step() -> None:
    traffic = History(start=0.0, step_seconds=60.0, values=np.arange(10, dtype=np.float32))
    replicas = History(start=0.0, step_seconds=300.0, values=np.array([1.0, 2.0]))
    x, y = align(traffic, replicas)
    assert x.tolist() == [2.0, 7.0] and y.tolist() == [1.0, 2.0]


def test_history_cache_round_trip_downsamples_and_keeps_queries() -> None:
    minutes = History(start=0.0, step_seconds=60.0, values=np.array([i % 5 for i in range(60)], dtype=np.float32))
    data = encode({"signal/east": minutes}, saved_at=1234.0, queries={"signal/east": 'sps{region="east"}'})
    histories, saved_at = decode(data)
    assert saved_at == 1234.0
    east = histories["signal/east"]
    assert east.step_seconds == STORE_STEP_SECONDS and len(east) == 12
    assert east.values.dtype == np.float32 and all(v == 2.0 for v in east.values)
    assert decode(None) == ({}, None)
    assert "signal/east" in decode(data, queries={"signal/east": 'sps{region="east"}'})[0]
    assert decode(data, queries={"signal/east": 'other{region="east"}'})[0] == {}


def test_series_keys_differ_when_anything_the_history_depends_on_differs() -> None:
    key = SeriesKey(query='sps{region="east"}', step_seconds=60.0, window_seconds=14.5 * DAY)
    assert key == SeriesKey(query='sps{region="east"}', step_seconds=60.0, window_seconds=14.5 * DAY)
    assert key != SeriesKey(query='sps2{region="east"}', step_seconds=60.0, window_seconds=14.5 * DAY)
    assert key != SeriesKey(query='sps{region="east"}', step_seconds=30.0, window_seconds=14.5 * DAY)
    assert key != SeriesKey(query='sps{region="east"}', step_seconds=60.0, window_seconds=7.5 * DAY)


def detecting() -> Condition:
    return make_condition(type_="Detecting", ok=True, reason="SignalRead", message="", now="2026-11-01T00:00:00Z",
                          generation=2, old=None)


def test_detection_status_is_the_model_lists_unhealthy_and_held_back_and_keeps_drop_start() -> None:
    verdicts = {
        "east": RegionVerdict(region="east", verdict=Verdict.HEALTHY, message="ok", ratio=0.987654),
        "west": RegionVerdict(region="west", verdict=Verdict.UNHEALTHY, message="down", ratio=0.3,
                              drop_started_at=T0, unhealthy_since=T0 + dt.timedelta(seconds=3)),
        "central": RegionVerdict(region="central", verdict=Verdict.HELD_BACK, message="rollout"),
        "south": RegionVerdict(region="south", verdict=Verdict.UNKNOWN, message="NoData: no forecast"),
    }
    status = detection_status(verdicts=verdicts, regions=["east", "west", "central", "south"],
                              conditions=[detecting()], generation=2, evaluated_at="2026-11-01T00:00:05Z", phase=None,
                              notes={"south": "only 5.0 h of history; a forecast needs at least a day"})
    assert all(isinstance(r, RegionSignalStatus) for r in status.regions)
    out = wire(status)
    assert out["lastEvaluatedAt"] == "2026-11-01T00:00:05Z" and out["observedGeneration"] == 2
    assert out["unhealthy"] == ["west"] and out["heldBack"] == ["central"] and "phase" not in out  # the evacuation owns phase
    assert out["regions"][0]["ratio"] == 0.9877
    assert out["regions"][1]["dropStartedAt"] == "2026-11-01T00:00:00Z"
    assert out["regions"][3]["message"].startswith("NoForecast: only 5.0 h of history")
    assert "weights" not in out and "timeline" not in out  # not detection's to write
    previous = previous_verdicts(out)
    assert previous["west"].verdict == Verdict.UNHEALTHY
    assert previous["west"].drop_started_at == T0
    assert previous["west"].unhealthy_since == T0 + dt.timedelta(seconds=3)


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    old = [{"type": "Sizing", "status": "True", "reason": "Sized", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    same = make_condition(type_="Sizing", ok=True, reason="Sized", message="m", now="2026-02-02T00:00:00Z",
                          generation=1, old=old)
    flipped = make_condition(type_="Sizing", ok=False, reason="PartlySized", message="m", now="2026-02-02T00:00:00Z",
                             generation=1, old=old)
    assert same.last_transition_time == "2026-01-01T00:00:00Z"
    assert flipped.last_transition_time == "2026-02-02T00:00:00Z"


def _minutes(values: np.ndarray) -> History:
    return History(start=0.0, step_seconds=60.0, values=values.astype(np.float32))


def test_plan_sizes_each_deployment_on_its_own() -> None:
    traffic = 1000.0 + 300.0 * np.sin(np.arange(2000) / 200.0)
    good = SizingTarget(name="api", replicas=_minutes(np.round(2 + traffic / 100.0)), current_replicas=12)
    empty = SizingTarget(name="new", replicas=_minutes(np.full(2000, np.nan)), current_replicas=3)
    plan = plan_sizing(targets=[empty, good], traffic=_minutes(traffic), policy=DarkCapacityPolicy(headroom_ratio=1.0),
                       own_peak=1300.0, peer_peaks={"west": 1040.0}, share=0.5, fitted_at=T0,
                       deadline=math.inf, clock=lambda: 0.0)
    assert set(plan.sized) == {"api"} and set(plan.failed) == {"new"} and plan.deferred == ()
    fit, sizing = plan.sized["api"]
    assert abs(fit.slope - 0.01) < 0.001
    assert sizing.forecast_replicas == 6  # 50 % of 1040 at 0.01 replicas per unit, 5.2 → 6
    assert "usable" in plan.failed["new"]


def test_plan_defers_what_it_does_not_reach_within_its_budget_but_always_sizes_one() -> None:
    traffic = 1000.0 + 300.0 * np.sin(np.arange(500) / 50.0)
    targets = [SizingTarget(name=f"d{i}", replicas=_minutes(np.round(2 + traffic / 100.0)), current_replicas=12)
               for i in range(5)]
    ticks = count()
    plan = plan_sizing(targets=targets, traffic=_minutes(traffic), policy=DarkCapacityPolicy(), own_peak=1300.0,
                       peer_peaks={"west": 1000.0}, share=1.0, fitted_at=T0, deadline=2.0,
                       clock=lambda: float(next(ticks)))
    assert list(plan.sized) == ["d0", "d1", "d2"] and plan.deferred == ("d3", "d4")
    late = plan_sizing(targets=targets, traffic=_minutes(traffic), policy=DarkCapacityPolicy(), own_peak=1300.0,
                       peer_peaks={}, share=1.0, fitted_at=T0, deadline=-1.0, clock=lambda: 0.0)
    assert list(late.sized) == ["d0"] and len(late.deferred) == 4


@pytest.mark.parametrize("hours", [5.0, 23.0])
def test_less_than_a_day_of_history_gives_no_forecast_with_a_reason(hours: float) -> None:
    from regionshift.controllers.regionfailover.domain import _fit_all

    steps = int(hours * 60)
    short = History(start=0.0, step_seconds=60.0, values=np.full(steps, 100.0))
    week = History(start=0.0, step_seconds=60.0, values=100.0 + 30.0 * np.sin(np.arange(7 * 1440) * 2 * np.pi / 1440))
    fits = _fit_all({"south": short, "east": week}, {})
    assert isinstance(fits["south"], str) and "a forecast needs at least a day" in fits["south"]
    assert not isinstance(fits["east"], str)


class _Stopped:
    """kopf's daemon flag, as far as the daemon loop uses it."""

    def __init__(self) -> None:
        self.stop = False

    def __bool__(self) -> bool:
        return self.stop

    async def wait(self, timeout: float | None = None) -> None:
        await asyncio.sleep(timeout or 0)


async def test_detection_keeps_its_step_while_sizing_hangs_with_stubbed_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's loops are independent: a sizing run that never ends does not hold detection or evacuation."""
    from regionshift.controllers import regionfailover

    detections: list[float] = []
    sizing_started = asyncio.Event()

    async def detect(*, body: dict, domain: object) -> None:  # type: ignore[type-arg]
        detections.append(time.monotonic())

    async def size_forever(*, body: dict, domain: object) -> None:  # type: ignore[type-arg]
        sizing_started.set()
        await asyncio.Event().wait()

    evacuations: list[float] = []

    async def evacuate(*, body: dict, domain: object) -> bool:  # type: ignore[type-arg]
        evacuations.append(time.monotonic())
        return False

    monkeypatch.setattr(regionfailover, "detect", detect)
    monkeypatch.setattr(regionfailover, "size", size_forever)
    monkeypatch.setattr(regionfailover, "evacuate", evacuate)
    stopped = _Stopped()
    body = {"metadata": {"uid": "stub-uid", "generation": 1, "namespace": "ns", "name": "domain"},
            "spec": {"signal": {"stepSeconds": 0.01}}}
    daemon = asyncio.create_task(regionfailover.serve(body=body, stopped=stopped))
    await asyncio.wait_for(sizing_started.wait(), timeout=5)
    count_then = len(detections)
    while len(detections) < count_then + 10:
        await asyncio.sleep(0.01)
    stopped.stop = True
    await asyncio.wait_for(daemon, timeout=5)
    assert len(evacuations) >= 10  # woken by every detection run
    assert "stub-uid" not in regionfailover.domain._domains  # released when the daemon stops


async def test_unreadable_rollouts_turn_a_guard_off_and_say_so_with_a_stubbed_403(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 403 on listing Deployments (an RBAC the in-process test operator cannot lack) is a condition."""
    from regionshift.adapters import kube
    from regionshift.api.models import RegionFailoverSpec
    from regionshift.controllers.regionfailover import detection
    from regionshift.controllers.regionfailover.domain import Domain

    def forbidden(**_: object) -> list[dict]:  # type: ignore[type-arg]
        raise kube.ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(kube, "list_deployments", forbidden)
    monkeypatch.setattr(kube, "list_custom", lambda **_: [])
    spec = RegionFailoverSpec.model_validate({
        "region": "east", "peers": [{"name": "west"}], "selector": {"matchLabels": {"tier": "web"}},
        "signal": {"prometheusUrl": "http://127.0.0.1:9", "query": 'sps{region="{region}"}'}})
    body = {"metadata": {"namespace": "ns", "name": "domain", "uid": "u"}}
    rollout, capacity, guards = await detection._guards(body=body, spec=spec, domain=Domain())
    assert rollout is None and capacity is None
    assert guards[:2] == (False, "RolloutsUnreadable")
    assert "HTTP 403 Forbidden" in guards[2] and "RecentRollout guard is off" in guards[2]


def test_the_last_rollout_lists_replica_sets_only_for_deployments_whose_revision_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from regionshift.adapters import kube
    from regionshift.controllers.regionfailover.detection import last_rollout

    calls: list[str] = []

    def list_replicasets(*, namespace: str, label_selector: str = "") -> list[dict]:  # type: ignore[type-arg]
        calls.append(label_selector)
        return [{"metadata": {"creationTimestamp": "2026-11-01T00:00:00Z", "ownerReferences": [{"uid": "d1"}]}}]

    monkeypatch.setattr(kube, "list_replicasets", list_replicasets)

    def deployment(revision: str) -> dict:  # type: ignore[type-arg]
        return {"metadata": {"uid": "d1", "annotations": {"deployment.kubernetes.io/revision": revision}},
                "spec": {"selector": {"matchLabels": {"app": "api"}}}}

    memo: dict[str, tuple[str, float | None]] = {}
    assert last_rollout(namespace="ns", deployments=[deployment("1")], memo=memo) == T0
    assert last_rollout(namespace="ns", deployments=[deployment("1")], memo=memo) == T0
    assert calls == ["app=api"]  # the second run lists nothing
    last_rollout(namespace="ns", deployments=[deployment("2")], memo=memo)
    assert calls == ["app=api", "app=api"]
    assert last_rollout(namespace="ns", deployments=[], memo=memo) is None and memo == {}


async def test_a_failing_detection_run_still_writes_status_with_its_time_with_stubbed_io(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever goes wrong inside a run, lastEvaluatedAt and a condition saying why are written."""
    from regionshift.controllers.regionfailover import detection
    from regionshift.controllers.regionfailover import status as rf_status
    from regionshift.controllers.regionfailover.domain import Domain

    async def signal(**_: object) -> tuple[dict, tuple[bool, str, str]]:  # type: ignore[type-arg]
        return {}, (True, "SignalRead", "")

    async def guards(**_: object) -> tuple[None, None, tuple[bool, str, str]]:
        return None, None, (True, "Read", "")

    def broken(**_: object) -> None:
        raise RuntimeError("a bug")

    written: list[dict] = []  # type: ignore[type-arg]

    async def write(*, body: object, status: object, manager: str) -> bool:
        written.append({"manager": manager, **wire(status)})  # type: ignore[arg-type]
        return True

    async def post(**_: object) -> None:
        pass

    monkeypatch.setattr(detection, "_read_signal", signal)
    monkeypatch.setattr(detection, "_guards", guards)
    monkeypatch.setattr(detection, "evaluate", broken)
    monkeypatch.setattr(rf_status, "write", write)
    monkeypatch.setattr(rf_status, "post", post)
    body = {"metadata": {"namespace": "ns", "name": "domain", "uid": "u", "generation": 3},
            "spec": {"region": "east", "peers": [{"name": "west"}], "selector": {"matchLabels": {"tier": "web"}},
                     "signal": {"prometheusUrl": "http://127.0.0.1:9", "query": 'sps{region="{region}"}'}}}
    await detection.detect(body=body, domain=Domain())
    (status,) = written
    assert status["manager"] == "regionshift-detection" and status["lastEvaluatedAt"]
    detecting = next(c for c in status["conditions"] if c["type"] == "Detecting")
    assert (detecting["status"], detecting["reason"]) == ("False", "InternalError") and "a bug" in detecting["message"]
    assert {r["name"]: r["verdict"] for r in status["regions"]} == {"east": "Unknown", "west": "Unknown"}


def test_participants_are_listed_without_the_shadows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API server leaves the shadows out (they carry their target's labels): half of a LIST to parse."""
    from regionshift.adapters import kube
    from regionshift.api.models import RegionFailoverSpec
    from regionshift.controllers.regionfailover import detection
    from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL

    selectors: list[str] = []

    def listed(*, namespace: str, label_selector: str = "") -> list[dict]:  # type: ignore[type-arg]
        selectors.append(label_selector)
        return [{"metadata": {"name": "web", "labels": {"tier": "web"}}}]

    monkeypatch.setattr(kube, "list_deployments", listed)
    spec = RegionFailoverSpec.model_validate({
        "region": "east", "peers": [{"name": "west"}], "selector": {"matchLabels": {"tier": "web"}},
        "signal": {"prometheusUrl": "http://127.0.0.1:9", "query": 'sps{region="{region}"}'}})
    assert [d["metadata"]["name"] for d in detection.participants(namespace="ns", spec=spec)] == ["web"]
    assert selectors == [f"tier=web,!{DARK_CLUSTER_LABEL}"]
