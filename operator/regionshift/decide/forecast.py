"""The expected signal: a seasonal forecast of each region's business signal.

Detection asks one question many times a minute: what should this region's signal be
right now? The answer comes from the region's own history (two weeks by default), with
its daily and weekly shape, and a prediction interval so status can show how unusual a
sample is. Sizing asks the same forecast for the peak over the next horizon.

The model, and why
------------------
A robust seasonal decomposition in log space, re-levelled on the last hours::

    log(y + ε) = level of the day + time-of-week shape (+ half the day-of-week level)

* **Log space**, because traffic is multiplicative: a busy day scales the whole curve, and
  a drop of 40 % is the same 40 % at 3 a.m. and at the evening peak.
* **Level of the day**: a centred moving average over exactly one day, which cancels the
  daily cycle. Real traffic runs 10-20 % above or below the day before for whole days;
  taking that level out first keeps it from being mistaken for shape.
* **Time-of-week shape**: the mean, per 10-minute slot of the region's **local** week, of
  what is left; so the weekend keeps its own daily shape. The slots are laid in the time
  zone the region declares (:mod:`regionshift.decide.calendar`), so a daylight saving
  change moves nothing; in the hour a fall-back repeats, both hours share the slots.
  Slots are smoothed over ±20 minutes. A history coarser than 10 minutes is fitted on
  buckets of its own step (:func:`fit_bucket_seconds`), unsmoothed.
* **Calendar days** (public holidays of the region's country from the ``holidays``
  library, and its own special days) are their own kind of day: they shape neither the
  ordinary week, nor the level of the days around them, nor the re-levelling, and are
  forecast, at each time of day, as the lower of their weekday's shape and the rest day's
  (Sunday's) times ``calendar_day_level`` (0.7), at the level of the ordinary days before.
  Erring low is the safe side for detection: a holiday runs anywhere from half a Sunday
  to a busy Saturday, and an expected value too high would call a quiet holiday an
  outage. A weekday the history saw only as holidays borrows the time-of-day shape of
  the working days (the weekend's for a weekend day).
* **Reduced days** (declared by the region: working days with fewer users than usual, such
  as the working days between Christmas and the first Friday of January) are calendar days
  too, but people still go to work: each is forecast as an ordinary day of its weekday
  (its **own** weekday's shape, re-levelled on the last hours like any day, though not
  held under the last whole day's level: it is lowered already) times
  ``calendar_day_level``. Their history
  weighs ``REDUCED_DAY_WEIGHT`` (0.01) in the fit, so it shapes only the time-of-week slots
  and times of day no ordinary day of the history covers (the first working week of
  January, whose two weeks back are the holiday season, takes its working-day shape from
  the holiday season's working days rather than from the weekend).
* **Robust**: Tukey-biweight re-weighting (:mod:`regionshift.decide.robust`) down-weights outages
  and odd days in the history; NaN samples (gaps) simply carry no weight. Two weeks give
  each time-of-week slot only two observations, too few for a median, so when they
  disagree by more than ~28 % the one further from the time-of-day mean *of the same kind
  of day* (the working days, or the weekend) is dropped: last week's holiday does not make
  this week's Thursday afternoon expect a Sunday crowd, and a Wednesday night of the
  holiday season, busy like a Friday night, is the one that strays from the working days'
  nights, not the ordinary Wednesday night beside it (against the mean of all days, which
  the weekend's nights lift, it was the ordinary one that looked odd and was dropped).
  Growth is a weighted least-squares slope of the daily level
  within each slot of the week, so a weekly pattern cannot pass for a trend.
* **Day-of-week level**: half of it is forecast (``weekday_level_weight``), the rest left
  to re-levelling: two weeks cannot tell a weekly pattern from two busy Sundays.
* **Re-levelled**: the forecast is shifted by the median residual of the last
  ``level_window_seconds`` (3 h) of history at the native step, but never more than
  ``level_above_day`` (about 16 %) above the median residual of the last whole day: a
  morning that runs above a shape learnt in odd weeks (the first working week after the
  New Year holidays) does not lift the rest of the day. A median ignores outages
  shorter than half the window; the operator also holds the samples of a drop under way
  out of the refit (``held_out_from``) while detection may still call it an outage, and
  takes them once detection gives up on it (Unknown), so the forecast learns a new level
  instead of staying frozen at the old one.
* **Analogue day**: for a region that declares no calendar days, an unannounced holiday
  runs like a Sunday, not like the Thursday it falls on. The last 6 h are compared with
  each weekday's shape; another weekday's shape is used when it fits markedly better
  (``analogue_margin``). A region with a calendar takes its days from the calendar: the
  guess can mistake the first samples of a drop for a day of another kind.
* **Interval**: the robust spread (MAD) of the native-step residuals over the last 6 h
  around the level, as a normal interval in log space: one sample's noise plus how far
  the shape strayed lately, which is what a detection threshold is compared with.
* **Fast**: two weeks of one-minute history aggregate to 2,016 buckets; the fit is a few
  bincounts and convolutions, about 3-4 ms per series.

Rejected after trying them on the synthetic history (:mod:`regionshift.local.synthetic`): a
robust regression on Fourier terms of the day and week (errors up to ±18 % even on
noise-free history: the weekend's different shape needs far more terms than two weeks
support); statsmodels ``MSTL`` (drops the weekly period unless the history holds more
than two weekly cycles, and decomposes rather than forecasts); ``UnobservedComponents``
with two trigonometric seasonals (about 3 s per series even on 10-minute means, a
thousand times the cost); ``ExponentialSmoothing`` (one seasonal period only).
``tests/benchmarks/bench_forecast.py --alternatives N`` times the statsmodels ones. The
seasonal-naive forecast (same minute last week) is the benchmark's baseline.

History: fetch the signal's ``historyDays`` plus half a day. The first and last half day
of any history have no complete one-day window, so they do not shape the profile.

:class:`ForecastCache` keeps one fitted forecast per region and says when a refit is due.
It reads no clock: the caller passes ``now``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from regionshift.decide.calendar import UTC_CALENDAR, Calendar
from regionshift.decide.robust import mad, tukey_biweight_weights, weighted_slope_through_origin
from regionshift.errors import NoData

__all__ = [
    "Expectation",
    "ForecastCache",
    "ForecastConfig",
    "Prediction",
    "SeasonalForecast",
    "fit_bucket_seconds",
]

DAY_SECONDS = 86_400.0
WEEK_SECONDS = 7.0 * DAY_SECONDS
COVERAGE = 0.9
"""Share of its one-day window that must lie inside the history for a bucket to shape the
profile. The first and last half day fall short, so the shape next to the end of the
history comes from the same weeks on both sides: no seam where "this week" stops counting."""
GAP_COVERAGE = 0.5
"""Share of its one-day window that must hold data for a bucket to shape the profile."""
SLOT_DISAGREEMENT = 0.25
"""Log-space distance (about 28 %) at which one week's observation of a time-of-week slot
no longer agrees with the other weeks'."""
MIN_ANALOGUE_GAIN = 0.02
"""Another weekday's shape must also cut the mean absolute residual by this much (log
space, about 2 %) before it replaces today's: a near-perfect fit never switches on noise."""
REDUCED_DAY_WEIGHT = 0.01
"""Weight of a reduced day's history in the fit, against 1 for an ordinary day. Small enough
that a reduced day never moves what ordinary days show, so it stands in only where the
history holds no ordinary day of its kind: the first working days of January, whose two
weeks back are the holiday season's reduced days, take the working days' shape from them
rather than the weekend's."""
MIN_SCALE = 0.05
"""Floor of the robust residual scale (log space): residuals under about 4.685 × 5 % are
never treated as outliers, so a near-perfect fit does not reject its own shape."""


