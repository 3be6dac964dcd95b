"""Synthetic business-signal history (SPS-like) with realistic noise and injected faults.

Detection can only be tuned, and its false-alarm rate only measured, against weeks of
history with the awkward parts of real traffic in it. Real SPS is not a clean sine: it
has a daily shape in each region's local time (a trough before dawn, a lunch bump, an
evening peak), a weekly shape (weekends busier and later), days that run 15 % above or
below the day before for no reason anyone can name (the new level takes over overnight,
around the trough), holidays shaped like weekends, slow growth, minute-to-minute jitter,
counting noise that is relatively larger when traffic is low and over-dispersed beyond
Poisson (negative-binomial: a gamma-Poisson mixture, variance ``overdispersion`` times the
mean), and bursts: now and then, for half a minute or so, a region's rate jumps (a retry
storm, a popular release) or sags a little, on its own. This module
generates such history, deterministically from a seed, and injects the faults the
operator must tell apart: a regional drop (evacuate), a global drop and a drop right
after a rollout (hold back), and a gap in the data (never act).

A sample at time ``t`` is the mean rate over the step that ends at ``t``, the way a
Prometheus ``rate(...[step])`` evaluated at ``t`` looks back. A fault over
``(start, start + duration]`` therefore affects the samples whose timestamps fall in that
interval: the first affected sample is the one a step after ``start``.

Used by the backtest, the benchmarks and the tests; never by the operator at run time.
"""

from __future__ import annotations

import enum
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

__all__ = [
    "DAY_SECONDS",
    "DEFAULT_REGIONS",
    "WEEK_SECONDS",
    "Fault",
    "FaultKind",
    "RegionProfile",
    "SyntheticConfig",
    "SyntheticHistory",
    "generate_history",
]

DAY_SECONDS = 86_400
WEEK_SECONDS = 7 * DAY_SECONDS
DAY_BOUNDARY_HOURS = 5.0
"""Local hour at which one viewing day's level hands over to the next (the trough)."""


class FaultKind(str, enum.Enum):
    """What goes wrong, and therefore what detection should conclude."""

    REGIONAL_DROP = "RegionalDrop"
    """One region loses part of its signal: detection should call it Unhealthy."""
    GLOBAL_DROP = "GlobalDrop"
    """Every region loses part of its signal together: hold back (it follows the traffic)."""
    ROLLOUT_DROP = "RolloutDrop"
    """One region drops right after a rollout there: hold back (a bad deploy follows too)."""
    GAP = "Gap"
    """The region's samples are missing: never act."""


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One injected fault over ``(start, start + duration_seconds]``."""

    kind: FaultKind
    start: float
    """Unix seconds the fault begins."""
    duration_seconds: float
    regions: tuple[str, ...] = ()
    """Regions hit; empty means every region (the natural choice for a global drop)."""
    depth: float = 0.0
    """Share of the signal lost while the fault lasts, 0..1 (unused for a gap)."""
    rollout_lead_seconds: float = 120.0
    """For a rollout drop: the rollout happens this long before the drop begins."""

    def __post_init__(self) -> None:
        if self.duration_seconds <= 0:
            raise ValueError(f"fault duration must be positive, got {self.duration_seconds}")
        if not 0.0 <= self.depth <= 1.0:
            raise ValueError(f"fault depth must lie in 0..1, got {self.depth}")
        if self.kind is FaultKind.ROLLOUT_DROP and len(self.regions) != 1:
            raise ValueError("a rollout drop hits exactly one region")

    @property
    def end(self) -> float:
        """Unix seconds the fault ends."""
        return self.start + self.duration_seconds

    @property
    def rollout_at(self) -> float | None:
        """When the rollout that precedes a rollout drop happened; None for other kinds."""
        if self.kind is FaultKind.ROLLOUT_DROP:
            return self.start - self.rollout_lead_seconds
        return None

    def hits(self, region: str) -> bool:
        """Whether this fault affects ``region``."""
        return not self.regions or region in self.regions


@dataclass(frozen=True, kw_only=True)
class RegionProfile:
    """A region's size and time zone."""

    name: str
    utc_offset_hours: float
    """Local time = UTC + this; the daily and weekly shape follow local time."""
    peak: float
    """The signal at a typical weekday's evening peak, in signal units (e.g. stream starts/s)."""


