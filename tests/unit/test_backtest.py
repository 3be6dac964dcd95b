"""A short backtest meets the detection target, and the scoring catches what it should."""

from __future__ import annotations

import pytest

from regionshift.cli import main as cli_main
from regionshift.local.backtest import (
    DEFAULT_START,
    BUSY_CHANCE,
    BacktestReport,
    Outcome,
    chance_within,
    default_faults,
    format_report,
    main,
    run_backtest,
)
from regionshift.api.models import DetectionPolicy
from regionshift.local.synthetic import DAY_SECONDS, Fault, FaultKind

REGIONS = ("us-east", "us-west", "eu-west", "ap-south")


@pytest.fixture(scope="module")
def report() -> BacktestReport:
    return run_backtest(days=10, seed=7)


def test_no_false_evacuation(report: BacktestReport) -> None:
    assert report.false_evacuations == ()
    assert not [o for o in report.outcomes if o.outcome is Outcome.FALSE_EVACUATION]


def test_every_drop_of_forty_percent_or_more_is_caught_within_three_samples(report: BacktestReport) -> None:
    target = [o for o in report.outcomes if o.in_target]
    assert len(target) == 15
    for outcome in target:
        assert outcome.outcome is Outcome.DETECTED, outcome
        assert outcome.delay_samples is not None and outcome.delay_samples <= 3
        assert outcome.delay_seconds == pytest.approx(outcome.delay_samples * 60)
        assert max(outcome.first_ratios) < report.policy.ratio_threshold
    assert report.missed == ()
    assert report.target_met


def test_guards_hold_back_what_follows_the_traffic(report: BacktestReport) -> None:
    by_kind = {o.fault.kind: o for o in report.outcomes if o.fault.kind is not FaultKind.REGIONAL_DROP}
    assert by_kind[FaultKind.GLOBAL_DROP].outcome is Outcome.DETECTED
    assert by_kind[FaultKind.GLOBAL_DROP].expected == "HeldBack/GlobalDrop"
    assert by_kind[FaultKind.ROLLOUT_DROP].outcome is Outcome.DETECTED
    assert by_kind[FaultKind.ROLLOUT_DROP].expected == "HeldBack/RecentRollout"
    gap = by_kind[FaultKind.GAP]
    assert gap.outcome is Outcome.DETECTED
    # Unknown from the sixth missing sample: the last value is then more than
    # staleAfterSeconds (300 s) old and the replay's six-sample window holds none.
    assert gap.delay_samples == 6
    assert gap.expected == "Unknown/NoData|StaleData"


def test_shallow_drops_are_reported_not_counted_as_missed(report: BacktestReport) -> None:
    shallow = [o for o in report.outcomes if o.fault.kind is FaultKind.REGIONAL_DROP and o.fault.depth <= 0.3]
    assert shallow
    assert all(o.outcome in (Outcome.BELOW_SENSITIVITY, Outcome.DETECTED) for o in shallow)


def test_report_text(report: BacktestReport) -> None:
    text = format_report(report)
    assert "10 days x 4 regions" in text
    assert "regional drops >= 40% in regions busy enough (a chance of 97.5% or more): 15/15 detected within 3 samples" in text
    assert "false evacuations: 0" in text
    assert text.rstrip().endswith("MET")
    assert report.evaluations == 10 * 1440
    assert report.fits > 0
    assert report.lowest_quiet_ratio > report.policy.ratio_threshold


def test_an_oversensitive_policy_shows_false_evacuations() -> None:
    start = DEFAULT_START + 14.5 * DAY_SECONDS
    fault = Fault(kind=FaultKind.REGIONAL_DROP, start=start + 86_400, duration_seconds=600, regions=("us-east",), depth=0.5)
    jumpy = DetectionPolicy(ratio_threshold=0.97, consecutive_samples=1)
    report = run_backtest(days=2, seed=3, policy=jumpy, faults=(fault,), holidays=())
    assert report.false_evacuations
    assert not report.target_met
    assert "NOT MET" in format_report(report)


def test_default_faults_are_spread_aligned_and_disjoint() -> None:
    start = DEFAULT_START + 14.5 * DAY_SECONDS
    faults = default_faults(start=start, days=28, regions=REGIONS, seed=1)
    assert len(faults) == 24
    kinds = [f.kind for f in faults]
    assert kinds.count(FaultKind.GLOBAL_DROP) == kinds.count(FaultKind.ROLLOUT_DROP) == kinds.count(FaultKind.GAP) == 1
    depths = {f.depth for f in faults if f.kind is FaultKind.REGIONAL_DROP}
    assert min(depths) == 0.2 and max(depths) == 0.9
    for earlier, later in zip(faults, faults[1:]):
        assert earlier.end < later.start
    assert all(f.start % 60 == 0 for f in faults)
    assert all(start <= f.start and f.end <= start + 28 * DAY_SECONDS for f in faults)
    assert default_faults(start=start, days=28, regions=REGIONS, seed=1) == faults
    with pytest.raises(ValueError, match="too short"):
        default_faults(start=start, days=3, regions=REGIONS, seed=1)


def test_command_exit_code_follows_the_target(capsys: pytest.CaptureFixture[str]) -> None:
    """Both entry points, ``python -m regionshift.local.backtest`` and ``regionshift backtest``, exit 1 on a miss."""
    code = main(["--days", "4.5", "--seed", "7"])
    met = "): MET" in capsys.readouterr().out
    assert code == (0 if met else 1)
    assert cli_main(["backtest", "--days", "4.5", "--seed", "7"]) == code


