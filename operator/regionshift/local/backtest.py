"""Backtest: replay weeks of synthetic history through forecast and detection.

Thresholds are only as good as the history they were tried on. This module generates
history with realistic noise (:mod:`regionshift.local.synthetic`), injects faults, and replays
it sample by sample exactly as the operator runs: at each step the forecast is refitted
when the cache says it is due, on the past only (never the sample being judged), and the
detection policy judges every region from its recent samples. Like the operator, the
replay feeds the forecast only the samples detection lets the refit accept
(:func:`regionshift.decide.detection.refit_excludes_since`): once a drop is confirmed its
samples (from the first one under the threshold) are masked out of later fits, so an
outage is never learnt as the new normal; a drop the forecast no longer fits (Unknown,
``ForecastNoLongerFits``) is learnt again. Samples every 5 s (the drill's step) are
judged at that step while the forecast is fitted at ``historyStepSeconds`` (one minute),
as the operator does.

It reports, per fault, what detection concluded and how fast (samples and seconds from
the fault's start to the first matching verdict), every false evacuation (an Unhealthy
verdict that no regional drop explains), and every missed fault (a regional drop deeper
than the policy's sensitivity, ``1 - ratioThreshold``, never called Unhealthy).

The target for the defaults: no false evacuation in 28 simulated days, and every regional
drop of 40 % or more detected within 3 samples in a region busy enough at that moment for
the policy's noise model to promise it: that drop caught within 3 samples with a chance
of at least :data:`BUSY_CHANCE` (:func:`chance_within`). The samples a quieter region needs
(:func:`regionshift.decide.detection.samples_needed`, where the chance is one half) are
reported beside. ``python -m regionshift.local.backtest`` (the
command, :func:`main`) and ``tests/benchmarks/bench_backtest.py`` print the figures;
docs/benchmarks.md records them.

Synthetic history is the project's own, and the forecast was tuned on it, so the module
also replays a **real** series (:func:`run_replay`, ``regionshift backtest --replay
nyc-taxi``): New York taxi passengers every 30 minutes (``tests/data/nyc-taxi``), with the
calendar the region declares (``tests/data/nyc-taxi/calendar.yaml``: its time zone, public
holidays and reduced days), through the same forecast, refit schedule and ``evaluate`` the
operator's detection task runs. The refit holds out a drop under way
exactly as the operator does (:func:`held_out_from`, the same rule as the detection task's
``drops_under_way``) and takes every other sample. It reports false evacuations outside
the series' labelled anomaly windows, what detection said in each window and on each
calendar day, and how fast injected 40 % and 60 % drops of 4 hours are caught.
"""

from __future__ import annotations

import bisect
import copy
import enum
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from regionshift.decide.calendar import UTC_CALENDAR, Calendar, region_calendar
from regionshift.decide.detection import Guard, RegionVerdict, Sample, evaluate, samples_needed
from regionshift.errors import NoData
from regionshift.decide.forecast import ForecastCache, ForecastConfig, SeasonalForecast
from regionshift.api.models import DetectionPolicy, RegionCalendar, Verdict
from regionshift.local.synthetic import (
    DAY_SECONDS,
    DEFAULT_REGIONS,
    Fault,
    FaultKind,
    RegionProfile,
    SyntheticConfig,
    generate_history,
)

__all__ = [
    "BUSY_CHANCE",
    "DEFAULT_START",
    "REPLAY_DATA",
    "ReplayReport",
    "ReplaySeries",
    "format_replay",
    "held_out_from",
    "load_replay",
    "replay_calendar",
    "run_replay",
    "BacktestReport",
    "FalseEvacuation",
    "FaultOutcome",
    "Outcome",
    "chance_within",
    "default_faults",
    "format_report",
    "main",
    "run_backtest",
]

DEFAULT_START = 1_767_571_200.0
"""Monday 2026-01-05 00:00 UTC: where the replayed history begins by default."""

TARGET_DEPTH = 0.4
"""Regional drops at least this deep must be detected within TARGET_SAMPLES samples."""
TARGET_SAMPLES = 3
BUSY_CHANCE = 0.975
"""A region is busy enough for a drop (of TARGET_DEPTH or deeper) when the drop, starting
there, is caught within TARGET_SAMPLES samples with at least this chance (:func:`chance_within`).

Not where a drop needs TARGET_SAMPLES samples on average (:func:`samples_needed` ≤
TARGET_SAMPLES): there the chance is one half, and "caught within 3 samples" would be a
coin toss counted as a promise. For a 40 % drop, 0.975 is about 217 stream starts per
second at 5-s samples (84 at the median), with the default policy; a deeper drop needs fewer."""

_VERDICT_CODES = {Verdict.HEALTHY: 0, Verdict.UNHEALTHY: 1, Verdict.HELD_BACK: 2, Verdict.UNKNOWN: 3}
_GUARD_CODES: dict[Guard | None, int] = {None: 0, **{guard: n + 1 for n, guard in enumerate(Guard)}}


class Outcome(str, enum.Enum):
    """How detection handled one fault."""

    DETECTED = "Detected"
    """A regional drop called Unhealthy, or a guard holding back as it should."""
    MISSED = "Missed"
    """A regional drop deeper than the policy's sensitivity never called Unhealthy."""
    BELOW_SENSITIVITY = "BelowSensitivity"
    """A regional drop shallower than ``1 - ratioThreshold``: not expected to be called."""
    FALSE_EVACUATION = "FalseEvacuation"
    """A global drop, rollout drop or gap called Unhealthy somewhere: it would have evacuated."""


@dataclass(frozen=True, kw_only=True)
class FaultOutcome:
    """What detection concluded about one injected fault."""

    fault: Fault
    outcome: Outcome
    expected: str
    """The verdict the fault should produce, e.g. ``Unhealthy`` or ``HeldBack/GlobalDrop``."""
    delay_samples: int | None
    """Samples from the fault's start to the first expected verdict, counting that one."""
    delay_seconds: float | None
    """Seconds from the fault's start to the time of that sample."""
    first_ratios: tuple[float, ...] = ()
    """For a regional drop: actual/expected of its first ``consecutiveSamples`` samples,
    how far under the threshold detection found it."""
    samples_needed: int | None = None
    """For a regional drop: the samples a drop this deep needs to be shown beyond the counting
    noise at the expected value where it starts (:func:`regionshift.decide.detection.samples_needed`);
    None when it cannot be shown within the policy's evidence window."""
    busy: bool = True
    """Whether the region was busy enough where the drop starts for this drop to be caught
    within TARGET_SAMPLES samples with a chance of at least BUSY_CHANCE (the target covers those)."""
    chance: float | None = None
    """For a regional drop: the chance that detection catches it within TARGET_SAMPLES samples,
    at the expected value where it starts (:func:`chance_within`: the policy's noise model, an
    exact forecast). At least BUSY_CHANCE in a busy region; one half where :func:`samples_needed`
    says exactly TARGET_SAMPLES."""

    @property
    def in_target(self) -> bool:
        """Whether this is a regional drop the target covers: depth ≥ 40 %, in a region busy
        enough at that moment to show it within TARGET_SAMPLES samples."""
        return (
            self.fault.kind is FaultKind.REGIONAL_DROP
            and self.fault.depth >= TARGET_DEPTH - 1e-9
            and self.busy
        )

    @property
    def quiet(self) -> bool:
        """A drop of 40 % or more in a region too quiet at that moment to promise it within TARGET_SAMPLES."""
        return (
            self.fault.kind is FaultKind.REGIONAL_DROP
            and self.fault.depth >= TARGET_DEPTH - 1e-9
            and not self.in_target
        )