DEFAULT_REGIONS: tuple[RegionProfile, ...] = (
    RegionProfile(name="us-east", utc_offset_hours=-5.0, peak=220.0),
    RegionProfile(name="us-west", utc_offset_hours=-8.0, peak=120.0),
    RegionProfile(name="eu-west", utc_offset_hours=0.0, peak=160.0),
    RegionProfile(name="ap-south", utc_offset_hours=5.5, peak=60.0),
)


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """The noise and shape knobs; the defaults are what the backtest replays."""

    level_change_sd: float = 0.15
    """Standard deviation of the day-to-day change of the daily level (0.15 = about 15 %)."""
    level_persistence: float = 0.5
    """AR(1) coefficient of the log daily level: how much of a good day carries over."""
    growth_per_year: float = 0.25
    """Slow organic growth, as a yearly rate (0.25 = +25 % a year)."""
    jitter_sd: float = 0.02
    """Minute-scale multiplicative jitter beyond counting noise (AR(1) in log space)."""
    jitter_correlation_seconds: float = 600.0
    """How long the jitter takes to forget itself."""
    weekend_level: float = 1.12
    """Saturday and Sunday level relative to a weekday."""
    holiday_level: float = 1.25
    """A holiday is shaped like a weekend day and runs this much above a weekday."""
    counting_noise: bool = True
    """Draw each sample as counts over the step (turn off for noise-free tests)."""
    overdispersion: float = 1.5
    """Variance of the counts over their mean: 1 is Poisson; more draws negative-binomial
    (gamma-Poisson) counts, as real traffic's are."""
    bursts_per_day: float = 8.0
    """Bursts per region and day, at random instants (a Poisson process)."""
    burst_seconds: float = 30.0
    """Mean length of a burst (exponentially distributed)."""
    burst_size: float = 0.3
    """Scale of an upward burst: its rate is multiplied by ``exp(burst_size·|N(0,1)|)``
    (median +22 %, one in twenty above +80 %)."""
    dip_share: float = 0.25
    """Share of the bursts that are dips instead."""
    dip_size: float = 0.1
    """Scale of a dip: its rate is multiplied by ``exp(-dip_size·|N(0,1)|)`` (median -7 %,
    one in twenty below -18 %): a sag, not an outage."""


@dataclass(frozen=True, kw_only=True)
class SyntheticHistory:
    """Generated history: regular timestamps and one series per region."""

    timestamps: np.ndarray
    """Unix seconds, float64, ascending, one step apart."""
    step_seconds: int
    values: Mapping[str, np.ndarray]
    """The observed signal per region: noise and faults in, NaN where a gap is."""
    rates: Mapping[str, np.ndarray]
    """The underlying rate per region without counting noise, jitter or faults: the truth
    a perfect forecast would hit."""
    rollouts: Mapping[str, tuple[float, ...]]
    """Unix seconds of every rollout per region (those that precede rollout drops)."""
    faults: tuple[Fault, ...]
    holidays: tuple[int, ...] = field(default=())
    """Day indexes (from the first local day of the history) that are holidays."""

    def last_rollout(self, *, region: str, at: float) -> float | None:
        """The most recent rollout in ``region`` at or before ``at``, or None."""
        past = [t for t in self.rollouts.get(region, ()) if t <= at]
        return max(past) if past else None


def _von_mises(hours: np.ndarray, *, centre: float, width_hours: float) -> np.ndarray:
    """A periodic bump over a 24-hour day, 1 at ``centre``, about ``width_hours`` wide."""
    kappa = (24.0 / (2.0 * math.pi * width_hours)) ** 2
    angle = 2.0 * math.pi * (hours - centre) / 24.0
    return np.exp(kappa * (np.cos(angle) - 1.0))


def _weekday_shape(hours: np.ndarray) -> np.ndarray:
    """A weekday in local time: trough before dawn, a lunch bump, an evening peak near 1."""
    return (
        0.16
        + 0.80 * _von_mises(hours, centre=20.8, width_hours=2.6)
        + 0.22 * _von_mises(hours, centre=13.0, width_hours=2.0)
        + 0.06 * _von_mises(hours, centre=7.5, width_hours=1.0)
    )


