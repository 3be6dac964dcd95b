"""Evacuation metrics from a RegionFailover's status (controllers/regionfailover/observe.py).

Every value is read back from prometheus_client's default registry, as /metrics serves it.
Each test uses a RegionFailover name of its own, so the gauges of one never meet another's;
counters and histograms are global and compared before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from regionshift.api.models import Gate, Phase, RegionEvacuation, RegionFailoverStatus, Verdict
from regionshift.controllers.regionfailover.observe import (
    forget,
    record_action,
    record_dark_capacity,
    record_progress,
    record_stage,
    record_status,
)
from regionshift.decide.evacuation import DarkClusterObservation, Decision, FailbackSignal
from regionshift.decide.summary import evacuated_regions
from tests.unit.test_evacuation import Run, evacuate_east

NS = "shop"


def value(metric: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def state(metric: str, state_value: str, **labels: str) -> float | None:
    """An Enum's sample: 1 for the state it is in, 0 for the others, None when the series is gone."""
    return REGISTRY.get_sample_value(metric, {**labels, metric: state_value})


@pytest.fixture
def name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A RegionFailover name for this test only; its series are forgotten afterwards."""
    rf = request.node.name.replace("_", "-")[:50]
    yield rf
    forget(namespace=NS, name=rf)


def evacuating_status(**overrides: Any) -> RegionFailoverStatus:
    body: dict[str, Any] = {
        "phase": "FailingBack",
        "regions": [{"name": "east"}, {"name": "west"}, {"name": "central"}],
        "evacuations": [
            _evacuation("west", "Evacuated", share=0.0),
            _evacuation("central", "FailingBack", share=0.3),
        ],
        "roles": {"east": "Savior", "west": "Evacuated", "central": "Evacuated"},
        "weights": [
            {"provider": "GatewayAPI", "route": "web", "current": {"east": 100, "west": 0}, "holds": True},
            {"provider": "ExternalDNS", "route": "dns", "current": {"east": 200}, "holds": False, "conflict": True},
        ],
        "deferred": {"east": "no other region would be left serving"},
    }
    body.update(overrides)
    return RegionFailoverStatus.model_validate(body)


def _evacuation(region: str, phase: str, *, share: float) -> dict[str, Any]:
    return {
        "region": region, "phase": phase, "actor": "Verdict", "share": share,
        "lastTransitionAt": "2026-11-01T12:00:00Z",
        "timeline": {"region": region, "actor": "Verdict", "decidedAt": "2026-11-01T12:00:00Z"},
    }


# ---------------------------------------------------------------------------- record_status


def test_status_sets_the_phase_roles_shares_and_route_weights(name: str) -> None:
    record_status(namespace=NS, name=name, status=evacuating_status())
    rf = {"namespace": NS, "regionfailover": name}
    assert state("regionshift_regionfailover_phase", "FailingBack", **rf) == 1
    assert state("regionshift_regionfailover_phase", "Steady", **rf) == 0
    assert state("regionshift_evacuation_phase", "Evacuated", **rf, region="west") == 1
    assert state("regionshift_evacuation_phase", "FailingBack", **rf, region="central") == 1
    assert state("regionshift_evacuation_phase", "Steady", **rf, region="east") == 1
    assert state("regionshift_region_role", "Savior", **rf, region="east") == 1
    assert state("regionshift_region_role", "Evacuated", **rf, region="west") == 1
    assert value("regionshift_evacuation_share", **rf, region="central") == 0.3
    assert value("regionshift_evacuation_share", **rf, region="west") == 0.0
    assert value("regionshift_evacuation_share", **rf, region="east") == 1.0
    web = {**rf, "provider": "GatewayAPI", "route": "web"}
    dns = {**rf, "provider": "ExternalDNS", "route": "dns"}
    assert value("regionshift_route_weight", **web, region="east") == 100
    assert value("regionshift_route_weight", **web, region="west") == 0
    assert value("regionshift_route_weight", **dns, region="east") == 200
    assert value("regionshift_route_holds", **web) == 1 and value("regionshift_route_holds", **dns) == 0
    assert value("regionshift_route_conflict", **web) == 0 and value("regionshift_route_conflict", **dns) == 1
    assert value("regionshift_evacuation_deferred", **rf, region="east") == 1
    assert value("regionshift_evacuation_recommended", **rf, region="east") == 0  # a series, saying no


def test_status_removes_the_series_of_routes_and_regions_that_left_it(name: str) -> None:
    record_status(namespace=NS, name=name, status=evacuating_status())
    later = evacuating_status(
        phase="Evacuated",
        regions=[{"name": "east"}, {"name": "west"}],  # central left the domain
        evacuations=[_evacuation("west", "Evacuated", share=0.0)],
        roles={"east": "Savior", "west": "Evacuated"},
        weights=[{"provider": "GatewayAPI", "route": "web", "current": {"east": 100}, "holds": True}],
        deferred=None,
    )
    record_status(namespace=NS, name=name, status=later)
    rf = {"namespace": NS, "regionfailover": name}
    web = {**rf, "provider": "GatewayAPI", "route": "web"}
    dns = {**rf, "provider": "ExternalDNS", "route": "dns"}
    assert value("regionshift_route_weight", **web, region="east") == 100
    assert value("regionshift_route_weight", **web, region="west") is None, "a backend that left the route"
    assert value("regionshift_route_weight", **dns, region="east") is None, "a route that left spec.traffic"
    assert value("regionshift_route_holds", **dns) is None and value("regionshift_route_conflict", **dns) is None
    assert state("regionshift_evacuation_phase", "FailingBack", **rf, region="central") is None
    assert state("regionshift_region_role", "Evacuated", **rf, region="central") is None
    assert value("regionshift_evacuation_share", **rf, region="central") is None
    assert value("regionshift_evacuation_deferred", **rf, region="east") == 0, "no longer deferred"
    assert value("regionshift_evacuation_deferred", **rf, region="central") is None, "a region that left"
    assert state("regionshift_regionfailover_phase", "Evacuated", **rf) == 1


def test_steady_status_reports_every_region_serving_its_whole_share(name: str) -> None:
    status = RegionFailoverStatus.model_validate({"regions": [{"name": "east"}, {"name": "west"}]})
    record_status(namespace=NS, name=name, status=status)  # phase not written yet: Steady
    rf = {"namespace": NS, "regionfailover": name}
    assert state("regionshift_regionfailover_phase", "Steady", **rf) == 1
    for region in ("east", "west"):
        assert state("regionshift_evacuation_phase", "Steady", **rf, region=region) == 1
        assert state("regionshift_region_role", "Serving", **rf, region=region) == 1
        assert value("regionshift_evacuation_share", **rf, region=region) == 1.0


def test_recommendation_and_plan_mark_regions_left_to_a_human(name: str) -> None:
    status = RegionFailoverStatus.model_validate({
        "phase": "Steady", "regions": [{"name": "east"}, {"name": "west"}],
        "recommendation": {"regions": ["west"], "reason": "verdict Unhealthy", "since": "2026-11-01T12:00:00Z"},
        "plan": {"regions": ["west"], "message": "..."},
    })
    record_status(namespace=NS, name=name, status=status)
    rf = {"namespace": NS, "regionfailover": name}
    assert value("regionshift_evacuation_recommended", **rf, region="west") == 1
    record_status(namespace=NS, name=name, status=RegionFailoverStatus(phase=Phase.STEADY))
    assert value("regionshift_evacuation_recommended", **rf, region="west") is None


def test_forget_removes_every_series_of_the_regionfailover(name: str) -> None:
    record_status(namespace=NS, name=name, status=evacuating_status())
    record_dark_capacity(namespace=NS, name=name, dark_clusters=[])
    other = f"{name}-other"
    record_status(namespace=NS, name=other, status=evacuating_status())
    forget(namespace=NS, name=name)
    rf = {"namespace": NS, "regionfailover": name}
    assert state("regionshift_regionfailover_phase", "FailingBack", **rf) is None
    assert value("regionshift_route_weight", **rf, provider="GatewayAPI", route="web", region="east") is None
    assert value("regionshift_evacuation_dark_replicas", **rf, state="ready") is None
    assert state("regionshift_regionfailover_phase", "FailingBack", namespace=NS, regionfailover=other) == 1
    forget(namespace=NS, name=other)


# ---------------------------------------------------------------------------- the other records


def test_dark_capacity_is_ready_and_gated(name: str) -> None:
    record_dark_capacity(namespace=NS, name=name, dark_clusters=[
        DarkClusterObservation(name="api", evacuation_gate=Gate.OPEN, warm=4, ready=3),
        DarkClusterObservation(name="web", evacuation_gate=Gate.CLOSED, warm=2, ready=0),
    ])
    rf = {"namespace": NS, "regionfailover": name}
    assert value("regionshift_evacuation_dark_replicas", **rf, state="ready") == 3
    assert value("regionshift_evacuation_dark_replicas", **rf, state="gated") == 3


def test_actions_are_counted_by_kind_and_result() -> None:
    def count(kind: str, result: str) -> float:
        return value("regionshift_evacuation_actions_total", kind=kind, result=result) or 0.0

    before = count("SetWeights", "Failed")
    record_action(kind="SetWeights", result="Failed")
    record_action(kind="SetWeights", result="Failed")
    assert count("SetWeights", "Failed") == before + 2
    with pytest.raises(ValueError, match="unknown action kind"):
        record_action(kind="Transplant", result="Done")
    with pytest.raises(ValueError, match="unknown action result"):
        record_action(kind="OpenGates", result="Maybe")


def test_stage_seconds_fall_into_buckets_from_a_tenth_of_a_second_to_an_hour() -> None:
    def bucket(le: str) -> float:
        return value("regionshift_evacuation_stage_seconds_bucket", stage="shifted", le=le) or 0.0

    for stage in ("ungated", "shifted", "settled", "failback_started", "failback_done"):  # exported from the start
        assert value("regionshift_evacuation_stage_seconds_count", stage=stage) is not None, stage
    fast, slow, inf = bucket("0.1"), bucket("3600.0"), bucket("+Inf")
    record_stage(stage="shifted", seconds=0.05)
    record_stage(stage="shifted", seconds=3000)
    assert bucket("0.1") == fast + 1
    assert bucket("3600.0") == slow + 2
    assert bucket("+Inf") == inf + 2
    with pytest.raises(ValueError, match="unknown stage"):
        record_stage(stage="decided", seconds=1)


# ---------------------------------------------------------------------------- record_progress


class ObservedRun(Run):
    """The state machine's own test world, recording progress after every step as the handler will."""

    rf = "observed-run"

    def tick(self, seconds: float = 1.0) -> Decision:
        before = self.status
        decision = super().tick(seconds)
        record_progress(namespace=NS, name=self.rf, before=before, after=self.status)
        record_progress(namespace=NS, name=self.rf, before=self.status, after=self.status)  # a repeat counts nothing
        record_status(namespace=NS, name=self.rf, status=self.status)
        return decision


