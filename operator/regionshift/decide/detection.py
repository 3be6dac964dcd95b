"""The detection policy: is a region failing, and if so, may it be evacuated?

Every operator of a failover domain reads the same global signal and must reach the same
verdict on its own, so the decision is a pure function of plain data: recent samples per
region (actual and expected), the policy from the RegionFailover spec, the last rollout in
each region, the warm capacity of the saviors, and the time. No clock, no cluster, no
Prometheus in here; the handler gathers those and writes the verdicts to status.

A region is **Unhealthy** when ``actual / expected`` stays under ``ratioThreshold`` for
``consecutiveSamples`` samples in a row, counting only samples whose expected value is at
least ``minimumExpected`` (the expected value is the forecast times the share of its own
traffic the region currently serves). Guards hold an evacuation back, each named in the
verdict so status says why:

* ``GlobalDrop``: at least ``globalDropFraction`` of all regions, and at least two, are
  under the threshold together. A global problem follows the traffic.
* ``RecentRollout``: the region rolled out within ``rolloutGuardSeconds`` before its drop
  began. A bad deploy follows the traffic too.
* ``SaviorsNotWarm``: a savior (another region not dropping itself) reports less warm
  capacity than it needs. Each operator sees only its own cluster's capacity, so the
  handler passes what it knows; saviors it knows nothing about are not checked.

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
    "Guard",
    "RegionVerdict",
    "Sample",
    "WarmCapacity",
    "evaluate",
]


class Guard(str, enum.Enum):
    """Why a region that looks unhealthy is not (or cannot be) evacuated."""

    GLOBAL_DROP = "GlobalDrop"
    RECENT_ROLLOUT = "RecentRollout"
    SAVIORS_NOT_WARM = "SaviorsNotWarm"
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
    """First sample of the current run under the threshold, when a drop is under way."""
    unhealthy_since: datetime | None = None
    """When the verdict turned Unhealthy (None unless Unhealthy)."""
    held_back_by: Guard | None = None
    """The guard that decided the verdict (HeldBack or Unknown), None otherwise."""
    guards: tuple[Guard, ...] = field(default=())
    """Every guard that holds, the deciding one first."""

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
        )


def _rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 text of a timezone-aware time, with a Z for UTC."""
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


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
    """What the samples of one region say, before any cross-region guard."""

    data_guard: Guard | None
    message: str
    latest: _Point | None = None
    run: tuple[_Point, ...] = ()
    """Trailing judged samples under the threshold, oldest first."""

    @property
    def dropping(self) -> bool:
        return self.data_guard is None and bool(self.run)


def _observe(
    *, samples: Sequence[Sample], share: float, policy: DetectionPolicy, now: datetime
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
    latest = points[-1]
    age = (now - latest.at).total_seconds()
    if age > policy.stale_after_seconds:
        return _Observation(
            data_guard=Guard.STALE_DATA,
            message=f"latest sample is {age:.0f} s old (staleAfterSeconds {policy.stale_after_seconds})",
            latest=latest,
        )
    if latest.expected < policy.minimum_expected:
        return _Observation(
            data_guard=Guard.LOW_EXPECTED,
            message=f"expected {latest.expected:.3g} (forecast × share {share:g}) is under"
            f" minimumExpected {policy.minimum_expected:g}: not judged",
            latest=latest,
        )
    run: list[_Point] = []
    for point in reversed(points):
        if point.expected < policy.minimum_expected:
            continue
        if point.ratio >= policy.ratio_threshold:
            break
        run.append(point)
    run.reverse()
    return _Observation(data_guard=None, message="", latest=latest, run=tuple(run))


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
) -> dict[str, RegionVerdict]:
    """Judge every region of a failover domain at ``now``.

    ``samples`` holds, for every region of the domain, its recent samples (at least
    ``consecutiveSamples`` of them, any order). ``shares`` is the share of its own traffic
    each region serves (default 1.0). ``last_rollouts`` is the latest rollout per region;
    ``capacity`` the warm capacity of the saviors this caller knows about. ``previous`` is
    the last verdict per region, so a drop longer than the sample window keeps its start
    and an Unhealthy verdict keeps the time it turned.
    """
    shares = shares or {}
    last_rollouts = last_rollouts or {}
    capacity = capacity or {}
    previous = previous or {}
    for region, share in shares.items():
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share of {region} must lie in 0..1, got {share}")

    observations = {
        region: _observe(samples=region_samples, share=shares.get(region, 1.0), policy=policy, now=now)
        for region, region_samples in samples.items()
    }
    dropping = sorted(r for r, o in observations.items() if o.dropping)
    global_drop = len(dropping) >= 2 and len(dropping) >= policy.global_drop_fraction * len(observations)
    return {
        region: _judge(
            region=region,
            obs=obs,
            policy=policy,
            dropping=dropping,
            regions=len(observations),
            global_drop=global_drop,
            last_rollout=last_rollouts.get(region),
            capacity=capacity,
            before=previous.get(region),
        )
        for region, obs in observations.items()
    }


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
    base = RegionVerdict(
        region=region,
        verdict=Verdict.HEALTHY,
        message="",
        actual=latest.actual,
        expected=latest.expected,
        ratio=latest.ratio if math.isfinite(latest.ratio) else None,
        sampled_at=latest.at,
    )
    if len(obs.run) < policy.consecutive_samples:
        under = f", {len(obs.run)} of {policy.consecutive_samples} samples under it" if obs.run else ""
        return replace(
            base,
            message=f"actual is {_percent(latest.ratio)} of expected"
            f" (threshold {_percent(policy.ratio_threshold)}{under})",
        )

    in_drop = before is not None and before.verdict in (Verdict.UNHEALTHY, Verdict.HELD_BACK)
    drop_started = obs.run[0].at
    if in_drop and before is not None and before.drop_started_at is not None:
        drop_started = min(drop_started, before.drop_started_at)

    guards: list[Guard] = []
    reasons: list[str] = []
    if global_drop:
        guards.append(Guard.GLOBAL_DROP)
        reasons.append(
            f"{len(dropping)} of {regions} regions are under the threshold together ({', '.join(dropping)})"
        )
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

    drop = (
        f"actual is {_percent(latest.ratio)} of expected, under {_percent(policy.ratio_threshold)}"
        f" for {len(obs.run)} samples since {_rfc3339(drop_started)}"
    )
    if guards:
        return replace(
            base,
            verdict=Verdict.HELD_BACK,
            message=f"{drop}; held back: {'; '.join(reasons)}",
            drop_started_at=drop_started,
            held_back_by=guards[0],
            guards=tuple(guards),
        )
    if before is not None and before.verdict == Verdict.UNHEALTHY and before.unhealthy_since is not None:
        since = before.unhealthy_since
    elif in_drop:
        since = latest.at
    else:
        since = obs.run[policy.consecutive_samples - 1].at
    return replace(
        base, verdict=Verdict.UNHEALTHY, message=drop, drop_started_at=drop_started, unhealthy_since=since
    )