# --- Five-second samples: the drill's step ------------------------------------------------

REPLAY_START = DEFAULT_START + 14.5 * DAY_SECONDS  # Monday 2026-01-19 12:00 UTC


@pytest.fixture(scope="module")
def five_seconds() -> BacktestReport:
    faults = (
        # us-east in its evening (21:00 local): busy, a 60 % drop must show within 3 samples.
        Fault(kind=FaultKind.REGIONAL_DROP, start=REPLAY_START + 14 * 3600, duration_seconds=600,
              regions=("us-east",), depth=0.6),
        # ap-south before dawn (04:00 local): quiet, a 40 % drop needs more samples.
        Fault(kind=FaultKind.REGIONAL_DROP, start=REPLAY_START + 34.5 * 3600, duration_seconds=1200,
              regions=("ap-south",), depth=0.4),
    )
    return run_backtest(days=2, seed=7, step_seconds=5, faults=faults, holidays=())


def test_five_second_samples_no_false_evacuation_and_the_quiet_region_reported(five_seconds: BacktestReport) -> None:
    report = five_seconds
    assert report.false_evacuations == ()
    busy, quiet = report.outcomes
    assert busy.in_target and busy.outcome is Outcome.DETECTED
    assert busy.delay_samples is not None and busy.delay_samples <= 3
    assert busy.delay_seconds == pytest.approx(busy.delay_samples * 5)
    assert quiet.quiet and not quiet.in_target
    assert quiet.samples_needed is not None and quiet.samples_needed > 3
    assert quiet.outcome is Outcome.DETECTED
    # At its quietest a 40 % drop in ap-south needs many 5-s samples; at its busiest, few.
    quietest, busiest = report.evidence_samples["ap-south"]
    assert busiest is not None and busiest <= 5
    assert quietest is None or quietest > 10
    text = format_report(report)
    assert "samples a 40% drop needs" in text
    assert "too quiet to promise them within 3 samples (a chance under 97.5%): 1" in text


def test_the_screen_skips_only_rounds_that_evaluate_would_call_healthy() -> None:
    faults = (
        Fault(kind=FaultKind.REGIONAL_DROP, start=REPLAY_START + 3 * 3600, duration_seconds=900,
              regions=("eu-west",), depth=0.5),
        Fault(kind=FaultKind.GLOBAL_DROP, start=REPLAY_START + 6 * 3600, duration_seconds=600, depth=0.5),
        Fault(kind=FaultKind.GAP, start=REPLAY_START + 8 * 3600, duration_seconds=900, regions=("us-west",)),
    )
    kwargs = dict(days=0.5, seed=3, step_seconds=10, faults=faults, holidays=(), history_days=8.0)
    fast = run_backtest(**kwargs)  # type: ignore[arg-type]
    full = run_backtest(screened=False, **kwargs)  # type: ignore[arg-type]
    assert fast.outcomes == full.outcomes
    assert fast.false_evacuations == full.false_evacuations
    assert fast.lowest_quiet_ratio == full.lowest_quiet_ratio


def test_busy_enough_means_a_chance_of_975_in_1000_not_the_coin_toss_where_samples_needed_is_three() -> None:
    """samples_needed is where a drop's average pooled ratio meets detection's line: a coin toss there."""
    from regionshift.decide.detection import samples_needed

    policy = DetectionPolicy()
    # 3 sigma, overdispersion 2, threshold 0.7: a 40 % drop needs 3 samples from 420 counts a
    # sample on, i.e. 84 stream starts per second at 5-s samples.
    edge = 84.0
    assert samples_needed(expected=edge, step_seconds=5, policy=policy) == 3
    assert samples_needed(expected=edge * 0.99, step_seconds=5, policy=policy) == 4
    assert chance_within(expected=edge, step_seconds=5, policy=policy, depth=0.4, samples=3) == pytest.approx(0.5)
    # Busy enough for the target from about 217 stream starts per second at 5-s samples.
    assert chance_within(expected=217.0, step_seconds=5, policy=policy, depth=0.4, samples=3) >= BUSY_CHANCE
    assert chance_within(expected=215.0, step_seconds=5, policy=policy, depth=0.4, samples=3) < BUSY_CHANCE
    # seed 2's eu-west drop started at an expected value of 97.45: still only about 60 %.
    assert chance_within(expected=97.45, step_seconds=5, policy=policy, depth=0.4, samples=3) == pytest.approx(
        0.60, abs=0.01
    )
    # Busier, or deeper, it is all but certain; fewer samples than consecutiveSamples never.
    assert chance_within(expected=200.0, step_seconds=5, policy=policy, depth=0.4, samples=3) == pytest.approx(0.96, abs=0.01)
    assert chance_within(expected=300.0, step_seconds=5, policy=policy, depth=0.4, samples=3) > 0.99
    assert chance_within(expected=edge, step_seconds=5, policy=policy, depth=0.6, samples=3) > 0.99
    assert chance_within(expected=edge, step_seconds=5, policy=policy, depth=0.4, samples=2) == 0.0
    assert chance_within(expected=edge, step_seconds=5, policy=policy.model_copy(update={"counts_per_unit": 0}),
                         depth=0.4, samples=3) == 1.0