def stage_count(stage: str) -> float:
    return value("regionshift_evacuation_stage_seconds_count", stage=stage) or 0.0


def stage_sum(stage: str) -> float:
    return value("regionshift_evacuation_stage_seconds_sum", stage=stage) or 0.0


def test_progress_counts_each_milestone_once_through_a_whole_evacuation_and_failback() -> None:
    stages = ("ungated", "shifted", "settled", "failback_started", "failback_done")
    counts = {s: stage_count(s) for s in stages}
    sums = {s: stage_sum(s) for s in stages}
    rf = {"namespace": NS, "regionfailover": ObservedRun.rf}
    evacuations = 0.0  # every test forgets its RegionFailover, counters included
    run = ObservedRun()
    try:
        evacuate_east(run)
        timeline = run.evac().timeline
        assert stage_count("settled") == counts["settled"] + 1
        assert stage_sum("settled") == pytest.approx(sums["settled"] + timeline.settled_after_seconds)
        assert stage_count("ungated") == counts["ungated"] + 1 and stage_count("shifted") == counts["shifted"] + 1
        assert value("regionshift_evacuations_total", **rf, actor="Verdict") == evacuations + 1
        assert state("regionshift_evacuation_phase", "Evacuated", **rf, region="east") == 1

        run.world.verdicts["east"] = Verdict.UNKNOWN
        run.tick(400)  # the cool-down is over: failback starts
        assert stage_count("failback_started") == counts["failback_started"] + 1
        run.world.signal["east"] = FailbackSignal(served=100.0, forecast=100.0)
        run.until(Phase.STEADY, seconds=60)
        run.tick(60)  # lastEvacuation read back from the API server's form is the same evacuation: not counted again
        assert stage_count("failback_done") == counts["failback_done"] + 1
        assert stage_sum("failback_done") == pytest.approx(
            sums["failback_done"] + run.status.last_evacuation.failback_done_after_seconds)
        assert stage_count("settled") == counts["settled"] + 1, "no milestone counted twice"
        transitions = {
            (s.labels["from_phase"], s.labels["to_phase"], s.labels["actor"]): s.value
            for metric in REGISTRY.collect() if metric.name == "regionshift_evacuation_transitions"
            for s in metric.samples
            if s.name.endswith("_total") and s.labels["regionfailover"] == ObservedRun.rf
        }
        assert transitions == {("Steady", "Evacuating", "Verdict"): 1, ("Evacuating", "Evacuated", "Verdict"): 1,
                               ("Evacuated", "FailingBack", "Failback"): 1, ("FailingBack", "Steady", "Failback"): 1}
        assert state("regionshift_regionfailover_phase", "Steady", **rf) == 1
    finally:
        forget(namespace=NS, name=ObservedRun.rf)
    assert value("regionshift_evacuations_total", **rf, actor="Verdict") is None, "counters go with the RegionFailover"
    assert value("regionshift_evacuation_transitions_total", **rf, from_phase="Steady", to_phase="Evacuating",
                 actor="Verdict") is None