@dataclass(frozen=True, kw_only=True)
class ForecastConfig:
    """Shape of the model; the defaults are what the backtest is tuned with."""

    fit_step_seconds: int = 600
    """History is averaged into buckets of this many seconds (aligned to the epoch)."""
    smoothing_seconds: float = 1200.0
    """Half-width of the triangular kernel that smooths the daily and weekly profiles."""
    weekday_level_weight: float = 0.5
    """Share of the day-of-week level (Sunday busier than Monday) the forecast carries; the
    rest is left to re-levelling, since two weeks of history cannot tell a weekly pattern
    from two busy Sundays."""
    level_window_seconds: float = 3 * 3600.0
    """The forecast is re-levelled on the median residual of this much recent history."""
    analogue_window_seconds: float = 6 * 3600.0
    """Recent history compared with each weekday's shape to pick the day today resembles."""
    analogue_margin: float = 0.4
    """Another weekday's shape replaces today's only if it fits the analogue window with
    this much less spread (a holiday Thursday that runs like a Sunday)."""
    robust_iterations: int = 3
    """Biweight re-weighting passes after the first decomposition."""
    interval: float = 0.95
    """Coverage of the prediction interval."""
    min_fit_samples: int = 24
    """Fewer finite buckets than this and there is nothing to forecast from."""
    level_above_day: float = 0.15
    """The re-levelled forecast never runs more than this (log space, about 16 %) above the
    level of the last whole day: a few hours above a shape learnt in odd weeks (the first
    working week after the holidays) do not lift the rest of the day."""
    calendar_day_level: float = 0.7
    """A calendar day (public holiday or special day) is forecast, at each time of day, as
    the lower of its own weekday's shape and the rest day's shape, times this level; a
    reduced day as its own weekday's shape times this level."""
    rest_weekday: int = 6
    """The weekday a calendar day is compared with (Monday 0 … Sunday 6): a holiday runs
    like a Sunday in most countries."""

    def __post_init__(self) -> None:
        if not 0.0 < self.interval < 1.0:
            raise ValueError(f"interval must lie strictly between 0 and 1, got {self.interval}")
        if self.fit_step_seconds <= 0 or DAY_SECONDS % self.fit_step_seconds:
            raise ValueError(f"fit_step_seconds must divide a day, got {self.fit_step_seconds}")
        if not 0 < self.level_window_seconds <= self.analogue_window_seconds:
            raise ValueError("level_window_seconds must be positive and not exceed analogue_window_seconds")
        if not 0.0 <= self.analogue_margin <= 1.0:
            raise ValueError(f"analogue_margin must lie in 0..1, got {self.analogue_margin}")
        if not 0.0 <= self.weekday_level_weight <= 1.0:
            raise ValueError(f"weekday_level_weight must lie in 0..1, got {self.weekday_level_weight}")
        if not 0 <= self.rest_weekday <= 6:
            raise ValueError(f"rest_weekday must lie in 0..6, got {self.rest_weekday}")
        if not 0.0 < self.calendar_day_level <= 2.0:
            raise ValueError(f"calendar_day_level must lie in (0, 2], got {self.calendar_day_level}")
        if self.smoothing_seconds < 0 or self.robust_iterations < 0:
            raise ValueError("smoothing_seconds and robust_iterations must not be negative")


