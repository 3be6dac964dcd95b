"""The detection policy: is a region failing, and if so, may it be evacuated?

Every operator of a failover domain reads the same global signal and must reach the same
verdict on its own, so the decision is a pure function of plain data: recent samples per
region (actual and expected), the policy from the RegionFailover spec, the last rollout in
each region, the warm capacity of the saviors, and the time. No clock, no cluster, no
Prometheus in here; the handler gathers those and writes the verdicts to status.

**A drop, beyond the counting noise.** A sample's expected value is the forecast times the
share of its own traffic the region serves; samples whose expected value is under
``minimumExpected`` are skipped. Behind each sample lie ``n = expected × step ×
countsPerUnit`` counted events (stream starts), whose noise has a variance of
``overdispersion × n`` (Poisson when 1, negative-binomial beyond), so the ratio of a
sample whose true ratio is ``θ = ratioThreshold`` scatters by ``sqrt(overdispersion·θ/n)``.
With ``z = noiseSigmas``:

* the *run* is the trailing samples each under ``θ + z·sqrt(overdispersion·θ/n)``: not
  significantly above the threshold (for a busy region, simply under it);
* the run is a *drop* when, for some trailing part of it of ``k`` samples with
  ``consecutiveSamples ≤ k ≤ evidenceWindowSamples``, the pooled ratio ``Σactual/Σexpected``
  lies under ``θ − z·sqrt(overdispersion·θ/Σn)``: significantly under the threshold. In
  this sum each sample counts at no less than ``θ/2`` of its expected value, so a single
  glitch (a failed scrape reading 0) among noisy healthy samples is never a drop.

A busy region (thousands of events a sample) is judged exactly as "under the threshold for
``consecutiveSamples`` samples in a row"; a quiet one (a few dozen events a sample, at
night, at 5-second steps) needs more samples, and :func:`samples_needed` says how many:
``k ≥ z²·overdispersion·θ / (n·(θ − (1 − depth))²)`` for a drop of ``depth``. Each verdict
carries that figure for a 40 % drop (``evidence_samples``). ``countsPerUnit: 0`` turns the
noise allowance off.

**Evidence against the domain.** A shock that hits every region alike (weather across a
continent, a national event, the first working week of the year, a forecast wrong for
everyone) is not a regional outage. Over the same ``k`` samples, a region's share of the
domain's total is set against its expected share, as odds (the region against the rest
of the domain, pooled over the other regions with samples at the same instants):
``shareRatio = (Σactual/Σexpected) / (Σactual_rest/Σexpected_rest)``, which is also the
region's own ratio over the rest's. Odds, rather than the plain share, keep a region that
carries most of the domain's traffic from diluting its own drop. The drop is *regional*
when ``shareRatio`` also lies under ``shareRatioThreshold`` beyond the noise of both
sides. How it combines with the other evidence, in order:

1. no drop: **Healthy**;
2. ``GlobalDrop``: at least ``globalDropFraction`` of all regions, and at least two, have
   their latest ``consecutiveSamples`` samples pooled under the threshold: **HeldBack**
   (a global problem follows the traffic), whatever the share says;
3. ``DomainWide``: the other regions have samples and the region keeps its share (the
   drop is not regional): **HeldBack**. This is GlobalDrop's finer twin: it holds back a
   shock that every region shares even when fewer than ``globalDropFraction`` of them
   cross the threshold (the others are shaken but stay just above it);
4. a regional drop, or a drop with no other region to compare with: **Unhealthy**, unless
   ``RecentRollout`` (the region rolled out within ``rolloutGuardSeconds`` before its drop
   began: a bad deploy follows the traffic too) or ``SaviorsNotWarm`` (a savior, another
   region not dropping itself, reports less warm capacity than it needs; each operator
   sees only its own cluster's capacity, so saviors it knows nothing about are not
   checked) holds it back;
5. a drop that is not shown to be regional (cases 2, 3, or 4 without another region to
   compare with) and that has lasted longer than ``noLongerFitsAfterSeconds`` since it
   began becomes **Unknown** (``ForecastNoLongerFits``: "the forecast no longer fits"),
   not Unhealthy or HeldBack for days: the domain moved, and the forecast must learn the
   new level. :func:`refit_excludes_since` then accepts the drop's samples for the refit
   again. A regional drop never turns Unknown this way: an outage stays Unhealthy (and its
   samples stay out of the refit) however long it lasts. A region already evacuated is
   judged by the failback probe of :mod:`regionshift.decide.evacuation`, not by this: its
   share is under 1, its expected value is scaled down (``LowExpected`` when 0), and no
   bound applies to it.

**The same moments everywhere.** Runs are due at the moments of the wall clock that are
multiples of ``signal.stepSeconds`` plus a tenth of the step (at most 1 s)
(:func:`next_detection_at`), not a step after the last run ended. So the operators of every
region, each on its own clock (kept by NTP), ask the shared Prometheus at nearly the same
moment, see the same samples and reach the same verdict together: a savior decides when
the failing region does, not up to a step later. Each run judges the samples up to the
moment it runs (judging the whole multiple instead lost up to one scrape of freshness:
1 s more to detect in the evacuation benchmark).

Missing data never evacuates: no usable samples (``NoData``), a latest sample older than
``staleAfterSeconds`` (``StaleData``) or an expected value under the floor
(``LowExpected``, e.g. an evacuated region whose share is zero) give the verdict
**Unknown** with that guard.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from regionshift.api.models import DetectionPolicy, RegionSignalStatus, Verdict

__all__ = [
    "EVIDENCE_DEPTH",
    "Guard",
    "RegionVerdict",
    "Sample",
    "WarmCapacity",
    "evaluate",
    "next_detection_at",
    "refit_excludes_since",
    "samples_needed",
]

EVIDENCE_DEPTH = 0.4
"""The drop depth ``evidence_samples`` is reported for (the backtest's target)."""
TICK_DELAY_FRACTION = 0.1
TICK_DELAY_MAX_SECONDS = 1.0
"""A run is due this long after a multiple of the step (a tenth of the step, at most 1 s):
the latest sample has reached Prometheus, and the regions' clocks agree to within it."""


def next_detection_at(*, now: float, step_seconds: float) -> float:
    """When the next detection run is due, asked at ``now`` as a run ends (epoch seconds).

    The first moment after ``now`` that lies the tick's delay past a multiple of the step. A
    run that took longer than a step skips the moments it missed rather than catching up.
    """
    step = max(float(step_seconds), 1e-3)
    delay = min(step * TICK_DELAY_FRACTION, TICK_DELAY_MAX_SECONDS)
    # A run woken exactly when due must be given the next moment, not the same one again:
    # (due - delay) / step may come out a hair under a whole number.
    return (math.floor((now - delay) / step + 1e-9) + 1) * step + delay


class Guard(str, enum.Enum):
    """Why a region that looks unhealthy is not (or cannot be) evacuated."""

    GLOBAL_DROP = "GlobalDrop"
    DOMAIN_WIDE = "DomainWide"
    RECENT_ROLLOUT = "RecentRollout"
    SAVIORS_NOT_WARM = "SaviorsNotWarm"
    FORECAST_NO_LONGER_FITS = "ForecastNoLongerFits"
    NO_DATA = "NoData"
    STALE_DATA = "StaleData"
    LOW_EXPECTED = "LowExpected"


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One sample of a region's signal with the forecast for the same instant."""

    at: datetime
    """Timezone-aware time the sample stands for."""
    actual: float | None
    """The signal; None or NaN when the sample is missing."""
    expected: float | None
    """The forecast for ``at`` at full share; None or NaN when there is no forecast."""


@dataclass(frozen=True, kw_only=True)
class WarmCapacity:
    """A savior region's warm dark capacity against what absorbing a peer needs."""

    warm: float
    """Warm dark replicas (running, ready to ungate), summed over its dark clusters."""
    need: float
    """Dark replicas the sizing model says it needs."""

    @property
    def sufficient(self) -> bool:
        """Whether the warm capacity covers the need."""
        return self.warm >= self.need


@dataclass(frozen=True, kw_only=True)
class RegionVerdict:
    """What detection concluded about one region, and why."""

    region: str
    verdict: Verdict
    message: str
    """One sentence for status and Events."""
    actual: float | None = None
    """Latest usable sample."""
    expected: float | None = None
    """Expected value for that sample: forecast × share."""
    ratio: float | None = None
    """actual / expected of that sample."""
    sampled_at: datetime | None = None
    """Time of that sample."""
    drop_started_at: datetime | None = None
    """First sample of the current drop while one lasts (kept while it is HeldBack, Unhealthy,
    or Unknown because the forecast no longer fits, so the bound counts from it)."""
    unhealthy_since: datetime | None = None
    """When the verdict turned Unhealthy (None unless Unhealthy)."""
    held_back_by: Guard | None = None
    """The guard that decided the verdict (HeldBack or Unknown), None otherwise."""
    guards: tuple[Guard, ...] = field(default=())
    """Every guard that holds, the deciding one first."""
    share_ratio: float | None = None
    """The region's share of the domain's total over its expected share (odds against the
    rest) over the samples judged; None without another region to compare with."""
    evidence_samples: int | None = None
    """Samples a drop of :data:`EVIDENCE_DEPTH` needs to be judged at the latest expected
    value; None when it cannot be shown within ``evidenceWindowSamples``."""
    regional: bool | None = None
    """For a drop: whether it is shown against the domain (None: no other region to compare)."""

    @property
    def refit_excludes_since(self) -> datetime | None:
        """From when this region's samples are kept out of the forecast's refit (see
        :func:`refit_excludes_since`)."""
        return refit_excludes_since(
            verdict=self.verdict, held_back_by=self.held_back_by, drop_started_at=self.drop_started_at
        )

    def to_status(self) -> RegionSignalStatus:
        """This verdict as the RegionFailover status reports it."""
        return RegionSignalStatus(
            name=self.region,
            actual=self.actual,
            expected=self.expected,
            ratio=self.ratio,
            verdict=self.verdict,
            unhealthy_since=_rfc3339(self.unhealthy_since),
            held_back_by=self.held_back_by.value if self.held_back_by else None,
            sampled_at=_rfc3339(self.sampled_at),
            share_ratio=self.share_ratio,
            evidence_samples=self.evidence_samples,
        )


def refit_excludes_since(
    *, verdict: Verdict | str, held_back_by: Guard | str | None, drop_started_at: datetime | None
) -> datetime | None:
    """From when a region's samples must be kept out of the forecast's refit; None: accept all.

    The forecast learns only what is normal. A drop under way (Unhealthy or HeldBack, from
    ``drop_started_at``) may be an outage, so its samples are kept out: an outage is never
    learnt as the new normal. Once the drop has outlasted ``noLongerFitsAfterSeconds`` with
    no evidence of a regional outage, the verdict is Unknown with ``ForecastNoLongerFits``:
    then every sample is accepted again, the drop's included, so the refit learns the new
    level and the deviation ends. Missing samples are never learnt anyway (they have no
    value), and a Healthy region's samples are all accepted.

    The forecast's history filter calls this with what status says of each region
    (``verdict``, ``heldBackBy``, ``dropStartedAt``): samples at or after the returned time
    are masked from the fit.
    """
    del held_back_by  # an Unknown verdict (ForecastNoLongerFits included) keeps nothing out
    if Verdict(verdict) in (Verdict.UNHEALTHY, Verdict.HELD_BACK):
        return drop_started_at
    return None


def _rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 text of a timezone-aware time, with a Z for UTC."""
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def _sd(policy: DetectionPolicy, ratio: float, counts: float) -> float:
    """Standard deviation of actual/expected over ``counts`` expected events at true ``ratio``."""
    if policy.counts_per_unit <= 0 or policy.noise_sigmas <= 0:
        return 0.0
    if counts <= 0:
        return math.inf
    return math.sqrt(policy.overdispersion * ratio / counts)


def samples_needed(
    *, expected: float, step_seconds: float, policy: DetectionPolicy, depth: float = EVIDENCE_DEPTH
) -> int | None:
    """Samples a drop of ``depth`` (0..1) needs to be judged at an expected value of ``expected``.

    The smallest ``k ≥ consecutiveSamples`` whose pooled counts put a ratio of ``1 - depth``
    ``noiseSigmas`` standard deviations under ``ratioThreshold``; None when the drop is not
    deeper than ``1 - ratioThreshold`` or needs more than ``evidenceWindowSamples``.

    A median, not a guarantee: at ``k`` the drop's *average* pooled ratio lands on the line, so
    a drop that needs exactly ``k`` is caught within ``k`` samples about half of the time
    (:func:`regionshift.local.backtest.chance_within` gives the chance; docs/detection.md).
    """
    theta = policy.ratio_threshold
    gap = theta - (1.0 - depth)
    if gap <= 0 or expected < policy.minimum_expected:
        return None
    counts = expected * step_seconds * policy.counts_per_unit
    if policy.counts_per_unit <= 0 or policy.noise_sigmas <= 0:
        k = policy.consecutive_samples
    elif counts <= 0:
        return None
    else:
        k = max(
            policy.consecutive_samples,
            math.ceil(policy.noise_sigmas**2 * policy.overdispersion * theta / (counts * gap * gap) - 1e-9),
        )
    window = max(policy.consecutive_samples, policy.evidence_window_samples)
    return k if k <= window else None


@dataclass(frozen=True, kw_only=True)
class _Point:
    """A usable sample: both values finite, expected scaled by the region's share."""

    at: datetime
    actual: float
    expected: float

    @property
    def ratio(self) -> float:
        return self.actual / self.expected if self.expected > 0 else math.inf


@dataclass(frozen=True, kw_only=True)
class _Observation:
    """What the samples of one region say, before any cross-region evidence."""

    data_guard: Guard | None
    message: str
    latest: _Point | None = None
    run: tuple[_Point, ...] = ()
    """Trailing judged samples not significantly above the threshold, oldest first."""
    drop_lengths: tuple[int, ...] = ()
    """Lengths ``k`` of the trailing parts of the run pooled significantly under the threshold."""
    step_seconds: float = 60.0
    recent_under: bool = False
    """Whether the latest ``consecutiveSamples`` samples of the run, pooled, lie under the threshold."""

    @property
    def dropping(self) -> bool:
        """Whether the region counts towards a global drop: its latest samples pooled under the threshold."""
        return self.data_guard is None and bool(self.run) and self.recent_under

    @property
    def drop(self) -> bool:
        """Whether the run is a drop beyond the counting noise."""
        return self.data_guard is None and bool(self.drop_lengths)


def _step(points: Sequence[_Point], step_seconds: float | None) -> float:
    """The sample step: given, or the median spacing of the samples (60 s for a lone one)."""
    if step_seconds is not None and step_seconds > 0:
        return float(step_seconds)
    gaps = sorted(
        (b.at - a.at).total_seconds() for a, b in zip(points, points[1:]) if b.at > a.at
    )
    return gaps[len(gaps) // 2] if gaps else 60.0


def _observe(
    *,
    samples: Sequence[Sample],
    share: float,
    policy: DetectionPolicy,
    now: datetime,
    step_seconds: float | None,
) -> _Observation:
    """Judge one region's samples on their own."""
    if not samples:
        return _Observation(data_guard=Guard.NO_DATA, message="no samples")
    ordered = sorted(samples, key=lambda s: s.at)
    points = [
        _Point(at=s.at, actual=s.actual, expected=s.expected * share)
        for s in ordered
        if s.actual is not None
        and s.expected is not None
        and math.isfinite(s.actual)
        and math.isfinite(s.expected)
    ]
    if not points:
        if all(s.actual is None or not math.isfinite(s.actual) for s in ordered):
            reason = f"none of the {len(ordered)} samples has a value"
        else:
            reason = "no forecast for the samples"
        return _Observation(data_guard=Guard.NO_DATA, message=reason)
    step = _step(points, step_seconds)
    latest = points[-1]
    age = (now - latest.at).total_seconds()
    if age > policy.stale_after_seconds:
        return _Observation(
            data_guard=Guard.STALE_DATA,
            message=f"latest sample is {age:.0f} s old (staleAfterSeconds {policy.stale_after_seconds})",
            latest=latest,
            step_seconds=step,
        )
    if latest.expected < policy.minimum_expected:
        return _Observation(
            data_guard=Guard.LOW_EXPECTED,
            message=f"expected {latest.expected:.3g} (forecast × share {share:g}) is under"
            f" minimumExpected {policy.minimum_expected:g}: not judged",
            latest=latest,
            step_seconds=step,
        )
    theta, z = policy.ratio_threshold, policy.noise_sigmas
    scale = step * policy.counts_per_unit
    window = max(policy.consecutive_samples, policy.evidence_window_samples)
    run: list[_Point] = []
    for point in reversed(points):
        if point.expected < policy.minimum_expected:
            continue
        if len(run) >= window:
            break
        if point.ratio >= theta + z * _sd(policy, theta, point.expected * scale):
            break
        run.append(point)
    run.reverse()
    lengths: list[int] = []
    actual = expected = 0.0
    for k, point in enumerate(reversed(run), start=1):
        actual += max(point.actual, _FLOOR * theta * point.expected)
        expected += point.expected
        if k >= policy.consecutive_samples and actual < (theta - z * _sd(policy, theta, expected * scale)) * expected:
            lengths.append(k)
    recent = run[-policy.consecutive_samples:]
    recent_under = bool(recent) and sum(p.actual for p in recent) < theta * sum(p.expected for p in recent)
    return _Observation(
        data_guard=None,
        message="",
        latest=latest,
        run=tuple(run),
        drop_lengths=tuple(lengths),
        step_seconds=step,
        recent_under=recent_under,
    )


@dataclass(frozen=True, kw_only=True)
class _Share:
    """The region's share of the domain against its expected share, over some samples."""

    ratio: float
    """(own actual / own expected) / (rest actual / rest expected)."""
    regional: bool
    """Whether it lies under shareRatioThreshold beyond the noise of both sides."""


def _share(
    *,
    points: Sequence[_Point],
    rest: Mapping[datetime, tuple[float, float]],
    policy: DetectionPolicy,
    step_seconds: float,
) -> _Share | None:
    """Share evidence over ``points``; None when the rest of the domain has no sample at one of them."""
    if not points or any(p.at not in rest for p in points):
        return None
    own_a = sum(p.actual for p in points)
    own_e = sum(p.expected for p in points)
    rest_a = sum(rest[p.at][0] for p in points)
    rest_e = sum(rest[p.at][1] for p in points)
    if own_e <= 0 or rest_e <= 0 or rest_a <= 0:
        return None
    ratio = (own_a / own_e) / (rest_a / rest_e)
    theta = policy.share_ratio_threshold
    scale = step_seconds * policy.counts_per_unit
    # Noise of the log of each side's pooled ratio, added: the region's at the threshold,
    # the rest's at its own level.
    own_sd = _sd(policy, theta, own_e * scale)
    rest_sd = _sd(policy, 1.0, rest_a * scale)
    spread = math.sqrt((own_sd / theta) ** 2 + rest_sd**2)
    return _Share(ratio=ratio, regional=ratio < theta * math.exp(-policy.noise_sigmas * spread))


_FLOOR = 0.5
"""In a pooled test each sample counts at no less than this share of the threshold, so one
glitch (a sample of 0 from a failed scrape) cannot make a drop of noisy healthy samples."""


def _percent(value: float) -> str:
    return f"{100.0 * value:.0f}%"


def evaluate(
    *,
    samples: Mapping[str, Sequence[Sample]],
    policy: DetectionPolicy,
    now: datetime,
    shares: Mapping[str, float] | None = None,
    last_rollouts: Mapping[str, datetime | None] | None = None,
    capacity: Mapping[str, WarmCapacity] | None = None,
    previous: Mapping[str, RegionVerdict] | None = None,
    step_seconds: float | None = None,
) -> dict[str, RegionVerdict]:
    """Judge every region of a failover domain at ``now``.

    ``samples`` holds, for every region of the domain, its recent samples (at least
    ``consecutiveSamples`` of them, up to ``evidenceWindowSamples`` for a quiet region, any
    order; regions sampled at the same instants, as one range query per region gives). ``shares``
    is the share of its own traffic each region serves (default 1.0). ``last_rollouts`` is
    the latest rollout per region; ``capacity`` the warm capacity of the saviors this caller
    knows about. ``previous`` is the last verdict per region, so a drop longer than the
    sample window keeps its start and an Unhealthy verdict keeps the time it turned.
    ``step_seconds`` is the sample step (default: the samples' median spacing).
    """
    shares = shares or {}
    last_rollouts = last_rollouts or {}
    capacity = capacity or {}
    previous = previous or {}
    for region, share in shares.items():
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share of {region} must lie in 0..1, got {share}")

    observations = {
        region: _observe(
            samples=region_samples,
            share=shares.get(region, 1.0),
            policy=policy,
            now=now,
            step_seconds=step_seconds,
        )
        for region, region_samples in samples.items()
    }
    dropping = sorted(r for r, o in observations.items() if o.dropping)
    global_drop = len(dropping) >= 2 and len(dropping) >= policy.global_drop_fraction * len(observations)
    # Every region's usable samples by instant, for the share evidence of the others.
    by_instant: dict[str, dict[datetime, tuple[float, float]]] = {}
    for region, region_samples in samples.items():
        share = shares.get(region, 1.0)
        by_instant[region] = {
            s.at: (float(s.actual), float(s.expected) * share)
            for s in region_samples
            if s.actual is not None
            and s.expected is not None
            and math.isfinite(s.actual)
            and math.isfinite(s.expected)
        }
    verdicts = {}
    for region, obs in observations.items():
        rest: dict[datetime, tuple[float, float]] = {}
        if obs.drop:
            for other, values in by_instant.items():
                if other == region or observations[other].data_guard is not None:
                    continue
                for at, (a, e) in values.items():
                    if e <= 0:
                        continue
                    sum_a, sum_e = rest.get(at, (0.0, 0.0))
                    rest[at] = (sum_a + a, sum_e + e)
        verdicts[region] = _judge(
            region=region,
            obs=obs,
            policy=policy,
            dropping=dropping,
            regions=len(observations),
            global_drop=global_drop,
            last_rollout=last_rollouts.get(region),
            capacity=capacity,
            before=previous.get(region),
            rest=rest,
            evacuated=shares.get(region, 1.0) < 1.0,
            now=now,
        )
    return verdicts


def _judge(
    *,
    region: str,
    obs: _Observation,
    policy: DetectionPolicy,
    dropping: list[str],
    regions: int,
    global_drop: bool,
    last_rollout: datetime | None,
    capacity: Mapping[str, WarmCapacity],
    before: RegionVerdict | None,
    rest: Mapping[datetime, tuple[float, float]],
    evacuated: bool,
    now: datetime,
) -> RegionVerdict:
    """The verdict on one region, given what every region's samples say."""
    latest = obs.latest
    if obs.data_guard is not None or latest is None:
        guard = obs.data_guard or Guard.NO_DATA
        judged = latest is not None and guard is Guard.LOW_EXPECTED
        return RegionVerdict(
            region=region,
            verdict=Verdict.UNKNOWN,
            message=f"{guard.value}: {obs.message}",
            actual=latest.actual if latest and judged else None,
            expected=latest.expected if latest and judged else None,
            sampled_at=latest.at if latest else None,
            held_back_by=guard,
            guards=(guard,),
        )
    needed = samples_needed(expected=latest.expected, step_seconds=obs.step_seconds, policy=policy)
    base = RegionVerdict(
        region=region,
        verdict=Verdict.HEALTHY,
        message="",
        actual=latest.actual,
        expected=latest.expected,
        ratio=latest.ratio if math.isfinite(latest.ratio) else None,
        sampled_at=latest.at,
        evidence_samples=needed,
    )
    if not obs.drop:
        under = ""
        if obs.run:
            pooled = sum(p.actual for p in obs.run) / sum(p.expected for p in obs.run)
            if len(obs.run) < policy.consecutive_samples:
                under = f", {len(obs.run)} of {policy.consecutive_samples} samples under it"
            else:
                under = f", {len(obs.run)} samples under it pooled {_percent(pooled)}: not beyond the counting noise"
        quiet = ""
        if needed is None:
            quiet = f"; a 40% drop cannot be shown within {policy.evidence_window_samples} samples at this expected value"
        elif needed > policy.consecutive_samples:
            quiet = f"; a 40% drop needs {needed} samples at this expected value"
        return replace(
            base,
            message=f"actual is {_percent(latest.ratio)} of expected"
            f" (threshold {_percent(policy.ratio_threshold)}{under}){quiet}",
        )

    # The share evidence over the trailing parts that are a drop: regional if any is.
    tail = list(obs.run)
    share: _Share | None = None
    length = obs.drop_lengths[0]
    for k in obs.drop_lengths:
        found = _share(points=tail[-k:], rest=rest, policy=policy, step_seconds=obs.step_seconds)
        if found is None:
            continue
        if share is None or found.regional:
            share, length = found, k
        if found.regional:
            break
    regional = None if share is None else share.regional
    pooled = sum(p.actual for p in tail[-length:]) / sum(p.expected for p in tail[-length:])

    in_drop = before is not None and (
        before.verdict in (Verdict.UNHEALTHY, Verdict.HELD_BACK)
        or (before.verdict is Verdict.UNKNOWN and before.held_back_by is Guard.FORECAST_NO_LONGER_FITS)
    )
    drop_started = obs.run[0].at
    if in_drop and before is not None and before.drop_started_at is not None:
        drop_started = min(drop_started, before.drop_started_at)
    base = replace(
        base,
        drop_started_at=drop_started,
        share_ratio=round(share.ratio, 4) if share is not None else None,
        regional=regional,
    )
    drop = (
        f"actual is {_percent(latest.ratio)} of expected, {_percent(pooled)} over the last {length} samples"
        f" (under {_percent(policy.ratio_threshold)} beyond the counting noise), since {_rfc3339(drop_started)}"
    )
    if share is None:
        evidence = "no other region to compare with"
    else:
        evidence = (
            f"its share of the domain is {_percent(share.ratio)} of expected"
            f" ({'under' if share.regional else 'not under'} {_percent(policy.share_ratio_threshold)})"
        )
    lasted = (now - drop_started).total_seconds()
    if not regional and not evacuated and lasted > policy.no_longer_fits_after_seconds:
        return replace(
            base,
            verdict=Verdict.UNKNOWN,
            message=f"{Guard.FORECAST_NO_LONGER_FITS.value}: the forecast no longer fits: {drop}, for {lasted:.0f} s"
            f" (noLongerFitsAfterSeconds {policy.no_longer_fits_after_seconds}) with no evidence of a regional"
            f" outage ({evidence}); the forecast learns the new level",
            held_back_by=Guard.FORECAST_NO_LONGER_FITS,
            guards=(Guard.FORECAST_NO_LONGER_FITS,),
        )

    guards: list[Guard] = []
    reasons: list[str] = []
    if global_drop:
        guards.append(Guard.GLOBAL_DROP)
        reasons.append(
            f"{len(dropping)} of {regions} regions are under the threshold together ({', '.join(dropping)})"
        )
    if regional is False:
        guards.append(Guard.DOMAIN_WIDE)
        reasons.append(f"the drop is not regional: {evidence}")
    window = timedelta(seconds=policy.rollout_guard_seconds)
    if last_rollout is not None and drop_started - window <= last_rollout <= drop_started:
        guards.append(Guard.RECENT_ROLLOUT)
        lead = (drop_started - last_rollout).total_seconds()
        reasons.append(f"{region} rolled out {lead:.0f} s before the drop began")
    cold = sorted(
        savior
        for savior, warm in capacity.items()
        if savior != region and savior not in dropping and not warm.sufficient
    )
    if cold:
        guards.append(Guard.SAVIORS_NOT_WARM)
        detail = ", ".join(f"{s} {capacity[s].warm:g}/{capacity[s].need:g} warm" for s in cold)
        reasons.append(f"saviors without enough warm capacity: {detail}")

    if guards:
        return replace(
            base,
            verdict=Verdict.HELD_BACK,
            message=f"{drop}; {evidence}; held back: {'; '.join(reasons)}",
            held_back_by=guards[0],
            guards=tuple(guards),
        )
    if before is not None and before.verdict == Verdict.UNHEALTHY and before.unhealthy_since is not None:
        since = before.unhealthy_since
    else:
        since = latest.at
    return replace(
        base, verdict=Verdict.UNHEALTHY, message=f"{drop}; {evidence}", unhealthy_since=since
    )