def test_an_aborted_failback_counts_a_new_attempt_when_it_starts_again() -> None:
    run = ObservedRun()
    try:
        evacuate_east(run)
        run.world.verdicts["east"] = Verdict.UNKNOWN
        started = stage_count("failback_started")
        run.tick(400)
        assert stage_count("failback_started") == started + 1
        run.world.signal["east"] = FailbackSignal(served=1.0, forecast=100.0)  # far below the share
        for _ in range(5):
            run.tick(60)
            if run.status.phase == Phase.EVACUATED:
                break
        assert run.status.phase == Phase.EVACUATED, "the failback aborted"
        rf = {"namespace": NS, "regionfailover": ObservedRun.rf}
        aborted = value("regionshift_evacuation_transitions_total", **rf, from_phase="FailingBack",
                        to_phase="Evacuated", actor="Failback")
        assert aborted == 1
        run.world.signal["east"] = FailbackSignal(served=100.0, forecast=100.0)
        run.now += timedelta(seconds=3600)
        run.tick(1)
        assert stage_count("failback_started") == started + 2, "the second attempt is a milestone of its own"
    finally:
        forget(namespace=NS, name=ObservedRun.rf)


# ---------------------------------------------------------------------------- the EVACUATED column


def test_evacuated_regions_names_each_region_with_the_phase_that_is_not_yet_evacuated() -> None:
    def evac(region: str, phase: str, share: float = 0.0) -> RegionEvacuation:
        return RegionEvacuation.model_validate(_evacuation(region, phase, share=share))

    assert evacuated_regions([]) is None
    assert evacuated_regions([evac("us-west", "Evacuated")]) == "us-west"
    assert evacuated_regions([evac("us-west", "Evacuating", 1.0)]) == "us-west (Evacuating)"
    assert evacuated_regions([evac("us-west", "Evacuated"), evac("eu-west", "FailingBack", 0.3)]) == (
        "eu-west (FailingBack 30%), us-west"
    )