@dataclass(frozen=True, kw_only=True)
class FalseEvacuation:
    """An Unhealthy verdict that no regional drop explains."""

    region: str
    at: float
    """Unix seconds of the sample that turned the verdict Unhealthy."""
    message: str


@dataclass(frozen=True, kw_only=True)
class BacktestReport:
    """The figures of one replay."""

    days: float
    regions: tuple[str, ...]
    seed: int
    step_seconds: int
    refit_interval_seconds: float
    policy: DetectionPolicy
    evaluations: int
    """Detection rounds replayed (one per step, every region judged in each)."""
    fits: int
    """Forecast fits performed."""
    outcomes: tuple[FaultOutcome, ...]
    false_evacuations: tuple[FalseEvacuation, ...]
    lowest_quiet_ratio: float
    """Lowest actual/expected held for ``consecutiveSamples`` samples outside every fault
    (and an hour either side): the margin a false alarm would have to cross."""
    holidays: tuple[int, ...] = field(default=())
    evidence_samples: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    """Per region: samples a 40 % drop needs at its quietest and at its busiest expected value
    in the replay (None: not within the evidence window)."""

    @property
    def missed(self) -> tuple[FaultOutcome, ...]:
        """Regional drops deeper than the policy's sensitivity that were never detected."""
        return tuple(o for o in self.outcomes if o.outcome is Outcome.MISSED)

    @property
    def target_met(self) -> bool:
        """No false evacuation, and every regional drop of 40 % or more caught within 3 samples."""
        if self.false_evacuations or any(o.outcome is Outcome.FALSE_EVACUATION for o in self.outcomes):
            return False
        return all(
            o.outcome is Outcome.DETECTED and o.delay_samples is not None and o.delay_samples <= TARGET_SAMPLES
            for o in self.outcomes
            if o.in_target
        )


def chance_within(
    *, expected: float, step_seconds: float, policy: DetectionPolicy, depth: float, samples: int
) -> float:
    """The chance that a drop of ``depth`` (0..1) is judged a drop within ``samples`` samples.

    Detection calls ``samples`` samples a drop when their pooled ratio lies under
    ``θ − z·sqrt(overdispersion·θ/N)`` (``N`` the counts behind them, see
    :mod:`regionshift.decide.detection`). A drop of ``depth`` pools to ``1 − depth`` on
    average, scattered by ``sqrt(overdispersion·(1 − depth)/N)``; with the forecast exact, the
    chance is the normal probability of landing under the line. :func:`samples_needed` is the
    ``k`` at which the average lands on the line, so a drop that needs exactly ``k`` is caught
    within ``k`` samples about half of the time, and a forecast some percent low lowers that.
    """
    theta, z = policy.ratio_threshold, policy.noise_sigmas
    mean = 1.0 - depth
    counts = expected * step_seconds * policy.counts_per_unit * samples
    if samples < policy.consecutive_samples or expected < policy.minimum_expected:
        return 0.0
    if policy.counts_per_unit <= 0 or policy.noise_sigmas <= 0:
        return 1.0 if mean < theta else 0.0
    if counts <= 0:
        return 0.0
    line = theta - z * math.sqrt(policy.overdispersion * theta / counts)
    spread = math.sqrt(policy.overdispersion * max(mean, 1e-9) / counts)
    return 0.5 * (1.0 + math.erf((line - mean) / (spread * math.sqrt(2.0))))


def default_faults(
    *, start: float, days: float, regions: Sequence[str], seed: int, step_seconds: int = 60
) -> tuple[Fault, ...]:
    """The fault schedule the backtest replays: spread evenly, at varied times of day.

    Regional drops of 20 % to 90 % lasting 5 minutes, 20 minutes and 2 hours, rotated over
    the regions; one global drop; one drop two minutes after a rollout; one 45-minute gap.
    Each fault starts on a sample boundary and the faults never overlap.
    """
    specs: list[tuple[FaultKind, float, float]] = []
    depths = (0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9)
    durations = (300.0, 1200.0, 7200.0)
    for n, depth in enumerate(depths):
        for m in range(len(durations)):
            specs.append((FaultKind.REGIONAL_DROP, depth, durations[(n + m) % len(durations)]))
    specs.insert(7, (FaultKind.GLOBAL_DROP, 0.5, 1800.0))
    specs.insert(14, (FaultKind.ROLLOUT_DROP, 0.6, 1800.0))
    specs.insert(19, (FaultKind.GAP, 0.0, 2700.0))
    slot = days * DAY_SECONDS / len(specs)
    if slot < 4 * 3600.0:
        raise ValueError(f"{days} days is too short for {len(specs)} faults at least 4 hours apart")
    rng = np.random.default_rng(seed)
    faults: list[Fault] = []
    for n, (kind, depth, duration) in enumerate(specs):
        # Start somewhere in the first part of the slot, so the fault ends well before the
        # next one and the regions have time to settle.
        offset = rng.uniform(0.1, max(0.1, 0.9 - duration / slot)) * slot
        begin = start + n * slot + offset
        begin -= begin % step_seconds
        region = regions[n % len(regions)]
        faults.append(
            Fault(
                kind=kind,
                start=begin,
                duration_seconds=duration,
                regions=() if kind is FaultKind.GLOBAL_DROP else (region,),
                depth=depth,
            )
        )
    return tuple(faults)