@dataclass(frozen=True, kw_only=True)
class Expectation:
    """What the signal should be at one instant."""

    at: float
    """Unix seconds."""
    mean: float
    """The expected value (the median of the forecast distribution)."""
    lower: float
    upper: float


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """The forecast over a range of instants, as arrays of equal length."""

    timestamps: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def peak(self, *, upper: bool = False) -> float:
        """The highest expected value in the range (or the highest upper bound)."""
        series = self.upper if upper else self.mean
        if series.size == 0:
            raise ValueError("an empty prediction has no peak")
        return float(np.max(series))


def _smooth_circular(values: np.ndarray, *, half_width: int) -> np.ndarray:
    """Convolve a circular profile with a normalised triangular kernel."""
    if half_width <= 0:
        return values
    kernel = np.concatenate([np.arange(1, half_width + 2), np.arange(half_width, 0, -1)]).astype(np.float64)
    kernel /= kernel.sum()
    padded = np.concatenate([values[-half_width:], values, values[:half_width]])
    return np.convolve(padded, kernel, mode="valid")


def _fill_circular(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown slots of a circular profile by interpolating between known ones."""
    if known.all():
        return values
    slots = np.arange(values.size, dtype=np.float64)
    return np.interp(slots, slots[known], values[known], period=values.size)


def _day_kernel(per_day: int) -> np.ndarray:
    """The centred 2×m moving-average kernel over exactly one day (weights sum to ``per_day``)."""
    kernel = np.ones(per_day + 1)
    kernel[0] = kernel[-1] = 0.5
    return kernel


def _seasonal_profile(
    residual: np.ndarray,
    weights: np.ndarray,
    *,
    spanned: np.ndarray,
    tod: np.ndarray,
    tow: np.ndarray,
    per_day: int,
    half_width: int,
    weekend: tuple[int, ...] = (),
    ordinary: np.ndarray | None = None,
) -> np.ndarray:
    """The smoothed time-of-week profile of ``residual``.

    Each time-of-week slot is the weighted mean of the history at that time of week; where
    the history holds no data for a time of week (less than a week of history, a long gap,
    or a weekday that was a holiday every time the history saw it), the time-of-day mean of
    the days of the same kind stands in: the ``weekend`` days (of the profile's week, day 0
    a Thursday) or the working days, and all days where that kind has none either.

    Two weeks of history give each slot two observations, too few for a median. When one
    of them strays from the others by more than ``SLOT_DISAGREEMENT`` and lies further from
    the time-of-day mean of its kind of day (the ``weekend`` days, or the working days)
    than they do, it is left out: a holiday Thursday, shaped like a Sunday, does not teach
    next Thursday's afternoon to expect a Sunday crowd. The reference is the mean of the
    same kind of day because the kinds differ most where a stray week does harm: at night
    the weekend's nights out lift the mean of all days so far that a busy (holiday-season)
    Wednesday night lies closer to it than an ordinary one, which would be dropped instead.
    A lone observation that far from that mean, in a slot whose other weeks are missing
    (``spanned``: buckets whose one-day window lies within the history), counts only half
    its deviation.

    ``ordinary`` (1 for an ordinary day's bucket, 0 for a calendar day's) says which
    observations may define a slot: a slot that only reduced days (weighed lightly) have
    seen takes the time-of-day mean of its kind of day, which the ordinary days of the
    history dominate, rather than the reduced days' own values.
    """
    per_week = 7 * per_day

    def smoothed(slots: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
        return _smooth_circular(np.bincount(slots, weights=values, minlength=size), half_width=half_width)

    day_num = smoothed(tod, weights * residual, per_day)
    day_den = smoothed(tod, weights, per_day)
    known = day_den > 1e-12
    daily = np.tile(_fill_circular(np.where(known, day_num / np.where(known, day_den, 1.0), 0.0), known), 7)
    if weekend:
        # The time-of-day mean of the days of the same kind: working days for a working day,
        # the weekend for a weekend day (all days where that kind has none).
        rest_bucket = np.isin(tow // per_day, weekend)
        rest_slot = np.isin(np.arange(per_week) // per_day, weekend)
        for bucket_kind, slot_kind in ((rest_bucket, rest_slot), (~rest_bucket, ~rest_slot)):
            num = smoothed(tod, weights * residual * bucket_kind, per_day)
            den = smoothed(tod, weights * bucket_kind, per_day)
            has = den > 1e-12
            if has.any():
                fill = np.tile(_fill_circular(np.where(has, num / np.where(has, den, 1.0), 0.0), has), 7)
                daily = np.where(slot_kind, fill, daily)

    deviation = residual - daily[tow]
    slot_sum = np.bincount(tow, weights=weights * deviation, minlength=per_week)[tow]
    slot_weight = np.bincount(tow, weights=weights, minlength=per_week)[tow]
    others_weight = slot_weight - weights
    has_others = others_weight > 0.5
    others = np.where(has_others, (slot_sum - weights * deviation) / np.where(has_others, others_weight, 1.0), 0.0)
    stray = has_others & (np.abs(deviation - others) > SLOT_DISAGREEMENT) & (np.abs(deviation) > np.abs(others))
    kept = np.where(stray, 0.0, weights)
    # A lone observation far from the time-of-day mean, where the history spans other
    # weeks whose data are missing, cannot be checked against them: it counts half.
    weeks_spanned = np.bincount(tow, weights=spanned, minlength=per_week)[tow]
    lonely = ~has_others & (weeks_spanned > 1.5) & (np.abs(deviation) > SLOT_DISAGREEMENT)
    value = residual - np.where(lonely, 0.5 * deviation, 0.0)

    week_num = smoothed(tow, kept * value, per_week)
    week_den = smoothed(tow, kept, per_week)
    seen = week_den > 1e-12
    if ordinary is not None:
        seen &= smoothed(tow, kept * ordinary, per_week) > 1e-12
    return np.where(seen, week_num / np.where(seen, week_den, 1.0), daily)


def _day_level(
    z: np.ndarray, weights: np.ndarray, profile: np.ndarray, *, tow: np.ndarray, per_day: int
) -> np.ndarray:
    """The level of the day around each bucket.

    Where the history is complete this is the centred one-day moving average of ``z``,
    which cancels the daily cycle exactly. Where a gap, a down-weighted outlier or an end
    of the history cuts the window short, it is the average of the deseasonalised history
    that is there plus the profile's own one-day average, so a missing evening does not
    drag the level down.
    """
    kernel = _day_kernel(per_day)
    wrapped = np.concatenate([profile[-(per_day // 2):], profile, profile[: per_day // 2]])
    profile_level = np.convolve(wrapped, kernel / per_day, mode="valid")
    numerator = np.convolve((z - profile[tow]) * weights, kernel, mode="same")
    denominator = np.convolve(weights, kernel, mode="same")
    known = denominator > 1e-12
    return np.where(known, numerator / np.where(known, denominator, 1.0), 0.0) + profile_level[tow]


def fit_bucket_seconds(*, fit_step_seconds: float, step_seconds: float) -> int:
    """Width of the fit's buckets for a history at ``step_seconds``.

    ``fit_step_seconds`` (10 minutes by default) unless the history is coarser: then the
    smallest divisor of a day at least as wide as its step, so that every bucket holds a
    sample (a 30-minute history fits 30-minute buckets, an hourly one hourly buckets).
    """
    wanted = max(float(fit_step_seconds), float(step_seconds))
    for width in range(int(math.ceil(wanted - 1e-9)), int(DAY_SECONDS) + 1):
        if DAY_SECONDS % width == 0:
            return width
    return int(DAY_SECONDS)


@dataclass(frozen=True, kw_only=True)
class _Shape:
    """The fitted weekly profile (log space) and growth, evaluable at any instant."""

    profile: np.ndarray
    """One value per local time-of-week bucket, at bucket centres."""
    rest_profile: np.ndarray
    """One value per local time-of-day bucket: the rest day's shape."""
    calendar_offset: float
    bucket_seconds: float
    step_seconds: float
    slope_per_second: float
    anchor: float
    calendar: Calendar = UTC_CALENDAR

    def log_centre(self, timestamps: np.ndarray, *, shift_days: int, reduced_level: bool = True) -> np.ndarray:
        """The log forecast of the samples stamped ``timestamps``, before re-levelling,
        reading the weekly profile ``shift_days`` ahead (calendar days read their own shape:
        a holiday or special day the lower of its weekday's and the rest day's, a reduced
        day its weekday's, each times ``calendar_day_level``; with ``reduced_level`` False a
        reduced day reads its weekday's shape as it is, as the re-levelling does)."""
        local = self.calendar.local_seconds(timestamps - self.step_seconds / 2.0)
        shape = _cyclic_interpolation(self.profile, local + shift_days * DAY_SECONDS,
                                      period=WEEK_SECONDS, bucket_seconds=self.bucket_seconds)
        if self.calendar.day_numbers.size:
            days = np.floor(local / DAY_SECONDS).astype(np.int64)
            special = self.calendar.is_calendar_day(days)
            if special.any():
                reduced = self.calendar.is_reduced_day(days)
                rest = _cyclic_interpolation(self.rest_profile, local, period=DAY_SECONDS,
                                             bucket_seconds=self.bucket_seconds)
                own = np.where(reduced, shape, np.minimum(shape, rest) + self.calendar_offset)
                if reduced_level:
                    own = np.where(reduced, own + self.calendar_offset, own)
                shape = np.where(special, own, shape)
        return shape + self.slope_per_second * (timestamps - self.anchor)


class SeasonalForecast:
    """A fitted forecast of one series. Build it with :meth:`fit`; it is immutable after."""

    def __init__(
        self,
        *,
        config: ForecastConfig,
        shape: _Shape,
        shift_days: int,
        level: float,
        sigma: float,
        offset: float,
        samples: int,
    ) -> None:
        self.config = config
        self._shape = shape
        self._offset = offset
        self._z = NormalDist().inv_cdf(0.5 + config.interval / 2.0)
        self.shift_days = shift_days
        """Days the weekly shape is read ahead: 0 for today's own weekday, 2 for a Thursday
        that runs like a Saturday."""
        self.level = level
        """Log of the level the most recent history runs at; the profile carries the shape."""
        self.growth_per_day = math.expm1(shape.slope_per_second * DAY_SECONDS)
        """Slow growth of the daily level over the history (0.01: +1 % a day)."""
        self.sigma = sigma
        """Spread of a single sample around the forecast, in log space."""
        self.step_seconds = shape.step_seconds
        """The history's sample step; a forecast at ``t`` is for the step ending at ``t``."""
        self.history_end = shape.anchor
        """Timestamp of the last finite history sample the fit saw."""
        self.samples = samples
        """Finite samples in the history."""

    # ------------------------------------------------------------------ construction

    @classmethod
    def fit(
        cls,
        *,
        timestamps: np.ndarray | list[float],
        values: np.ndarray | list[float],
        step_seconds: float | None = None,
        config: ForecastConfig = ForecastConfig(),
        calendar: Calendar = UTC_CALENDAR,
        held_out_from: float | None = None,
    ) -> SeasonalForecast:
        """Fit a forecast to history sampled at a fixed step.

        ``timestamps`` are unix seconds, ascending; missing samples may be absent or NaN.
        A sample stamped ``t`` is the signal over the step ending at ``t`` (Prometheus
        ``rate()`` semantics). ``step_seconds`` defaults to the median spacing of the
        timestamps. ``calendar`` is the region's time zone and calendar days: the shape is
        learnt and forecast in local time, calendar days are kept out of the ordinary
        week's shape and forecast as their own kind of day.

        ``held_out_from`` is the contract with detection for a deviation under way: samples
        stamped at or after it are left out of the fit (not learnt as normal). The caller
        passes the start of the current drop while detection still treats it as a possible
        outage (verdict Unhealthy or HeldBack), and None once detection gives up on it
        (verdict Unknown: the forecast no longer fits) or the drop is over; from then on the
        refit takes every sample and learns the new level.

        Raises :class:`~regionshift.errors.NoData` when too few finite samples remain.
        """
        ts = np.asarray(timestamps, dtype=np.float64)
        ys = np.asarray(values, dtype=np.float64)
        if ts.shape != ys.shape or ts.ndim != 1:
            raise ValueError("timestamps and values must be one-dimensional and of equal length")
        finite = np.isfinite(ys) & np.isfinite(ts)
        if held_out_from is not None:
            finite &= ts < held_out_from
        ts, ys = ts[finite], np.maximum(ys[finite], 0.0)
        if ts.size < 2:
            raise NoData(f"{ts.size} finite samples: nothing to forecast from")
        if np.any(np.diff(ts) <= 0):
            raise ValueError("timestamps must be strictly ascending")
        step = float(step_seconds) if step_seconds else float(np.median(np.diff(ts)))
        if step <= 0:
            raise ValueError(f"step_seconds must be positive, got {step}")

        # Epoch-aligned buckets on a dense grid, so bucket k of any history is the same
        # time of week; buckets without enough samples carry no weight.
        # Buckets are local time (the region's wall clock): a time change moves nothing; in
        # the hour a fall-back repeats, both hours' samples share (and average in) the buckets.
        bucket = float(fit_bucket_seconds(fit_step_seconds=config.fit_step_seconds, step_seconds=step))
        per_day = int(DAY_SECONDS // bucket)
        per_week = 7 * per_day
        local = calendar.local_seconds(ts - step / 2.0)
        number = np.floor(local / bucket).astype(np.int64)
        first = int(number.min())
        sums = np.bincount(number - first, weights=ys)
        counts = np.bincount(number - first)
        present = counts >= max(1.0, 0.5 * bucket / step)
        if int(np.count_nonzero(present)) < config.min_fit_samples:
            raise NoData(
                f"{int(np.count_nonzero(present))} usable {config.fit_step_seconds}-second buckets"
                f" of history, need at least {config.min_fit_samples}"
            )
        if counts.size <= per_day:
            raise NoData(f"{(ts[-1] - ts[0]) / 3600:.1f} h of history: need at least a day")
        offset = max(0.01 * float(np.median(ys)), 1e-9)
        z = np.log(np.where(present, sums / np.maximum(counts, 1), 0.0) + offset)
        absolute = first + np.arange(z.size)
        tod = absolute % per_day
        tow = absolute % per_week
        half_width = int(config.smoothing_seconds // bucket)
        # Calendar days are their own kind of day: they shape neither the ordinary week nor
        # the level of the days around them (what surrounds them is that level). Reduced days
        # weigh REDUCED_DAY_WEIGHT: they shape only what no ordinary day of the history does.
        ordinary = ~calendar.is_calendar_day(absolute // per_day)
        reduced = calendar.is_reduced_day(absolute // per_day)
        base_weight = np.where(ordinary, 1.0, np.where(reduced, REDUCED_DAY_WEIGHT, 0.0))
        # The rest weekday and the day before it (Saturday and Sunday by default), as days of
        # the profile's week (day 0 is a Thursday, as 1970-01-01 was).
        rest_day = (config.rest_weekday - 3) % 7
        weekend = (rest_day, (rest_day - 1) % 7)
        base_weight = np.where(present, base_weight, 0.0)

        # Robust decomposition: log history = level of the day + time-of-week profile.
        weights = base_weight.copy()
        profile = np.zeros(per_week)
        # Only buckets whose one-day window lies within the history and holds data for at
        # least half a day shape the profile: the first and last half day stay out.
        kernel = _day_kernel(per_day)
        span = np.convolve(np.ones(z.size), kernel, mode="same")
        coverage = np.convolve(present.astype(np.float64), kernel, mode="same")
        spanned = span >= COVERAGE * per_day
        defined = spanned & (coverage >= GAP_COVERAGE * per_day)
        usable = present & ordinary & defined
        if not usable.any():
            raise NoData("less than a day of history: no daily level to fit")
        for _ in range(1 + config.robust_iterations):
            for _ in range(2):  # backfitting: the level of each day, then the shape around it
                day_level = _day_level(z, weights, profile, tow=tow, per_day=per_day)
                profile = _seasonal_profile(
                    z - day_level,
                    weights * defined,
                    spanned=(spanned & ordinary).astype(np.float64),
                    tod=tod,
                    tow=tow,
                    per_day=per_day,
                    half_width=half_width,
                    weekend=weekend,
                    ordinary=ordinary.astype(np.float64),
                )
            resid = z - day_level - profile[tow]
            scale = max(mad(resid[usable]), MIN_SCALE)
            weights = base_weight * tukey_biweight_weights(resid / scale)
        use = weights * defined

        # Growth and day-of-week level of the daily level. Growth is the weighted least
        # squares slope within each time-of-week slot (level and time both centred on their
        # slot means), so a weekly pattern cannot pass for a trend; the day-of-week level is
        # what is left at each slot once the growth is out, of which a share is forecast.
        seconds = (absolute + 0.5) * bucket - float(local[-1])
        slot_weight = np.bincount(tow, weights=use, minlength=per_week)
        occupied = slot_weight > 1e-12

        def slot_mean(values: np.ndarray) -> np.ndarray:
            total = np.bincount(tow, weights=use * values, minlength=per_week)
            return np.where(occupied, total / np.where(occupied, slot_weight, 1.0), 0.0)

        slope = 0.0
        centred_time = seconds - slot_mean(seconds)[tow]
        if float(np.sum(use * centred_time**2)) > (DAY_SECONDS**2) * float(np.sum(use)) * 1e-3:
            slope = weighted_slope_through_origin(day_level - slot_mean(day_level)[tow], centred_time, weights=use)
        detrended = day_level - slope * seconds
        mean_level = float(np.average(detrended, weights=use))
        level_num = np.bincount(tow, weights=use * (detrended - mean_level), minlength=per_week)
        day_of_week = np.where(occupied, level_num / np.where(occupied, slot_weight, 1.0), 0.0)
        profile = profile + config.weekday_level_weight * day_of_week

        shape = _Shape(
            profile=profile,
            rest_profile=profile[rest_day * per_day : (rest_day + 1) * per_day].copy(),
            calendar_offset=math.log(config.calendar_day_level),
            bucket_seconds=bucket,
            step_seconds=step,
            slope_per_second=slope,
            anchor=float(ts[-1]),
            calendar=calendar,
        )
        # Pick the weekday whose shape today follows, then re-level on the recent history.
        # Holidays and special days take no part: their level is the ordinary days' before
        # them. A reduced day re-levels like an ordinary day, against its weekday's shape as
        # it is (its forecast is lowered after): what its last hours say is its level.
        sample_day = np.floor(local / DAY_SECONDS).astype(np.int64)
        ordinary_sample = ~calendar.is_calendar_day(sample_day) | calendar.is_reduced_day(sample_day)
        recent_end = float(ts[ordinary_sample][-1]) if ordinary_sample.any() else shape.anchor
        if not ordinary_sample.any():
            ordinary_sample = np.ones(ts.size, dtype=bool)
        analogue = ordinary_sample & (ts >= recent_end - config.analogue_window_seconds)
        logs = np.log(ys[analogue] + offset)
        slots = ((ts[analogue] - ts[analogue][0]) // bucket).astype(np.int64)
        per_slot = np.bincount(slots)
        spreads = []
        for shift in range(7):
            resid = np.bincount(slots, weights=logs - shape.log_centre(ts[analogue], shift_days=shift,
                                                                        reduced_level=False))
            resid = (resid / np.maximum(per_slot, 1))[per_slot > 0]
            spreads.append(float(np.mean(np.abs(resid - np.median(resid)))))
        best = int(np.argmin(spreads))
        # A region that declares its calendar days takes them from the calendar: the guess,
        # which can mistake the first samples of a drop for a day of another kind, is for
        # regions that declare none.
        switch = spreads[0] - spreads[best] > MIN_ANALOGUE_GAIN and calendar.day_numbers.size == 0
        shift_days = best if switch and spreads[best] < (1.0 - config.analogue_margin) * spreads[0] else 0
        native = logs - shape.log_centre(ts[analogue], shift_days=shift_days, reduced_level=False)
        level = float(np.median(native[ts[analogue] >= recent_end - config.level_window_seconds]))
        if shift_days == 0 and not calendar.is_reduced_day(sample_day[-1:])[0]:
            # Never far above the level of the last whole day: a morning that runs above a
            # shape learnt in odd weeks (the first working week after the holidays) must not
            # lift the whole day's forecast over what the day brings. Not on a reduced day:
            # its forecast is lowered already, and after a morning commute at half an
            # ordinary one the cap would lower its afternoon a second time.
            whole_day = ordinary_sample & (ts >= recent_end - DAY_SECONDS)
            if np.count_nonzero(whole_day) * step >= 0.5 * DAY_SECONDS:
                daily = np.log(ys[whole_day] + offset) - shape.log_centre(ts[whole_day], shift_days=0,
                                                                           reduced_level=False)
                level = min(level, float(np.median(daily)) + config.level_above_day)
        # The interval covers one sample's noise and how far the shape strays from the
        # recent history over the analogue window, around the level.
        spread = native - level
        sigma = mad(spread, center=0.0)
        return cls(
            config=config,
            shape=shape,
            shift_days=shift_days,
            level=level,
            sigma=sigma if sigma > 0 else float(np.std(spread)),
            offset=offset,
            samples=int(ts.size),
        )

    # ------------------------------------------------------------------ queries

    def predict_at(self, *, timestamps: np.ndarray | list[float]) -> Prediction:
        """The forecast for the samples stamped ``timestamps`` (unix seconds)."""
        ts = np.asarray(timestamps, dtype=np.float64)
        centre = self._shape.log_centre(ts, shift_days=self.shift_days) + self.level
        width = self._z * self.sigma
        return Prediction(
            timestamps=ts,
            mean=np.maximum(np.exp(centre) - self._offset, 0.0),
            lower=np.maximum(np.exp(centre - width) - self._offset, 0.0),
            upper=np.maximum(np.exp(centre + width) - self._offset, 0.0),
        )

    def predict(self, *, start: float, end: float, step_seconds: float) -> Prediction:
        """The forecast at ``start``, ``start + step``, … up to and including ``end``."""
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds}")
        if end < start:
            raise ValueError("end must not come before start")
        count = int(math.floor((end - start) / step_seconds + 1e-9)) + 1
        return self.predict_at(timestamps=start + step_seconds * np.arange(count, dtype=np.float64))

    def expected(self, *, at: float) -> Expectation:
        """What the sample stamped ``at`` (unix seconds) should be."""
        one = self.predict_at(timestamps=np.array([at], dtype=np.float64))
        return Expectation(
            at=float(at), mean=float(one.mean[0]), lower=float(one.lower[0]), upper=float(one.upper[0])
        )


class ForecastCache:
    """One fitted forecast per key (a region), refitted only when older than an interval.

    The cache never reads the clock: every call takes ``now`` (unix seconds). A forecast
    past its refit interval is still returned by :meth:`get`, so a caller whose history
    source is down keeps forecasting from the last good fit while it reports the outage.
    """

    def __init__(self, *, refit_interval_seconds: float) -> None:
        if refit_interval_seconds <= 0:
            raise ValueError(f"refit_interval_seconds must be positive, got {refit_interval_seconds}")
        self.refit_interval_seconds = float(refit_interval_seconds)
        self._entries: dict[str, tuple[float, SeasonalForecast]] = {}

    def due(self, *, key: str, now: float) -> bool:
        """Whether ``key`` has no forecast yet or its forecast is at least an interval old."""
        entry = self._entries.get(key)
        return entry is None or now - entry[0] >= self.refit_interval_seconds

    def get(self, *, key: str) -> SeasonalForecast | None:
        """The latest forecast for ``key``, however old, or None."""
        entry = self._entries.get(key)
        return entry[1] if entry else None

    def fitted_at(self, *, key: str) -> float | None:
        """When the forecast for ``key`` was stored (unix seconds), or None."""
        entry = self._entries.get(key)
        return entry[0] if entry else None

    def put(self, *, key: str, forecast: SeasonalForecast, now: float) -> None:
        """Store a fresh forecast for ``key`` fitted at ``now``."""
        self._entries[key] = (float(now), forecast)

    def retain(self, *, keys: set[str] | frozenset[str]) -> None:
        """Forget every key not in ``keys`` (regions that left the domain)."""
        for key in list(self._entries):
            if key not in keys:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def _cyclic_interpolation(profile: np.ndarray, seconds: np.ndarray, *, period: float,
                          bucket_seconds: float) -> np.ndarray:
    """``profile`` (one value per bucket, centred in it, repeating every ``period``) read at ``seconds``, linearly."""
    position = np.mod(seconds, period) / bucket_seconds - 0.5
    below = np.floor(position)
    fraction = position - below
    index = below.astype(np.int64) % profile.size
    return profile[index] * (1.0 - fraction) + profile[(index + 1) % profile.size] * fraction  # type: ignore[no-any-return]
