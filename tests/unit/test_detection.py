"""The detection policy: consecutive samples under the threshold, the floor, shares and guards."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest

from regionshift.decide.detection import (
    Guard,
    RegionVerdict,
    Sample,
    WarmCapacity,
    evaluate,
    next_detection_at,
    refit_excludes_since,
    samples_needed,
)
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


# --- Noise-aware evidence: a quiet region needs more samples than a busy one -------------

FIVE = timedelta(seconds=5)


def every_5s(actuals: Sequence[float], expected: float, end: datetime = NOW) -> list[Sample]:
    """Samples five seconds apart (the drill's step), the last one at ``end``."""
    return [
        Sample(at=end - (len(actuals) - 1 - n) * FIVE, actual=value, expected=expected)
        for n, value in enumerate(actuals)
    ]


@pytest.mark.parametrize(
    ("expected", "step", "depth", "policy", "needed"),
    [
        # counts per sample = expected × step; k ≥ z²·φ·θ / (counts·(θ − (1 − depth))²)
        (200.0, 5.0, 0.4, POLICY, 3),  # 1000 events a sample: 1.26 → consecutiveSamples
        (10.0, 5.0, 0.4, POLICY, 26),  # 50 events: 25.2 → 26 (a quiet region at night)
        (10.0, 5.0, 0.6, POLICY, 3),  # a deeper drop shows sooner: 2.8 → 3
        (10.0, 5.0, 0.5, POLICY, 7),  # 6.3 → 7
        (10.0, 60.0, 0.4, POLICY, 3),  # the same region at one-minute samples: 2.1 → 3
        (2.0, 5.0, 0.4, POLICY, None),  # 126 samples: beyond evidenceWindowSamples (36)
        (200.0, 5.0, 0.3, POLICY, None),  # not deeper than 1 − ratioThreshold: never shown
        (0.5, 5.0, 0.9, POLICY, None),  # expected under minimumExpected: not judged
        (10.0, 5.0, 0.4, DetectionPolicy(counts_per_unit=0), 3),  # no noise allowance
        (10.0, 5.0, 0.4, DetectionPolicy(overdispersion=1.0), 13),  # Poisson: 12.6 → 13
        (10.0, 5.0, 0.4, DetectionPolicy(counts_per_unit=1 / 60), None),  # per-minute counts: 1512
    ],
)
def test_samples_needed(
    expected: float, step: float, depth: float, policy: DetectionPolicy, needed: int | None
) -> None:
    assert samples_needed(expected=expected, step_seconds=step, policy=policy, depth=depth) == needed


@pytest.mark.parametrize(
    ("expected", "ratios", "verdict"),
    [
        # ap-south at night, 5-s samples, 50 events each: 0.69 for 3 samples is noise.
        (10.0, [1.0, 1.0, 0.69, 0.69, 0.69], Verdict.HEALTHY),
        # The same figures from a busy region (1000 events a sample) are no drop either:
        # 0.69 is not beyond the noise under 0.7.
        (200.0, [1.0, 1.0, 0.69, 0.69, 0.69], Verdict.HEALTHY),
        # A busy region at half its expected value: 3 samples are enough.
        (200.0, [1.0, 1.0, 0.5, 0.5, 0.5], Verdict.UNHEALTHY),
        # The quiet one needs 7 samples of it (samples_needed above), not 3 ...
        (10.0, [1.0] * 3 + [0.5] * 6, Verdict.HEALTHY),
        # ... and is Unhealthy from the seventh.
        (10.0, [1.0] * 3 + [0.5] * 7, Verdict.UNHEALTHY),
        # Noise inside a quiet drop (one sample at 0.8) does not break it.
        (10.0, [1.0] * 3 + [0.5, 0.4, 0.8, 0.5, 0.4, 0.5, 0.4], Verdict.UNHEALTHY),
        # One glitch (a failed scrape reading 0) among noisy healthy samples is no drop.
        (10.0, [1.0, 0.9, 0.0, 0.9, 0.85], Verdict.HEALTHY),
    ],
)
def test_a_quiet_region_needs_stronger_evidence(expected: float, ratios: list[float], verdict: Verdict) -> None:
    busy = every_5s([100.0] * len(ratios), expected=100.0)
    region = every_5s([r * expected for r in ratios], expected=expected)
    assert evaluate(samples={"a": region, "b": busy, "c": busy}, policy=POLICY, now=NOW)["a"].verdict is verdict


def test_a_quiet_region_reports_the_samples_it_needs() -> None:
    busy = every_5s([100.0] * 5, expected=100.0)
    verdict = evaluate(samples={"a": every_5s([10.0] * 5, expected=10.0), "b": busy}, policy=POLICY, now=NOW)["a"]
    assert verdict.evidence_samples == 26
    assert "a 40% drop needs 26 samples" in verdict.message
    assert verdict.to_status().wire()["evidenceSamples"] == 26
    sparse = evaluate(samples={"a": every_5s([2.0] * 5, expected=2.0), "b": busy}, policy=POLICY, now=NOW)["a"]
    assert sparse.evidence_samples is None
    assert "cannot be shown within 36 samples" in sparse.message


def test_without_the_noise_allowance_the_plain_ratio_test_applies() -> None:
    plain = DetectionPolicy(counts_per_unit=0)
    busy = every_5s([100.0] * 5, expected=100.0)
    quiet = every_5s([10.0, 10.0, 6.9, 6.9, 6.9], expected=10.0)
    verdict = evaluate(samples={"a": quiet, "b": busy, "c": busy}, policy=plain, now=NOW)["a"]
    assert verdict.verdict is Verdict.UNHEALTHY


def test_the_step_is_taken_from_the_samples_or_given() -> None:
    busy = every_5s([100.0] * 10, expected=100.0)
    quiet = every_5s([10.0] * 3 + [5.0] * 7, expected=10.0)
    assert evaluate(samples={"a": quiet, "b": busy}, policy=POLICY, now=NOW)["a"].verdict is Verdict.UNHEALTHY
    # Told that each sample stands for one second only, 7 samples are not enough.
    told = evaluate(samples={"a": quiet, "b": busy}, policy=POLICY, now=NOW, step_seconds=1)["a"]
    assert told.verdict is Verdict.HEALTHY


# --- Evidence against the domain and how it combines with GlobalDrop ----------------------


@pytest.mark.parametrize(
    ("case", "ratios", "expected", "verdict", "guard", "regional"),
    [
        # Only a drops: its share of the domain falls with it. Regional: Unhealthy.
        ("regional", {"a": 0.5, "b": 1.0, "c": 1.0, "d": 1.0}, None, Verdict.UNHEALTHY, None, True),
        # Every region drops alike: GlobalDrop decides (and the share agrees).
        ("global", {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5}, None, Verdict.HELD_BACK, Guard.GLOBAL_DROP, False),
        # A shock shared by the domain where only a crosses the threshold (the others stay
        # just above it): too few regions for GlobalDrop, but a keeps its share: DomainWide.
        ("shared shock", {"a": 0.65, "b": 0.75, "c": 0.78, "d": 0.76}, None, Verdict.HELD_BACK,
         Guard.DOMAIN_WIDE, False),
        # The domain is down 20 % (a forecast wrong for everyone) and a far more: its share
        # falls to 0.5 / 0.8 = 63 % of expected, under 80 %: regional.
        ("outage in a shock", {"a": 0.5, "b": 0.8, "c": 0.8, "d": 0.8}, None, Verdict.UNHEALTHY, None, True),
        # Half the domain is down together: GlobalDrop, although a's share says regional.
        ("two of four", {"a": 0.4, "b": 0.65, "c": 1.0, "d": 1.0}, None, Verdict.HELD_BACK, Guard.GLOBAL_DROP, True),
        # A region carrying most of the domain: as odds against the rest its drop shows
        # (a plain share would read 0.5·10 / (0.5·10 + 3) / (10/13) = 81 %).
        ("dominant", {"a": 0.5, "b": 1.0, "c": 1.0, "d": 1.0}, {"a": 1000.0}, Verdict.UNHEALTHY, None, True),
        # Nothing to compare with (the others have no data): the own ratio decides.
        ("alone", {"a": 0.5, "b": None, "c": None, "d": None}, None, Verdict.UNHEALTHY, None, None),
    ],
)
def test_evidence_against_the_domain(
    case: str,
    ratios: dict[str, float | None],
    expected: dict[str, float] | None,
    verdict: Verdict,
    guard: Guard | None,
    regional: bool | None,
) -> None:
    samples = {}
    for region, ratio in ratios.items():
        forecast = (expected or {}).get(region, 100.0)
        if ratio is None:
            samples[region] = series([None] * 4, expected=forecast)
        else:
            samples[region] = series([forecast] + [ratio * forecast] * 3, expected=forecast)
    result = evaluate(samples=samples, policy=POLICY, now=NOW)["a"]
    assert result.verdict is verdict, (case, result.message)
    assert result.held_back_by is guard, case
    assert result.regional is regional, case
    if regional is None:
        assert result.share_ratio is None and "no other region to compare with" in result.message
    else:
        others = [r for k, r in ratios.items() if k != "a" and r is not None]
        weights = [(expected or {}).get(k, 100.0) for k, r in ratios.items() if k != "a" and r is not None]
        rest = sum(r * w for r, w in zip(others, weights)) / sum(weights)
        assert result.share_ratio == pytest.approx(ratios["a"] / rest, abs=1e-3), case


def test_a_regional_drop_and_a_shared_shock_together() -> None:
    # a is out (regional), b shaken with the rest: b is held back as DomainWide, a evacuates.
    verdicts = evaluate(
        samples={
            "a": series([100, 30, 30, 30]),
            "b": series([100, 66, 66, 66]),
            "c": series([100, 75, 75, 75]),
            "d": series([100, 75, 75, 75]),
            "e": series([100, 75, 75, 75]),
        },
        policy=POLICY,
        now=NOW,
    )
    assert verdicts["a"].verdict is Verdict.UNHEALTHY
    assert verdicts["b"].held_back_by is Guard.DOMAIN_WIDE


# --- The forecast no longer fits: a bound on drops without evidence of an outage -------------

BOUND = timedelta(seconds=POLICY.no_longer_fits_after_seconds)


def _before(verdict: Verdict, guard: Guard | None, started: datetime) -> dict[str, RegionVerdict]:
    return {"a": RegionVerdict(region="a", verdict=verdict, message="", held_back_by=guard, drop_started_at=started)}


@pytest.mark.parametrize(
    ("case", "others", "before", "lasted", "verdict", "guard"),
    [
        # A shared shock past the bound: the forecast no longer fits.
        ("shared shock", 0.75, (Verdict.HELD_BACK, Guard.DOMAIN_WIDE), BOUND + STEP, Verdict.UNKNOWN,
         Guard.FORECAST_NO_LONGER_FITS),
        # ... but not before it.
        ("shared shock, early", 0.75, (Verdict.HELD_BACK, Guard.DOMAIN_WIDE), BOUND - 5 * STEP, Verdict.HELD_BACK,
         Guard.DOMAIN_WIDE),
        # A global drop past the bound: Unknown too.
        ("global", 0.5, (Verdict.HELD_BACK, Guard.GLOBAL_DROP), BOUND + STEP, Verdict.UNKNOWN,
         Guard.FORECAST_NO_LONGER_FITS),
        # Nothing to compare with, past the bound: no evidence of an outage, Unknown.
        ("alone", None, (Verdict.UNHEALTHY, None), BOUND + STEP, Verdict.UNKNOWN, Guard.FORECAST_NO_LONGER_FITS),
        # A regional drop is evidence of an outage: Unhealthy however long it lasts.
        ("regional", 1.0, (Verdict.UNHEALTHY, None), 10 * BOUND, Verdict.UNHEALTHY, None),
        # Once Unknown, it stays so while the deviation lasts.
        ("still off", 0.75, (Verdict.UNKNOWN, Guard.FORECAST_NO_LONGER_FITS), 2 * BOUND, Verdict.UNKNOWN,
         Guard.FORECAST_NO_LONGER_FITS),
        # An outage shown against the domain on top of a shifted level: Unhealthy again.
        ("outage after", 1.0, (Verdict.UNKNOWN, Guard.FORECAST_NO_LONGER_FITS), 2 * BOUND, Verdict.UNHEALTHY, None),
    ],
)
def test_a_drop_without_evidence_of_an_outage_is_bounded(
    case: str,
    others: float | None,
    before: tuple[Verdict, Guard | None],
    lasted: timedelta,
    verdict: Verdict,
    guard: Guard | None,
) -> None:
    started = NOW - lasted
    ratio_a = 0.65 if others != 1.0 else 0.5
    samples = {"a": series([ratio_a * 100] * 4)}
    for name in ("b", "c", "d"):
        samples[name] = series([None] * 4) if others is None else series([others * 100] * 4)
    result = evaluate(samples=samples, policy=POLICY, now=NOW, previous=_before(*before, started))["a"]
    assert result.verdict is verdict, (case, result.message)
    assert result.held_back_by is guard, case
    assert result.drop_started_at == started, case
    if guard is Guard.FORECAST_NO_LONGER_FITS:
        assert "the forecast no longer fits" in result.message
        assert result.refit_excludes_since is None  # the refit learns the new level
        assert result.to_status().wire()["heldBackBy"] == "ForecastNoLongerFits"
    else:
        assert result.refit_excludes_since == started  # a possible outage is never learnt


def test_a_drop_that_ends_after_the_forecast_no_longer_fit_is_healthy() -> None:
    before = _before(Verdict.UNKNOWN, Guard.FORECAST_NO_LONGER_FITS, NOW - 2 * BOUND)
    result = evaluate(samples={"a": HEALTHY, "b": HEALTHY}, policy=POLICY, now=NOW, previous=before)["a"]
    assert result.verdict is Verdict.HEALTHY
    assert result.drop_started_at is None


def test_an_evacuated_region_is_left_to_the_failback_probe() -> None:
    # Serving half its share during a failback, a region far under plan is not turned
    # Unknown by the bound: the failback probe of decide/evacuation.py judges it.
    before = _before(Verdict.UNHEALTHY, None, NOW - 2 * BOUND)
    result = evaluate(
        samples={"a": series([10] * 4), "b": series([None] * 4)},
        policy=POLICY,
        now=NOW,
        shares={"a": 0.5},
        previous=before,
    )["a"]
    assert result.verdict is Verdict.UNHEALTHY
    assert result.held_back_by is None


@pytest.mark.parametrize(
    ("verdict", "guard", "started", "excluded"),
    [
        (Verdict.HEALTHY, None, None, None),
        (Verdict.UNHEALTHY, None, NOW, NOW),
        (Verdict.HELD_BACK, "GlobalDrop", NOW, NOW),
        (Verdict.HELD_BACK, Guard.DOMAIN_WIDE, NOW, NOW),
        (Verdict.UNKNOWN, "ForecastNoLongerFits", NOW, None),
        (Verdict.UNKNOWN, Guard.NO_DATA, None, None),
        ("HeldBack", "RecentRollout", NOW, NOW),
    ],
)
def test_which_samples_the_refit_accepts(
    verdict: Verdict | str, guard: Guard | str | None, started: datetime | None, excluded: datetime | None
) -> None:
    assert refit_excludes_since(verdict=verdict, held_back_by=guard, drop_started_at=started) == excluded


@pytest.mark.parametrize(("now", "step", "due"), [
    (1000.05, 1.0, 1000.1),      # 0.05 s after a multiple: due the delay (0.1 s) after it
    (1000.1, 1.0, 1001.1),       # exactly when due: the next one
    (1000.99, 1.0, 1001.1),
    (1203.0, 5.0, 1205.5),       # the delay is a tenth of the step
    (3600.5, 60.0, 3601.0),      # at most 1 s
    (3601.0, 60.0, 3661.0),
])
def test_detection_is_due_at_multiples_of_the_step_on_the_wall_clock(now: float, step: float, due: float) -> None:
    assert next_detection_at(now=now, step_seconds=step) == pytest.approx(due)


def test_two_regions_whose_runs_drift_apart_run_at_the_same_moments() -> None:
    """Wherever in a step each region's first run lands, and however long its runs last, both run together from then on."""
    runs: dict[str, list[float]] = {}
    for region, start, lasts in (("east", 1000.13, 0.05), ("west", 1000.87, 0.71)):
        now, started = start, []
        while now < 1030:
            started.append(now)
            now = next_detection_at(now=now + lasts, step_seconds=1.0)  # asked as the run ends
        runs[region] = started
    # west's first run ends at 1001.58, past the moment 1001.1: from 1002.1 on they run together.
    assert runs["east"][2:] == pytest.approx(runs["west"][1:])
    assert runs["west"][1:] == pytest.approx([t + 0.1 for t in range(1002, 1030)])


def test_a_run_longer_than_a_step_skips_the_moments_it_missed() -> None:
    started = 1000.1
    ended = started + 2.5  # the moments 1001.1 and 1002.1 passed while it ran
    assert next_detection_at(now=ended, step_seconds=1.0) == pytest.approx(1003.1)