def _weekend_shape(hours: np.ndarray) -> np.ndarray:
    """A weekend day in local time: later morning, a busy afternoon, a broader evening."""
    return (
        0.17
        + 0.70 * _von_mises(hours, centre=21.2, width_hours=3.0)
        + 0.42 * _von_mises(hours, centre=15.0, width_hours=3.2)
    )


def _blend_days(per_day: np.ndarray, local_days: np.ndarray, *, ramp_days: float) -> np.ndarray:
    """Piecewise-constant daily values, blended smoothly across local midnight.

    ``per_day[d]`` holds for local day ``d``; within ``ramp_days`` of a midnight the value
    moves smoothly (smoothstep) to the neighbour's, meeting half-way at the boundary, so
    neither the shape nor the level jumps from one minute to the next.
    """
    day = np.floor(local_days).astype(np.int64)
    frac = local_days - day
    last = len(per_day) - 1
    current = per_day[np.clip(day, 0, last)]
    previous = per_day[np.clip(day - 1, 0, last)]
    following = per_day[np.clip(day + 1, 0, last)]

    def weight(distance: np.ndarray) -> np.ndarray:
        x = np.clip(distance / ramp_days, 0.0, 1.0)
        return 0.5 * (1.0 - x * x * (3.0 - 2.0 * x))

    return current + (previous - current) * weight(frac) + (following - current) * weight(1.0 - frac)


def _faulted(
    *, region: str, timestamps: np.ndarray, faults: Sequence[Fault]
) -> tuple[np.ndarray, np.ndarray]:
    """The multiplicative fault factor and the gap mask for one region."""
    factor = np.ones_like(timestamps)
    gap = np.zeros(timestamps.shape, dtype=bool)
    for fault in faults:
        if not fault.hits(region):
            continue
        inside = (timestamps > fault.start) & (timestamps <= fault.end)
        if fault.kind is FaultKind.GAP:
            gap |= inside
        else:
            factor[inside] *= 1.0 - fault.depth
    return factor, gap


def _bursts(
    *, rng: np.random.Generator, timestamps: np.ndarray, step_seconds: int, config: SyntheticConfig
) -> np.ndarray:
    """The log-multiplier of the rate from bursts, per sample (0 outside every burst).

    Each burst covers ``(begin, begin + length]``; a sample takes the share of its step the
    burst overlaps, so a burst shorter than a step is diluted, as a rate over the step would be.
    """
    out = np.zeros(timestamps.shape)
    if config.bursts_per_day <= 0 or timestamps.size == 0:
        return out
    first, last = float(timestamps[0]) - step_seconds, float(timestamps[-1])
    count = int(rng.poisson(config.bursts_per_day * (last - first) / DAY_SECONDS))
    begins = rng.uniform(first, last, count)
    lengths = rng.exponential(config.burst_seconds, count)
    dips = rng.uniform(size=count) < config.dip_share
    sizes = np.abs(rng.normal(size=count)) * np.where(dips, -config.dip_size, config.burst_size)
    for begin, length, size in zip(begins, lengths, sizes):
        lo = int(np.searchsorted(timestamps, begin, side="right"))
        hi = int(np.searchsorted(timestamps, begin + length + step_seconds, side="right"))
        ends = timestamps[lo:hi]
        overlap = np.minimum(ends, begin + length) - np.maximum(ends - step_seconds, begin)
        out[lo:hi] += size * np.clip(overlap / step_seconds, 0.0, 1.0)
    return out


def _region_rng(*, seed: int, region: str) -> np.random.Generator:
    """A generator per region, independent of which other regions are generated."""
    return np.random.default_rng([seed, zlib.crc32(region.encode())])