def run_backtest(
    *,
    days: float = 28.0,
    regions: Sequence[RegionProfile] = DEFAULT_REGIONS,
    seed: int = 7,
    step_seconds: int = 60,
    policy: DetectionPolicy = DetectionPolicy(),
    forecast_config: ForecastConfig = ForecastConfig(),
    refit_interval_seconds: float = 1800.0,
    history_days: float = 14.5,
    faults: Sequence[Fault] | None = None,
    holidays: Sequence[int] | None = None,
    synthetic: SyntheticConfig = SyntheticConfig(),
    start: float = DEFAULT_START,
    history_step_seconds: int = 60,
    screened: bool = True,
) -> BacktestReport:
    """Replay ``days`` of synthetic history after ``history_days`` of warm-up.

    The forecast is fitted, as in the operator, on history at ``history_step_seconds``
    (``signal.historyStepSeconds``, the mean of the samples of each such step when it is a
    multiple of ``step_seconds``) and judged at ``step_seconds``. Detection runs only where a
    vectorised screen finds something to judge (a window with a missing or unforecast sample,
    or with a trailing stretch pooled under the threshold, or a region not Healthy at the
    last round); everywhere else every verdict is Healthy, exactly as :func:`evaluate` would
    say, at a fraction of the cost (``screened=False`` judges every round, to check that).

    ``faults`` defaults to :func:`default_faults` over the replayed days; ``holidays`` (day
    indexes of the whole generated history, warm-up included) defaults to one holiday a
    third of the way into the replay, on a day no fault touches when one exists.
    """
    names = tuple(r.name for r in regions)
    replay_start = start + history_days * DAY_SECONDS
    if faults is None:
        faults = default_faults(start=replay_start, days=days, regions=names, seed=seed, step_seconds=step_seconds)
    if holidays is None:
        holidays = (_quiet_day(start=start, replay_start=replay_start, days=days, faults=faults),)
    history = generate_history(
        start=start,
        days=history_days + days,
        seed=seed,
        step_seconds=step_seconds,
        regions=regions,
        faults=faults,
        holidays=holidays,
        config=synthetic,
    )
    ts = history.timestamps
    count = ts.size
    first = int(np.searchsorted(ts, replay_start, side="right"))
    history_samples = int(round(history_days * DAY_SECONDS / step_seconds))
    refit_samples = max(1, int(math.ceil(refit_interval_seconds / step_seconds)))
    window = max(
        policy.consecutive_samples,
        policy.evidence_window_samples,
        int(math.ceil(policy.stale_after_seconds / step_seconds)) + 1,
    )
    merge = history_step_seconds // step_seconds if history_step_seconds % step_seconds == 0 else 1
    merge = max(1, merge)

    def moment(index: int) -> datetime:
        return datetime.fromtimestamp(float(ts[index]), tz=timezone.utc)

    fitted = {name: history.values[name].copy() for name in names}  # healthy samples only
    expected = {name: np.full(count, np.nan) for name in names}
    verdict_code = {name: np.zeros(count, dtype=np.int8) for name in names}
    guard_code = {name: np.zeros(count, dtype=np.int8) for name in names}
    turned_unhealthy: dict[str, list[tuple[int, str]]] = {name: [] for name in names}
    rollouts = {
        name: [datetime.fromtimestamp(t, tz=timezone.utc) for t in history.rollouts[name]] for name in names
    }
    cache = ForecastCache(refit_interval_seconds=refit_interval_seconds)
    previous: dict[str, RegionVerdict] = {}
    screen = np.zeros(count, dtype=bool)
    screened_until = first
    fits = 0

    for i in range(first, count):
        now = float(ts[i])
        refitted = False
        for name in names:
            if cache.due(key=name, now=now):
                lo = max(0, i - history_samples)
                lo = i - (i - lo) // merge * merge
                fit_ts = ts[lo:i].reshape(-1, merge)[:, -1]
                fit_values = fitted[name][lo:i].reshape(-1, merge).mean(axis=1)
                try:
                    forecast = SeasonalForecast.fit(
                        timestamps=fit_ts,
                        values=fit_values,
                        step_seconds=step_seconds * merge,
                        config=forecast_config,
                    )
                except NoData:
                    continue
                fits += 1
                refitted = True
                cache.put(key=name, forecast=forecast, now=now)
                hi = min(count, i + refit_samples)
                expected[name][i:hi] = forecast.predict_at(timestamps=ts[i:hi]).mean
        if refitted or i >= screened_until:
            screened_until = min(count, i + refit_samples)
            screen[i:screened_until] = _screen(
                values=history.values, expected=expected, lo=i, hi=screened_until, window=window, policy=policy
            )
        if screened and not screen[i] and all(v.verdict is Verdict.HEALTHY for v in previous.values()):
            continue  # nothing to judge: every verdict is Healthy (see _screen)
        last_rollouts = {}
        at = moment(i)
        for name in names:
            k = bisect.bisect_right(rollouts[name], at)
            last_rollouts[name] = rollouts[name][k - 1] if k else None
        verdicts = evaluate(
            samples={name: _window(ts=ts, values=history.values[name], expected=expected[name], i=i, window=window)
                     for name in names},
            policy=policy,
            now=at,
            last_rollouts=last_rollouts,
            previous=previous,
            step_seconds=step_seconds,
        )
        for name, verdict in verdicts.items():
            verdict_code[name][i] = _VERDICT_CODES[verdict.verdict]
            guard_code[name][i] = _GUARD_CODES[verdict.held_back_by]
            if verdict.verdict is Verdict.UNHEALTHY and (
                name not in previous or previous[name].verdict is not Verdict.UNHEALTHY
            ):
                turned_unhealthy[name].append((i, verdict.message))
            # What the refit may learn (regionshift.decide.detection.refit_excludes_since): a drop
            # under way is kept out; once the forecast no longer fits, its samples are learnt.
            excluded = verdict.refit_excludes_since
            if excluded is not None:
                began = int(np.searchsorted(ts, excluded.timestamp()))
                fitted[name][began : i + 1] = np.nan
            elif verdict.held_back_by is Guard.FORECAST_NO_LONGER_FITS and verdict.drop_started_at is not None:
                began = int(np.searchsorted(ts, verdict.drop_started_at.timestamp()))
                fitted[name][began : i + 1] = history.values[name][began : i + 1]
        previous = verdicts

    evidence: dict[str, tuple[int | None, int | None]] = {}
    for name in names:
        forecast_values = expected[name][first:]
        forecast_values = forecast_values[np.isfinite(forecast_values)]
        if forecast_values.size:
            evidence[name] = tuple(  # type: ignore[assignment]
                samples_needed(expected=float(v), step_seconds=step_seconds, policy=policy)
                for v in (forecast_values.min(), forecast_values.max())
            )
    return _report(
        days=days,
        names=names,
        seed=seed,
        step_seconds=step_seconds,
        refit_interval_seconds=refit_interval_seconds,
        policy=policy,
        ts=ts,
        first=first,
        values=history.values,
        expected=expected,
        verdict_code=verdict_code,
        guard_code=guard_code,
        turned_unhealthy=turned_unhealthy,
        faults=tuple(faults),
        fits=fits,
        holidays=tuple(holidays),
        evidence=evidence,
    )


def _window(*, ts: np.ndarray, values: np.ndarray, expected: np.ndarray, i: int, window: int) -> tuple[Sample, ...]:
    """The samples the detection task reads at index ``i``: the last ``window`` of them."""
    out = []
    for j in range(max(0, i - window + 1), i + 1):
        value, forecast = float(values[j]), float(expected[j])
        out.append(
            Sample(
                at=datetime.fromtimestamp(float(ts[j]), tz=timezone.utc),
                actual=value if math.isfinite(value) else None,
                expected=forecast if math.isfinite(forecast) else None,
            )
        )
    return tuple(out)


def _screen(
    *,
    values: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    lo: int,
    hi: int,
    window: int,
    policy: DetectionPolicy,
) -> np.ndarray:
    """For the rounds ``lo..hi-1``: whether any region's window might yield a verdict other than Healthy.

    False only when, for every region, the last ``window`` samples all have a value and a
    forecast of at least ``minimumExpected`` and no trailing stretch of them pooled lies under
    ``ratioThreshold``: then no run is a drop and no region counts towards a global drop
    (both need a trailing stretch pooled under the threshold), so :func:`evaluate` says
    Healthy everywhere, whatever the noise allowance.
    """
    start = max(0, lo - window + 1)
    flags = np.zeros(hi - lo, dtype=bool)
    theta = policy.ratio_threshold
    for name, series in values.items():
        a = series[start:hi]
        e = expected[name][start:hi]
        bad = ~np.isfinite(a) | ~np.isfinite(e) | ~(e >= policy.minimum_expected)
        deficit = np.where(bad, 0.0, a - theta * np.where(bad, 0.0, e))
        cumulative = np.concatenate(([0.0], np.cumsum(deficit)))
        bad_count = np.concatenate(([0], np.cumsum(bad)))
        ends = np.arange(lo, hi) - start + 1  # position in `cumulative` after each round's sample
        begins = np.maximum(ends - window, 0)
        flags |= (bad_count[ends] - bad_count[begins]) > 0
        padded = np.concatenate((np.full(window - 1, -np.inf), cumulative))
        # max of cumulative[end-window .. end-1] for each end: a trailing stretch sums to < 0
        prior = np.lib.stride_tricks.sliding_window_view(padded, window)[ends - 1].max(axis=1)
        flags |= cumulative[ends] < prior
    return flags


