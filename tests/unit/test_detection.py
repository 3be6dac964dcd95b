"""The detection policy: consecutive samples under the threshold, the floor, shares and guards."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest

from regionshift.decide.detection import Guard, RegionVerdict, Sample, WarmCapacity, evaluate
from regionshift.api.models import DetectionPolicy, RegionSignalStatus, Verdict

NOW = datetime(2026, 1, 5, 20, 0, tzinfo=timezone.utc)
POLICY = DetectionPolicy()  # 0.7, 3 samples, floor 1.0, global 0.5, rollout 900 s, stale 300 s
STEP = timedelta(minutes=1)


def series(actuals: Sequence[float | None], expected: float | None = 100.0, end: datetime = NOW) -> list[Sample]:
    """Samples one minute apart, the last one at ``end``."""
    return [
        Sample(at=end - (len(actuals) - 1 - n) * STEP, actual=value, expected=expected)
        for n, value in enumerate(actuals)
    ]


HEALTHY = series([100, 98, 101, 99, 100])


def judge(**samples: list[Sample]) -> dict[str, RegionVerdict]:
    return evaluate(samples=samples, policy=POLICY, now=NOW)


def test_healthy_region() -> None:
    verdict = judge(a=HEALTHY, b=HEALTHY, c=HEALTHY)["a"]
    assert verdict.verdict is Verdict.HEALTHY
    assert verdict.ratio == pytest.approx(1.0)
    assert verdict.actual == 100 and verdict.expected == 100
    assert verdict.sampled_at == NOW
    assert verdict.held_back_by is None and verdict.unhealthy_since is None
    assert "100% of expected" in verdict.message


def test_unhealthy_after_consecutive_samples_under_the_threshold() -> None:
    verdict = judge(a=series([100, 100, 50, 40, 60]), b=HEALTHY, c=HEALTHY)["a"]
    assert verdict.verdict is Verdict.UNHEALTHY
    assert verdict.drop_started_at == NOW - 2 * STEP
    assert verdict.unhealthy_since == NOW
    assert verdict.ratio == pytest.approx(0.6)
    assert "over the last 3 samples" in verdict.message


def test_two_samples_under_are_not_enough() -> None:
    verdict = judge(a=series([100, 100, 100, 50, 50]), b=HEALTHY, c=HEALTHY)["a"]
    assert verdict.verdict is Verdict.HEALTHY
    assert "2 of 3 samples under it" in verdict.message


def test_a_sample_back_above_the_threshold_breaks_the_run() -> None:
    verdict = judge(a=series([50, 50, 80, 50, 50]), b=HEALTHY, c=HEALTHY)["a"]
    assert verdict.verdict is Verdict.HEALTHY


def test_exactly_at_the_threshold_is_healthy() -> None:
    verdict = judge(a=series([70, 70, 70]), b=HEALTHY, c=HEALTHY)["a"]
    assert verdict.verdict is Verdict.HEALTHY


def test_share_scales_the_expected_signal() -> None:
    # Serving half its own traffic (failing back), 50 against a forecast of 100 is on plan.
    half = evaluate(samples={"a": series([50, 50, 50]), "b": HEALTHY}, policy=POLICY, now=NOW, shares={"a": 0.5})
    assert half["a"].verdict is Verdict.HEALTHY
    assert half["a"].expected == 50
    full = evaluate(samples={"a": series([50, 50, 50]), "b": HEALTHY, "c": HEALTHY}, policy=POLICY, now=NOW)
    assert full["a"].verdict is Verdict.UNHEALTHY


def test_share_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="share"):
        evaluate(samples={"a": HEALTHY}, policy=POLICY, now=NOW, shares={"a": 1.5})


def test_evacuated_region_is_not_judged() -> None:
    verdict = evaluate(samples={"a": series([0, 0, 0]), "b": HEALTHY}, policy=POLICY, now=NOW, shares={"a": 0.0})["a"]
    assert verdict.verdict is Verdict.UNKNOWN
    assert verdict.held_back_by is Guard.LOW_EXPECTED
    assert "minimumExpected" in verdict.message


def test_expected_under_the_floor_is_not_judged() -> None:
    quiet = series([0.1, 0.1, 0.1], expected=0.5)
    verdict = judge(a=quiet, b=HEALTHY)["a"]
    assert verdict.verdict is Verdict.UNKNOWN
    assert verdict.held_back_by is Guard.LOW_EXPECTED
    assert verdict.expected == 0.5 and verdict.actual == 0.1


def test_samples_under_the_floor_are_skipped_inside_a_run() -> None:
    samples = series([50, 50], expected=100.0, end=NOW - 2 * STEP)
    samples += [Sample(at=NOW - STEP, actual=0.0, expected=0.5)]  # not judged, does not break the run
    samples += [Sample(at=NOW, actual=50.0, expected=100.0)]
    assert judge(a=samples, b=HEALTHY, c=HEALTHY)["a"].verdict is Verdict.UNHEALTHY


def test_no_samples_is_no_data() -> None:
    verdict = judge(a=[], b=HEALTHY)["a"]
    assert verdict.verdict is Verdict.UNKNOWN
    assert verdict.held_back_by is Guard.NO_DATA
    assert verdict.guards == (Guard.NO_DATA,)


def test_missing_values_are_no_data_and_never_evacuate() -> None:
    missing = series([None, None, None])
    assert judge(a=missing, b=HEALTHY)["a"].held_back_by is Guard.NO_DATA
    nan = series([float("nan")] * 3)
    assert judge(a=nan, b=HEALTHY)["a"].verdict is Verdict.UNKNOWN
    no_forecast = series([10, 10, 10], expected=None)
    verdict = judge(a=no_forecast, b=HEALTHY)["a"]
    assert verdict.held_back_by is Guard.NO_DATA
    assert "no forecast" in verdict.message


def test_stale_data_is_unknown() -> None:
    old = series([10, 10, 10], end=NOW - timedelta(seconds=301))
    verdict = judge(a=old, b=HEALTHY)["a"]
    assert verdict.verdict is Verdict.UNKNOWN
    assert verdict.held_back_by is Guard.STALE_DATA
    assert verdict.sampled_at == NOW - timedelta(seconds=301)
    fresh = series([10, 10, 10], end=NOW - timedelta(seconds=300))
    assert judge(a=fresh, b=HEALTHY, c=HEALTHY)["a"].verdict is Verdict.UNHEALTHY


def test_a_gap_inside_the_window_is_judged_on_what_is_there() -> None:
    samples = series([50, None, 50, None, 50])
    assert judge(a=samples, b=HEALTHY, c=HEALTHY)["a"].verdict is Verdict.UNHEALTHY


def test_samples_in_any_order() -> None:
    samples = list(reversed(series([100, 100, 50, 50, 50])))
    assert judge(a=samples, b=HEALTHY, c=HEALTHY)["a"].verdict is Verdict.UNHEALTHY


def test_global_drop_holds_back() -> None:
    drop = series([100, 40, 40, 40])
    verdicts = judge(a=drop, b=drop, c=HEALTHY)
    for name in ("a", "b"):
        assert verdicts[name].verdict is Verdict.HELD_BACK
        assert verdicts[name].held_back_by is Guard.GLOBAL_DROP
        assert "2 of 3 regions" in verdicts[name].message
    assert verdicts["c"].verdict is Verdict.HEALTHY


def test_a_region_just_starting_to_drop_counts_towards_a_global_drop() -> None:
    verdicts = judge(a=series([100, 40, 40, 40]), b=series([100, 100, 100, 40]), c=HEALTHY)
    assert verdicts["a"].held_back_by is Guard.GLOBAL_DROP


def test_one_of_two_regions_dropping_is_regional() -> None:
    # A single region is never "dropping together", whatever the fraction says.
    verdicts = judge(a=series([40, 40, 40]), b=HEALTHY)
    assert verdicts["a"].verdict is Verdict.UNHEALTHY


def test_global_drop_fraction_is_configurable() -> None:
    drop = series([40, 40, 40])
    strict = DetectionPolicy(global_drop_fraction=0.75)
    verdicts = evaluate(samples={"a": drop, "b": drop, "c": HEALTHY, "d": HEALTHY}, policy=strict, now=NOW)
    assert verdicts["a"].verdict is Verdict.UNHEALTHY


def test_recent_rollout_holds_back() -> None:
    drop = series([100, 40, 40, 40])
    began = NOW - 2 * STEP
    verdicts = evaluate(
        samples={"a": drop, "b": HEALTHY, "c": HEALTHY},
        policy=POLICY,
        now=NOW,
        last_rollouts={"a": began - timedelta(seconds=120), "b": None},
    )
    assert verdicts["a"].verdict is Verdict.HELD_BACK
    assert verdicts["a"].held_back_by is Guard.RECENT_ROLLOUT
    assert "rolled out 120 s before the drop began" in verdicts["a"].message


@pytest.mark.parametrize("offset", [timedelta(seconds=-901), timedelta(seconds=30)])
def test_rollout_outside_the_guard_does_not_hold_back(offset: timedelta) -> None:
    began = NOW - 2 * STEP
    verdicts = evaluate(
        samples={"a": series([100, 40, 40, 40]), "b": HEALTHY, "c": HEALTHY},
        policy=POLICY,
        now=NOW,
        last_rollouts={"a": began + offset},
    )
    assert verdicts["a"].verdict is Verdict.UNHEALTHY


def test_rollout_in_another_region_does_not_hold_back() -> None:
    verdicts = evaluate(
        samples={"a": series([40, 40, 40]), "b": HEALTHY, "c": HEALTHY},
        policy=POLICY,
        now=NOW,
        last_rollouts={"b": NOW - 4 * STEP},
    )
    assert verdicts["a"].verdict is Verdict.UNHEALTHY


def test_cold_savior_holds_back() -> None:
    verdicts = evaluate(
        samples={"a": series([40, 40, 40]), "b": HEALTHY, "c": HEALTHY},
        policy=POLICY,
        now=NOW,
        capacity={"b": WarmCapacity(warm=3, need=5), "c": WarmCapacity(warm=5, need=5)},
    )
    assert verdicts["a"].verdict is Verdict.HELD_BACK
    assert verdicts["a"].held_back_by is Guard.SAVIORS_NOT_WARM
    assert "b 3/5 warm" in verdicts["a"].message


def test_own_or_dropping_regions_capacity_is_not_a_savior() -> None:
    drop = series([40, 40, 40])
    verdicts = evaluate(
        samples={"a": drop, "b": HEALTHY, "c": HEALTHY},
        policy=POLICY,
        now=NOW,
        capacity={"a": WarmCapacity(warm=0, need=10), "b": WarmCapacity(warm=10, need=10)},
    )
    assert verdicts["a"].verdict is Verdict.UNHEALTHY
    assert WarmCapacity(warm=10, need=10).sufficient
    assert not WarmCapacity(warm=9.5, need=10).sufficient


def test_every_holding_guard_is_listed_deciding_one_first() -> None:
    drop = series([100, 40, 40, 40])
    verdicts = evaluate(
        samples={"a": drop, "b": drop, "c": HEALTHY},
        policy=POLICY,
        now=NOW,
        last_rollouts={"a": NOW - 5 * STEP},
        capacity={"c": WarmCapacity(warm=0, need=1)},
    )
    assert verdicts["a"].guards == (Guard.GLOBAL_DROP, Guard.RECENT_ROLLOUT, Guard.SAVIORS_NOT_WARM)
    assert verdicts["a"].held_back_by is Guard.GLOBAL_DROP


def test_unhealthy_since_and_drop_start_survive_a_short_window() -> None:
    first = judge(a=series([100, 40, 40, 40]), b=HEALTHY, c=HEALTHY)
    assert first["a"].unhealthy_since == NOW
    later = NOW + 10 * STEP
    second = evaluate(
        samples={"a": series([40, 40, 40], end=later), "b": series([100] * 3, end=later), "c": series([100] * 3, end=later)},
        policy=POLICY,
        now=later,
        previous=first,
    )
    assert second["a"].verdict is Verdict.UNHEALTHY
    assert second["a"].unhealthy_since == NOW
    assert second["a"].drop_started_at == NOW - 2 * STEP


def test_unhealthy_since_is_when_a_held_back_drop_is_released() -> None:
    drop = series([100, 40, 40, 40])
    held = evaluate(
        samples={"a": drop, "b": HEALTHY, "c": HEALTHY},
        policy=POLICY,
        now=NOW,
        capacity={"b": WarmCapacity(warm=0, need=4)},
    )
    assert held["a"].verdict is Verdict.HELD_BACK
    assert held["a"].unhealthy_since is None
    later = NOW + 5 * STEP
    released = evaluate(
        samples={"a": series([40] * 4, end=later), "b": series([100] * 4, end=later), "c": series([100] * 4, end=later)},
        policy=POLICY,
        now=later,
        capacity={"b": WarmCapacity(warm=4, need=4)},
        previous=held,
    )
    assert released["a"].verdict is Verdict.UNHEALTHY
    assert released["a"].unhealthy_since == later
    assert released["a"].drop_started_at == NOW - 2 * STEP


def test_status_for_the_custom_resource() -> None:
    verdict = judge(a=series([100, 40, 40, 40]), b=HEALTHY, c=HEALTHY)["a"]
    status = verdict.to_status()
    assert isinstance(status, RegionSignalStatus)
    wire = status.wire()
    assert wire["name"] == "a"
    assert wire["verdict"] == "Unhealthy"
    assert wire["unhealthySince"] == "2026-01-05T20:00:00Z"
    assert wire["sampledAt"] == "2026-01-05T20:00:00Z"
    assert wire["ratio"] == pytest.approx(0.4)
    held = judge(a=[], b=HEALTHY)["a"].to_status().wire()
    assert held["verdict"] == "Unknown"
    assert held["heldBackBy"] == "NoData"
    assert "actual" not in held


def test_zero_expected_with_no_floor_has_no_ratio() -> None:
    no_floor = DetectionPolicy(minimum_expected=0.0)
    verdict = evaluate(samples={"a": series([0, 0, 0], expected=0.0)}, policy=no_floor, now=NOW)["a"]
    assert verdict.verdict is Verdict.HEALTHY
    assert verdict.ratio is None
    assert verdict.to_status().wire()["verdict"] == "Healthy"