def generate_history(
    *,
    start: float,
    days: float,
    seed: int,
    step_seconds: int = 60,
    regions: Sequence[RegionProfile] = DEFAULT_REGIONS,
    faults: Sequence[Fault] = (),
    holidays: Sequence[int] = (),
    config: SyntheticConfig = SyntheticConfig(),
) -> SyntheticHistory:
    """Generate ``days`` of history from ``start`` (unix seconds), one sample per step.

    ``holidays`` are day indexes counted in each region's local calendar from the local
    day that contains ``start``. The same arguments always give the same history.
    """
    if days <= 0 or step_seconds <= 0:
        raise ValueError("days and step_seconds must be positive")
    names = [r.name for r in regions]
    if len(set(names)) != len(names):
        raise ValueError(f"region names must be unique, got {names}")
    for fault in faults:
        unknown = set(fault.regions) - set(names)
        if unknown:
            raise ValueError(f"fault {fault.kind.value} names unknown regions {sorted(unknown)}")

    count = int(round(days * DAY_SECONDS / step_seconds))
    timestamps = start + step_seconds * np.arange(1, count + 1, dtype=np.float64)
    midpoints = timestamps - step_seconds / 2.0
    values: dict[str, np.ndarray] = {}
    rates: dict[str, np.ndarray] = {}
    for region in regions:
        rng = _region_rng(seed=seed, region=region.name)
        local_days = (midpoints + region.utc_offset_hours * 3600.0) / DAY_SECONDS
        first_day = math.floor((start + region.utc_offset_hours * 3600.0) / DAY_SECONDS)
        day_index = local_days - first_day
        n_days = int(math.ceil(day_index[-1])) + 2
        hours = (local_days % 1.0) * 24.0

        # Day types: the epoch (day 0) was a Thursday, so weekday = (day + 3) % 7, Monday 0.
        weekday = (np.arange(n_days) + first_day + 3) % 7
        weekendish = (weekday >= 5).astype(np.float64)
        level = np.where(weekday >= 5, config.weekend_level, 1.0)
        for holiday in holidays:
            if 0 <= holiday < n_days:
                weekendish[holiday] = 1.0
                level[holiday] = config.holiday_level

        # Day-to-day level: AR(1) in log space, scaled so a day-to-day change has about
        # level_change_sd standard deviation.
        phi = config.level_persistence
        innovation_sd = config.level_change_sd / math.sqrt(2.0 / (1.0 + phi))
        log_level = np.empty(n_days)
        log_level[0] = rng.normal(0.0, innovation_sd / math.sqrt(1.0 - phi * phi))
        for d in range(1, n_days):
            log_level[d] = phi * log_level[d - 1] + rng.normal(0.0, innovation_sd)

        mix = _blend_days(weekendish, day_index, ramp_days=2.0 / 24.0)
        shape = (1.0 - mix) * _weekday_shape(hours) + mix * _weekend_shape(hours)
        # A viewing day runs from one pre-dawn trough to the next: its level takes over
        # during the night (23:00 to 11:00 around 05:00), not across the evening peak.
        day_level = _blend_days(
            level * np.exp(log_level), day_index - DAY_BOUNDARY_HOURS / 24.0, ramp_days=0.25
        )
        growth = np.exp(math.log1p(config.growth_per_year) * (timestamps - start) / (365.0 * DAY_SECONDS))
        rate = region.peak * shape * day_level * growth

        # Jitter: AR(1) in log space with the given correlation time.
        rho = math.exp(-step_seconds / config.jitter_correlation_seconds)
        shocks = rng.normal(0.0, config.jitter_sd * math.sqrt(1.0 - rho * rho), count)
        shocks[0] = rng.normal(0.0, config.jitter_sd)
        jitter = lfilter([1.0], [1.0, -rho], shocks)

        factor, gap = _faulted(region=region.name, timestamps=timestamps, faults=faults)
        bursts = _bursts(rng=rng, timestamps=timestamps, step_seconds=step_seconds, config=config)
        observed_rate = rate * np.exp(jitter + bursts) * factor
        if config.counting_noise:
            mean = observed_rate * step_seconds
            if config.overdispersion > 1.0:
                # Negative-binomial with mean `mean` and variance overdispersion × mean.
                shape = np.maximum(mean, 1e-9) / (config.overdispersion - 1.0)
                counts = rng.negative_binomial(shape, 1.0 / config.overdispersion)
            else:
                counts = rng.poisson(mean)
            observed = counts / float(step_seconds)
        else:
            observed = observed_rate
        observed = observed.astype(np.float64)
        observed[gap] = np.nan
        values[region.name] = observed
        rates[region.name] = rate

    rollouts: dict[str, list[float]] = {name: [] for name in names}
    for fault in faults:
        if fault.rollout_at is not None:
            rollouts[fault.regions[0]].append(fault.rollout_at)
    return SyntheticHistory(
        timestamps=timestamps,
        step_seconds=step_seconds,
        values=values,
        rates=rates,
        rollouts={name: tuple(sorted(times)) for name, times in rollouts.items()},
        faults=tuple(faults),
        holidays=tuple(holidays),
    )