def _quiet_day(*, start: float, replay_start: float, days: float, faults: Sequence[Fault]) -> int:
    """A day index (from ``start``) a third into the replay, free of faults if possible."""
    first_day = int((replay_start - start) // DAY_SECONDS) + 1
    last_day = int((replay_start - start) // DAY_SECONDS + days) - 1
    candidates = list(range(first_day + max(0, int(days // 3) - 1), last_day)) + list(range(first_day, last_day))
    for day in candidates:
        # A holiday reaches from noon the day before (level ramp) into the next morning.
        lo = start + (day - 1) * DAY_SECONDS
        hi = start + (day + 2) * DAY_SECONDS
        if not any(f.start < hi and f.end > lo for f in faults):
            return day
    return first_day + int(days // 3)


def _report(
    *,
    days: float,
    names: tuple[str, ...],
    seed: int,
    step_seconds: int,
    refit_interval_seconds: float,
    policy: DetectionPolicy,
    ts: np.ndarray,
    first: int,
    values: Mapping[str, np.ndarray],
    expected: dict[str, np.ndarray],
    verdict_code: dict[str, np.ndarray],
    guard_code: dict[str, np.ndarray],
    turned_unhealthy: dict[str, list[tuple[int, str]]],
    faults: tuple[Fault, ...],
    fits: int,
    holidays: tuple[int, ...],
    evidence: Mapping[str, tuple[int | None, int | None]],
) -> BacktestReport:
    """Score the recorded verdicts against the injected faults."""
    unhealthy = _VERDICT_CODES[Verdict.UNHEALTHY]
    held = _VERDICT_CODES[Verdict.HELD_BACK]
    unknown = _VERDICT_CODES[Verdict.UNKNOWN]
    sensitivity = 1.0 - policy.ratio_threshold
    outcomes: list[FaultOutcome] = []
    explained: dict[str, list[tuple[int, int]]] = {name: [] for name in names}
    quiet = {name: np.ones(ts.size, dtype=bool) for name in names}
    for fault in faults:
        lo = int(np.searchsorted(ts, fault.start, side="right"))
        hi = int(np.searchsorted(ts, fault.end, side="right"))
        hit = [name for name in names if fault.hits(name)]
        for name in hit:
            # Around every fault the signal is not quiet: a settling margin either side.
            quiet[name][max(0, lo - 60) : min(ts.size, hi + 60)] = False
        first_ratios: tuple[float, ...] = ()
        needed: int | None = None
        busy = True
        chance: float | None = None
        if fault.kind is FaultKind.REGIONAL_DROP:
            name = hit[0]
            if lo < ts.size and math.isfinite(expected[name][lo]):
                forecast = float(expected[name][lo])
                needed = samples_needed(expected=forecast, step_seconds=step_seconds, policy=policy, depth=fault.depth)
                chance = chance_within(
                    expected=forecast, step_seconds=step_seconds, policy=policy, depth=fault.depth,
                    samples=TARGET_SAMPLES,
                )
                busy = chance >= BUSY_CHANCE
            explained[name].append((lo, hi + policy.consecutive_samples))
            head = slice(lo, min(hi, lo + policy.consecutive_samples))
            first_ratios = tuple(float(v) for v in values[name][head] / expected[name][head])
            matches = np.flatnonzero(verdict_code[name][lo:hi] == unhealthy)
            label = "Unhealthy"
            if matches.size:
                outcome = Outcome.DETECTED
            elif fault.depth > sensitivity + 1e-9:
                outcome = Outcome.MISSED
            else:
                outcome = Outcome.BELOW_SENSITIVITY
        else:
            evacuated = any(np.any(verdict_code[name][lo:hi] == unhealthy) for name in hit)
            if fault.kind is FaultKind.GAP:
                label = "Unknown/NoData|StaleData"
                missing = (_GUARD_CODES[Guard.NO_DATA], _GUARD_CODES[Guard.STALE_DATA])
                wanted = [
                    np.flatnonzero((verdict_code[name][lo:hi] == unknown) & np.isin(guard_code[name][lo:hi], missing))
                    for name in hit
                ]
            else:
                guard = Guard.GLOBAL_DROP if fault.kind is FaultKind.GLOBAL_DROP else Guard.RECENT_ROLLOUT
                label = f"HeldBack/{guard.value}"
                code = _GUARD_CODES[guard]
                wanted = [
                    np.flatnonzero((verdict_code[name][lo:hi] == held) & (guard_code[name][lo:hi] == code))
                    for name in hit
                ]
            found = [w for w in wanted if w.size]
            matches = np.array([min(int(w[0]) for w in found)]) if found else np.array([], dtype=np.int64)
            if evacuated:
                outcome = Outcome.FALSE_EVACUATION
            elif matches.size:
                outcome = Outcome.DETECTED
            else:
                outcome = Outcome.MISSED
        delay = int(matches[0]) + 1 if matches.size else None
        outcomes.append(
            FaultOutcome(
                fault=fault,
                outcome=outcome,
                expected=label,
                delay_samples=delay,
                delay_seconds=float(ts[lo + delay - 1] - fault.start) if delay is not None else None,
                first_ratios=first_ratios,
                samples_needed=needed,
                busy=busy,
                chance=chance,
            )
        )

    false_evacuations: list[FalseEvacuation] = []
    for name in names:
        for index, message in turned_unhealthy[name]:
            if not any(lo <= index < hi for lo, hi in explained[name]):
                false_evacuations.append(FalseEvacuation(region=name, at=float(ts[index]), message=message))

    # The lowest ratio held for consecutiveSamples in a row outside every fault: what a
    # false alarm would need to get under.
    lowest = math.inf
    run = policy.consecutive_samples
    for name in names:
        series = values[name][first:]
        forecast = expected[name][first:]
        usable = quiet[name][first:] & np.isfinite(series) & np.isfinite(forecast)
        usable &= forecast >= policy.minimum_expected
        ratios = np.where(usable, series / np.where(usable, forecast, 1.0), np.inf)
        if ratios.size >= run:
            held = np.max(np.lib.stride_tricks.sliding_window_view(ratios, run), axis=1)
            lowest = min(lowest, float(np.min(held)))
    return BacktestReport(
        days=days,
        regions=names,
        seed=seed,
        step_seconds=step_seconds,
        refit_interval_seconds=refit_interval_seconds,
        policy=policy,
        evaluations=ts.size - first,
        fits=fits,
        outcomes=tuple(outcomes),
        false_evacuations=tuple(sorted(false_evacuations, key=lambda f: f.at)),
        lowest_quiet_ratio=lowest,
        holidays=holidays,
        evidence_samples=dict(evidence),
    )


def format_report(report: BacktestReport) -> str:
    """The report as a plain-text table for terminals and docs."""
    policy = report.policy
    lines = [
        f"backtest: {report.days:g} days x {len(report.regions)} regions ({', '.join(report.regions)}),"
        f" step {report.step_seconds} s, seed {report.seed}",
        f"policy: ratio < {policy.ratio_threshold:g} for {policy.consecutive_samples} samples,"
        f" minimum expected {policy.minimum_expected:g}, stale after {policy.stale_after_seconds} s,"
        f" rollout guard {policy.rollout_guard_seconds} s, global drop >= {policy.global_drop_fraction:g}",
        f"noise allowance: {policy.noise_sigmas:g} sigma of counts x {policy.counts_per_unit:g} per unit-second,"
        f" overdispersion {policy.overdispersion:g}, window {policy.evidence_window_samples} samples;"
        f" share ratio < {policy.share_ratio_threshold:g}; no longer fits after {policy.no_longer_fits_after_seconds} s",
        f"forecast refit every {report.refit_interval_seconds:g} s: {report.fits} fits,"
        f" {report.evaluations} detection rounds;"
        f" holiday on day(s) {', '.join(map(str, report.holidays)) or 'none'}",
        "",
        f"{'fault':<13} {'region':<10} {'depth':>5} {'length':>7}  {'expected':<24} {'outcome':<17} {'delay':>13}"
        f" {'needs':>5}",
    ]
    for o in report.outcomes:
        f = o.fault
        region = ",".join(f.regions) if f.regions else "all"
        depth = f"{f.depth:.0%}" if f.kind is not FaultKind.GAP else "-"
        delay = f"{o.delay_samples} / {o.delay_seconds:.0f} s" if o.delay_samples is not None else "-"
        lines.append(
            f"{f.kind.value:<13} {region:<10} {depth:>5} {f.duration_seconds / 60:>5.0f} m  {o.expected:<24}"
            f" {o.outcome.value:<17} {delay:>13}"
            + (f" {o.samples_needed if o.samples_needed is not None else '>win':>5}" if f.kind is FaultKind.REGIONAL_DROP else "")
        )
    in_target = [o for o in report.outcomes if o.in_target]
    caught = [o for o in in_target if o.delay_samples is not None and o.delay_samples <= TARGET_SAMPLES]
    delays = [o.delay_samples for o in in_target if o.delay_samples is not None]
    highest = max((max(o.first_ratios) for o in in_target if o.first_ratios), default=math.nan)
    quiet = [o for o in report.outcomes if o.quiet]
    quiet_caught = [
        o for o in quiet
        if o.delay_samples is not None and o.samples_needed is not None and o.delay_samples <= o.samples_needed
    ]
    lines += [
        "",
        "samples a 40% drop needs (quietest / busiest expected value of the replay): "
        + ", ".join(
            f"{name} {' / '.join('>' + str(policy.evidence_window_samples) if n is None else str(n) for n in pair)}"
            for name, pair in report.evidence_samples.items()
        ),
        f"regional drops >= {TARGET_DEPTH:.0%} where the region was too quiet to promise them within {TARGET_SAMPLES}"
        f" samples (a chance under {BUSY_CHANCE:.1%}): {len(quiet)}; {len(quiet_caught)} detected within the samples"
        " they need"
        + "".join(
            f"\n  {o.fault.regions[0]} {o.fault.depth:.0%}: needs {o.samples_needed if o.samples_needed is not None else 'more than the window'},"
            f" detected after {o.delay_samples if o.delay_samples is not None else '-'}"
            for o in quiet
        ),
        f"regional drops >= {TARGET_DEPTH:.0%} in regions busy enough (a chance of {BUSY_CHANCE:.1%} or more):"
        f" {len(caught)}/{len(in_target)} detected within"
        f" {TARGET_SAMPLES} samples (max delay {max(delays) if delays else '-'} samples);"
        f" highest actual/expected in their first {policy.consecutive_samples} samples: {highest:.3f}",
        f"  chance of each within {TARGET_SAMPLES} samples at its start (noise model, exact forecast):"
        f" {sum(o.chance for o in in_target if o.chance is not None):.2f} of {len(in_target)} expected"
        + "".join(
            f"\n  {o.fault.regions[0]} {o.fault.depth:.0%}: chance {o.chance:.2f},"
            f" detected after {o.delay_samples if o.delay_samples is not None else '-'}"
            for o in in_target
            if o.chance is not None and o.chance < 0.99
        ),
        f"missed faults: {len(report.missed)}",
        f"false evacuations: {len(report.false_evacuations)}"
        + "".join(
            f"\n  {datetime.fromtimestamp(e.at, tz=timezone.utc):%Y-%m-%d %H:%M} {e.region}: {e.message}"
            for e in report.false_evacuations
        ),
        f"lowest actual/expected outside faults: {report.lowest_quiet_ratio:.3f}"
        f" (threshold {policy.ratio_threshold:g})",
        f"target (no false evacuation, every drop >= {TARGET_DEPTH:.0%} within {TARGET_SAMPLES} samples):"
        f" {'MET' if report.target_met else 'NOT MET'}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m regionshift.local.backtest``: run a backtest and print its report.

    Exits 0 when the target holds, 1 when it does not.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="regionshift backtest", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=28.0, help="days to replay (default 28)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic history (default 7)")
    parser.add_argument("--step-seconds", type=int, default=60, help="sample step (default 60)")
    parser.add_argument(
        "--refit-interval-seconds", type=float, default=1800.0, help="forecast refit interval (default 1800)"
    )
    parser.add_argument(
        "--history-step-seconds", type=int, default=60, help="resolution the forecast is fitted at (default 60)"
    )
    args = parser.parse_args(argv)
    report = run_backtest(
        days=args.days,
        seed=args.seed,
        step_seconds=args.step_seconds,
        refit_interval_seconds=args.refit_interval_seconds,
        history_step_seconds=args.history_step_seconds,
    )
    print(format_report(report))
    return 0 if report.target_met else 1


if __name__ == "__main__":
    raise SystemExit(main())


# ---------------------------------------------------------------------------- real-data replay

REPLAY_DATA = Path(__file__).resolve().parents[3] / "tests" / "data"
"""Where ``--replay NAME`` finds its series: ``tests/data/NAME/`` of the source tree."""

REPLAY_TARGET_DEPTHS = (0.4, 0.6)
"""Injected drops of the replay: each depth at :data:`REPLAY_INJECTIONS` random starts."""
REPLAY_INJECTIONS = 20
REPLAY_INJECTION_SECONDS = 4 * 3600.0
REPLAY_TARGET_CAUGHT = {0.4: 18, 0.6: 20}
"""Injected drops caught within TARGET_SAMPLES samples, of REPLAY_INJECTIONS, per depth."""
REPLAY_REDUCED_DAY_HOURS = (8, 13, 18)
"""Local hours at which drops are also injected on each reduced day of the replay: what
detection still catches on a day forecast lower by design (reported, not a target)."""


@dataclass(frozen=True, kw_only=True)
class ReplaySeries:
    """A real series to replay: samples on a fixed UTC grid, its region's calendar, labelled windows."""

    name: str
    region: str
    timestamps: np.ndarray
    """Unix seconds; a sample stamped ``t`` covers the step ending at ``t``."""
    values: np.ndarray
    step_seconds: int
    calendar: RegionCalendar
    """The region's ``spec.calendar``, as its RegionFailover declares it (``calendar.yaml``)."""
    windows: tuple[tuple[str, float, float], ...]
    """(name, start, end) of each labelled anomaly, unix seconds."""
    source: str


def load_replay(name: str, *, data_dir: Path | None = None) -> ReplaySeries:
    """Read ``tests/data/<name>/``: the NAB taxi series (``nyc-taxi``) is the one there is.

    The CSV's timestamps are New York wall-clock starts of 30-minute buckets. Each becomes
    the UTC instant its bucket ends; the two ambiguous half-hours of the fall-back night,
    which hold two hours' passengers each, are split evenly between both instants they
    stand for, so the series has one sample every 30 minutes of real time.
    """
    import csv
    import json

    import yaml

    folder = (data_dir or REPLAY_DATA) / name
    if name != "nyc-taxi":
        raise ValueError(f"no replay named {name!r}: nyc-taxi is the one in {REPLAY_DATA}")
    declared = RegionCalendar.model_validate(yaml.safe_load((folder / "calendar.yaml").read_text()))
    zone = ZoneInfo(declared.time_zone)
    step = 1800

    def instants(text: str) -> list[float]:
        wall = datetime.fromisoformat(text).replace(tzinfo=zone)
        first = wall.replace(fold=0).timestamp()
        second = wall.replace(fold=1).timestamp()
        return [first] if first == second else [first, second]

    points: dict[float, float] = {}
    with open(folder / "nyc_taxi.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            starts = instants(row["timestamp"])
            for begin in starts:
                points[begin + step] = float(row["value"]) / len(starts)
    ts = np.array(sorted(points))
    grid = np.arange(ts[0], ts[-1] + step, step)
    values = np.full(grid.size, np.nan)
    values[np.searchsorted(grid, ts)] = [points[t] for t in ts]
    labels = json.loads((folder / "windows.json").read_text())
    windows = tuple(
        (label, instants(lo.split(".")[0])[0], instants(hi.split(".")[0])[-1])
        for label, (lo, hi) in zip(labels["names"], labels["windows"], strict=True)
    )
    return ReplaySeries(
        name=name,
        region="nyc",
        timestamps=grid,
        values=values,
        step_seconds=step,
        calendar=declared,
        windows=windows,
        source="NAB realKnownCause/nyc_taxi.csv (MIT), tests/data/nyc-taxi",
    )


@dataclass
class _ReplayState:
    """What the operator keeps between detection rounds of one region (deep-copied for injections)."""

    cache: ForecastCache
    previous: dict[str, RegionVerdict]
    recent: deque[Sample]
    expected: dict[int, float]
    """Expected value per sample index, from the forecast fitted when it was judged."""
    fits: int = 0


def held_out_from(verdict: RegionVerdict | None) -> float | None:
    """Where the refit stops taking samples, by the last verdict (see :meth:`SeasonalForecast.fit`).

    Detection's own rule (:func:`regionshift.decide.detection.refit_excludes_since`, as the
    operator's detection task applies it): a drop detection still treats as a possible
    outage is held out from its first sample; anything else (Healthy, or Unknown once the
    forecast no longer fits) holds nothing out, so the refit learns the new level.
    """
    if verdict is None:
        return None
    since = verdict.refit_excludes_since
    return since.timestamp() if since is not None else None


@dataclass(frozen=True, kw_only=True)
class WindowOutcome:
    """What detection said during one labelled window."""

    name: str
    start: float
    end: float
    unhealthy_hours: float
    held_back_hours: float
    unknown_hours: float
    first_unhealthy: float | None
    lowest_ratio: float


@dataclass(frozen=True, kw_only=True)
class HolidayOutcome:
    """What detection said on one calendar day of the replay."""

    day: date
    name: str
    in_window: str | None
    """The labelled window the day falls in, if any."""
    reduced: bool
    """A reduced day (forecast lower by design), not a holiday or special day."""
    unhealthy: bool
    lowest_ratio: float


@dataclass(frozen=True, kw_only=True)
class InjectionOutcome:
    """One injected drop: when it began and after how many samples it was called Unhealthy."""

    depth: float
    start: float
    delay_samples: int | None

    @property
    def caught(self) -> bool:
        return self.delay_samples is not None and self.delay_samples <= TARGET_SAMPLES


@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    """The figures of one real-data replay."""

    series: ReplaySeries
    calendar: Calendar
    history_days: float
    refit_interval_seconds: float
    policy: DetectionPolicy
    replay_start: float
    evaluations: int
    fits: int
    false_evacuations: tuple[FalseEvacuation, ...]
    """Turns to Unhealthy outside every labelled window."""
    unhealthy_hours_outside: float
    windows: tuple[WindowOutcome, ...]
    holidays: tuple[HolidayOutcome, ...]
    injections: tuple[InjectionOutcome, ...]
    seed: int
    reduced_day_injections: tuple[InjectionOutcome, ...] = ()
    """Drops injected on the reduced days at :data:`REPLAY_REDUCED_DAY_HOURS` (not a target)."""
    reduced_days_in_forecast: bool = True
    """False when the replay ran with ``use_reduced_days=False`` (for comparison)."""

    def caught(self, depth: float) -> int:
        return sum(1 for i in self.injections if abs(i.depth - depth) < 1e-9 and i.caught)

    @property
    def misses(self) -> list[str]:
        """Each target the replay misses, in words (empty: every target met)."""
        out = []
        if self.false_evacuations:
            out.append(f"{len(self.false_evacuations)} false evacuations outside the labelled windows (target 0)")
        for depth, wanted in REPLAY_TARGET_CAUGHT.items():
            if self.caught(depth) < wanted:
                out.append(
                    f"{depth:.0%} drops caught within {TARGET_SAMPLES} samples: {self.caught(depth)} of"
                    f" {REPLAY_INJECTIONS} (target {wanted})"
                )
        unhealthy = [h for h in self.holidays if h.unhealthy and not h.reduced]
        if unhealthy:
            out.append("holidays or special days turned Unhealthy: " + ", ".join(f"{h.day} {h.name}" for h in unhealthy))
        return out


def _replay_steps(
    *,
    series: ReplaySeries,
    values: np.ndarray,
    state: _ReplayState,
    begin: int,
    end: int,
    judge_from: int,
    policy: DetectionPolicy,
    forecast_config: ForecastConfig,
    calendar: Calendar,
    history_samples: int,
    record: Callable[[int, RegionVerdict], None] | None = None,
    snapshots: Mapping[int, list[_ReplayState]] | None = None,
) -> None:
    """Replay samples ``begin`` to ``end`` (exclusive) exactly as the operator's detection task runs.

    Each round: refit when the cache says it is due, on the past only (never the sample
    being judged) and holding out a drop under way (:func:`held_out_from`); then judge the
    latest ``consecutiveSamples + 2`` samples (what the detection task reads).
    """
    region = series.region
    ts = series.timestamps
    step = series.step_seconds
    for i in range(begin, end):
        if snapshots is not None and i in snapshots:
            snapshots[i].append(copy.deepcopy(state))
        now = float(ts[i])
        if state.cache.due(key=region, now=now):
            lo = max(0, i - history_samples)
            try:
                forecast = SeasonalForecast.fit(
                    timestamps=ts[lo:i],
                    values=values[lo:i],
                    step_seconds=step,
                    config=forecast_config,
                    calendar=calendar,
                    held_out_from=held_out_from(state.previous.get(region)),
                )
                state.cache.put(key=region, forecast=forecast, now=now)
                state.fits += 1
            except NoData:
                pass
        forecast = state.cache.get(key=region)
        expected = forecast.expected(at=now).mean if forecast is not None else None
        if expected is not None:
            state.expected[i] = expected
        value = float(values[i])
        state.recent.append(
            Sample(
                at=datetime.fromtimestamp(now, tz=timezone.utc),
                actual=value if math.isfinite(value) else None,
                expected=expected,
            )
        )
        if i < judge_from:
            continue
        verdicts = evaluate(
            samples={region: tuple(state.recent)},
            policy=policy,
            now=datetime.fromtimestamp(now, tz=timezone.utc),
            previous=state.previous,
            step_seconds=float(step),
        )
        if record is not None:
            record(i, verdicts[region])
        state.previous = verdicts


def replay_calendar(series: ReplaySeries, *, use_calendar: bool = True) -> Calendar:
    """The calendar the region declares (UTC and no calendar day with ``use_calendar`` False)."""
    if not use_calendar:
        return UTC_CALENDAR
    first = datetime.fromtimestamp(float(series.timestamps[0]), tz=timezone.utc).year
    last = datetime.fromtimestamp(float(series.timestamps[-1]), tz=timezone.utc).year
    declared = series.calendar
    return region_calendar(
        time_zone=declared.time_zone,
        country=declared.holidays.country if declared.holidays else None,
        subdivision=declared.holidays.subdivision if declared.holidays else None,
        special_days=declared.special_days,
        reduced_days=declared.reduced_days,
        years=range(first - 1, last + 2),
    )


def run_replay(
    *,
    name: str = "nyc-taxi",
    policy: DetectionPolicy = DetectionPolicy(),
    forecast_config: ForecastConfig = ForecastConfig(),
    history_days: float = 14.0,
    refit_interval_seconds: float = 3600.0,
    use_calendar: bool = True,
    use_reduced_days: bool = True,
    seed: int = 7,
    data_dir: Path | None = None,
) -> ReplayReport:
    """Replay a real series through the operator's forecast and detection, with injected drops.

    The first ``history_days`` (plus half a day, as the operator fetches) are warm-up; every
    later sample is judged. Besides the plain replay, drops of 40 % and 60 % lasting 4 hours
    are injected at :data:`REPLAY_INJECTIONS` random starts each (``seed``), outside the
    labelled windows and calendar days (reduced days included), each replayed from the plain
    replay's state a few samples before it; and, for the record, at
    :data:`REPLAY_REDUCED_DAY_HOURS` on each reduced day. ``use_reduced_days`` False keeps the
    declared reduced days out of the forecast only (the injections stay where they are), to
    compare with the forecast before reduced days existed.
    """
    series = load_replay(name, data_dir=data_dir)
    calendar = replay_calendar(series, use_calendar=use_calendar)
    forecast_calendar = calendar if use_reduced_days else replace(calendar, reduced_days=frozenset())
    ts = series.timestamps
    step = series.step_seconds
    history_samples = int(round((history_days + 0.5) * DAY_SECONDS / step))
    first = history_samples
    # The series counts passengers per sample: the counting noise of one sample is its own count.
    policy = policy.model_copy(update={"counts_per_unit": 1.0 / step})
    window = max(policy.consecutive_samples + 2, policy.evidence_window_samples + 1)  # as the operator reads

    def fresh() -> _ReplayState:
        return _ReplayState(
            cache=ForecastCache(refit_interval_seconds=refit_interval_seconds),
            previous={},
            recent=deque(maxlen=window),
            expected={},
        )

    # Injection starts: random samples whose 4 hours (and a day after) touch no labelled
    # window and no calendar day, drawn with a fixed seed.
    length = int(round(REPLAY_INJECTION_SECONDS / step))
    lead = window + 2
    blocked = np.zeros(ts.size, dtype=bool)
    for _, lo, hi in series.windows:
        blocked |= (ts >= lo - DAY_SECONDS) & (ts <= hi + DAY_SECONDS)
    local_days = np.floor(calendar.local_seconds(ts - step) / DAY_SECONDS).astype(np.int64)
    calendar_day = calendar.is_calendar_day(local_days)
    for k in np.flatnonzero(calendar_day):
        blocked[max(0, k - length) : k + 1] = True
    candidates = [k for k in range(first + lead, ts.size - length) if not blocked[k : k + length].any()]
    rng = np.random.default_rng(seed)
    starts = {depth: sorted(int(k) for k in rng.choice(candidates, size=REPLAY_INJECTIONS, replace=False))
              for depth in REPLAY_TARGET_DEPTHS}
    # On each reduced day (not also a holiday), at a few local hours: what is still caught there.
    local_hour = np.floor(calendar.local_seconds(ts - step) / 3600.0).astype(np.int64) % 24
    at_hour = (calendar.local_seconds(ts - step) % 3600.0) == 0
    reduced_starts = [int(k) for k in np.flatnonzero(calendar.is_reduced_day(local_days) & at_hour)
                      if first + lead <= k < ts.size - length and local_hour[k] in REPLAY_REDUCED_DAY_HOURS]

    verdicts: dict[int, RegionVerdict] = {}
    snapshots: dict[int, list[_ReplayState]] = {
        k - lead: [] for k in [*(k for ks in starts.values() for k in ks), *reduced_starts]
    }
    base = fresh()
    _replay_steps(
        series=series, values=series.values, state=base, begin=0, end=ts.size, judge_from=first,
        policy=policy, forecast_config=forecast_config, calendar=forecast_calendar,
        history_samples=history_samples, record=lambda i, v: verdicts.__setitem__(i, v), snapshots=snapshots,
    )

    def inject(depth: float, k: int) -> InjectionOutcome:
        values = series.values.copy()
        values[k : k + length] *= 1.0 - depth
        called: list[int] = []

        def note(i: int, verdict: RegionVerdict) -> None:
            if i >= k and verdict.verdict is Verdict.UNHEALTHY and not called:
                called.append(i - k + 1)

        _replay_steps(
            series=series, values=values, state=copy.deepcopy(snapshots[k - lead][0]), begin=k - lead,
            end=k + length, judge_from=first, policy=policy, forecast_config=forecast_config,
            calendar=forecast_calendar, history_samples=history_samples, record=note,
        )
        return InjectionOutcome(depth=depth, start=float(ts[k]), delay_samples=called[0] if called else None)

    injections = tuple(inject(depth, k) for depth, ks in starts.items() for k in ks)
    on_reduced_days = tuple(inject(depth, k) for depth in REPLAY_TARGET_DEPTHS for k in reduced_starts)

    return replace(
        _replay_report(
            series=series, calendar=calendar, verdicts=verdicts, expected=base.expected, first=first,
            policy=policy, history_days=history_days, refit_interval_seconds=refit_interval_seconds,
            fits=base.fits, injections=injections, seed=seed,
        ),
        reduced_day_injections=on_reduced_days,
        reduced_days_in_forecast=use_reduced_days,
    )


def _replay_report(
    *,
    series: ReplaySeries,
    calendar: Calendar,
    verdicts: Mapping[int, RegionVerdict],
    expected: Mapping[int, float],
    first: int,
    policy: DetectionPolicy,
    history_days: float,
    refit_interval_seconds: float,
    fits: int,
    injections: tuple[InjectionOutcome, ...],
    seed: int,
) -> ReplayReport:
    """Score the plain replay against the labelled windows and the calendar days."""
    ts = series.timestamps
    step = series.step_seconds
    hours = step / 3600.0

    def window_of(t: float) -> str | None:
        return next((label for label, lo, hi in series.windows if lo <= t <= hi), None)

    def ratio(i: int) -> float:
        e = expected.get(i)
        v = float(series.values[i])
        return v / e if e and math.isfinite(v) and e > 0 else math.nan

    false_evacuations: list[FalseEvacuation] = []
    outside = 0.0
    before: Verdict | None = None
    for i in range(first, ts.size):
        verdict = verdicts[i]
        t = float(ts[i])
        if verdict.verdict is Verdict.UNHEALTHY and window_of(t) is None:
            outside += hours
            if before is not Verdict.UNHEALTHY:
                false_evacuations.append(FalseEvacuation(region=series.region, at=t, message=verdict.message))
        before = verdict.verdict

    windows = []
    for label, lo, hi in series.windows:
        inside = [i for i in range(first, ts.size) if lo <= ts[i] <= hi]
        kinds = [verdicts[i].verdict for i in inside]
        turned = next((float(ts[i]) for i in inside if verdicts[i].verdict is Verdict.UNHEALTHY), None)
        ratios = [r for r in (ratio(i) for i in inside) if math.isfinite(r)]
        windows.append(
            WindowOutcome(
                name=label, start=lo, end=hi,
                unhealthy_hours=hours * kinds.count(Verdict.UNHEALTHY),
                held_back_hours=hours * kinds.count(Verdict.HELD_BACK),
                unknown_hours=hours * kinds.count(Verdict.UNKNOWN),
                first_unhealthy=turned, lowest_ratio=min(ratios, default=math.nan),
            )
        )

    local_days = np.floor(calendar.local_seconds(ts - step) / DAY_SECONDS).astype(np.int64)
    start_day = datetime.fromtimestamp(float(ts[first]), tz=timezone.utc).date()
    end_day = datetime.fromtimestamp(float(ts[-1]), tz=timezone.utc).date()
    holidays = []
    for day, label in calendar.names(start=start_day, end=end_day):
        number = (day - date(1970, 1, 1)).days
        inside = [i for i in np.flatnonzero(local_days == number) if i >= first]
        if not inside:
            continue
        ratios = [r for r in (ratio(i) for i in inside) if math.isfinite(r)]
        holidays.append(
            HolidayOutcome(
                day=day, name=label, in_window=window_of(float(ts[inside[len(inside) // 2]])),
                reduced=bool(calendar.is_reduced_day(np.array([number]))[0]),
                unhealthy=any(verdicts[i].verdict is Verdict.UNHEALTHY for i in inside),
                lowest_ratio=min(ratios, default=math.nan),
            )
        )
    return ReplayReport(
        series=series, calendar=calendar, history_days=history_days,
        refit_interval_seconds=refit_interval_seconds, policy=policy, replay_start=float(ts[first]),
        evaluations=ts.size - first, fits=fits, false_evacuations=tuple(false_evacuations),
        unhealthy_hours_outside=outside, windows=tuple(windows), holidays=tuple(holidays),
        injections=injections, seed=seed,
    )


def format_replay(report: ReplayReport) -> str:
    """The replay's report as a plain-text table."""
    series = report.series
    policy = report.policy
    zone = ZoneInfo(series.calendar.time_zone)

    def local(t: float) -> str:
        return datetime.fromtimestamp(t, tz=zone).strftime("%Y-%m-%d %H:%M")

    cal = report.calendar
    declared = series.calendar.holidays
    lines = [
        f"replay {series.name}: {series.source}",
        f"region {series.region}, step {series.step_seconds} s, {report.evaluations} samples judged from"
        f" {local(report.replay_start)} ({series.calendar.time_zone}); history {report.history_days:g} days,"
        f" refit every {report.refit_interval_seconds:g} s ({report.fits} fits)",
        f"calendar ({series.name}/calendar.yaml): time zone {cal.time_zone}, holidays "
        + (f"{declared.country}/{declared.subdivision}" if cal.holidays and declared else "none")
        + f", {len(cal.special_days)} special days, {len(cal.reduced_days)} reduced days"
        + ("" if report.reduced_days_in_forecast else " (not used by the forecast: --no-reduced-days)"),
        f"policy: ratio < {policy.ratio_threshold:g} for {policy.consecutive_samples} samples (the default)",
        "",
        f"{'labelled window':<52} {'Unhealthy':>9} {'HeldBack':>8} {'Unknown':>7} {'first Unhealthy':>16} {'min ratio':>9}",
    ]
    for w in report.windows:
        lines.append(
            f"{w.name:<52} {w.unhealthy_hours:>8.1f}h {w.held_back_hours:>7.1f}h {w.unknown_hours:>6.1f}h"
            f" {local(w.first_unhealthy) if w.first_unhealthy else '-':>16} {w.lowest_ratio:>9.2f}"
        )
    lines += ["", f"{'calendar day':<12} {'name':<36} {'in window':<16} {'Unhealthy':<9} {'min ratio':>9}"]
    for h in report.holidays:
        lines.append(
            f"{h.day.isoformat():<12} {h.name[:36]:<36} {(h.in_window or '-')[:16]:<16}"
            f" {'yes' if h.unhealthy else 'no':<9} {h.lowest_ratio:>9.2f}"
        )
    lines += [
        "",
        f"false evacuations outside the labelled windows: {len(report.false_evacuations)}"
        f" ({report.unhealthy_hours_outside:.1f} h Unhealthy)"
        + "".join(f"\n  {local(e.at)} {e.message}" for e in report.false_evacuations),
    ]
    for depth in REPLAY_TARGET_DEPTHS:
        delays = sorted(i.delay_samples for i in report.injections if abs(i.depth - depth) < 1e-9
                        and i.delay_samples is not None)
        missed = [local(i.start) for i in report.injections if abs(i.depth - depth) < 1e-9 and not i.caught]
        lines.append(
            f"injected {depth:.0%} drops of {REPLAY_INJECTION_SECONDS / 3600:g} h (seed {report.seed}):"
            f" {report.caught(depth)}/{REPLAY_INJECTIONS} caught within {TARGET_SAMPLES} samples"
            f" (delays {delays})" + (f"; not caught in time: {', '.join(missed)}" if missed else "")
        )
    for depth in REPLAY_TARGET_DEPTHS:
        on_reduced = [i for i in report.reduced_day_injections if abs(i.depth - depth) < 1e-9]
        if on_reduced:
            lines.append(
                f"  for the record, {depth:.0%} drops on reduced days (at {', '.join(f'{h}:00' for h in REPLAY_REDUCED_DAY_HOURS)}"
                f" local, forecast lower by design): {sum(i.caught for i in on_reduced)}/{len(on_reduced)} caught within"
                f" {TARGET_SAMPLES} samples, {sum(i.delay_samples is not None for i in on_reduced)} in the 4 h"
            )
    misses = report.misses
    lines.append("targets: " + ("MET" if not misses else "NOT MET: " + "; ".join(misses)))
    return "\n".join(lines)
