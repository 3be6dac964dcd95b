"""A region's local time and its calendar days, for the forecast.

Human demand follows the local clock and the local calendar: New Yorkers take taxis at 8 a.m.
New York time whether or not daylight saving time is on, and not like a Thursday on
Thanksgiving. A forecast that learns its daily and weekly shape in UTC sees the whole curve
move by an hour twice a year, and one that treats a holiday as an ordinary weekday expects
an ordinary crowd that day and learns a holiday's shape into the same weekday of the weeks
after. So each region declares:

* its **time zone** (an IANA name such as ``America/New_York``): the forecast lays the
  history onto local time-of-week slots with :meth:`Calendar.local_seconds` (Python's
  ``zoneinfo``, so every past and future offset change is known), and reads the forecast
  back the same way; a time change moves nothing;
* its **calendar days**: the public holidays of a country (and subdivision) from the
  `holidays <https://pypi.org/project/holidays/>`_ library, plus the region's own special
  days (a launch, a sale), plus its **reduced days**: working days with fewer users than
  usual, which no holiday library names (the working days between Christmas and the first
  Friday of January, the day after Thanksgiving). :meth:`Calendar.is_calendar_day` says which
  local days are calendar days of either kind, :meth:`Calendar.is_reduced_day` which are
  reduced days; the forecast keeps them out of the ordinary week's shape and forecasts them
  as their own kind of day (:mod:`regionshift.decide.forecast` says how).

Pure data and NumPy: no clock, no I/O. The holidays library computes its dates from rules
(no download), and :func:`public_holidays` caches them per country, subdivision and years.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from regionshift.api.models import RegionCalendar

__all__ = [
    "calendar_of",
    "DAY_SECONDS",
    "UTC_CALENDAR",
    "Calendar",
    "day_number",
    "public_holidays",
    "region_calendar",
    "utc_offsets",
]

DAY_SECONDS = 86_400
_HOUR = 3_600
_EPOCH = dt.date(1970, 1, 1)


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01: the local day index the forecast's buckets use."""
    return (day - _EPOCH).days


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris'") from exc


def _offset(zone: ZoneInfo, t: float) -> int:
    """UTC offset of ``zone`` at unix time ``t``, in seconds."""
    stamp = dt.datetime.fromtimestamp(t, tz=zone)
    return int(stamp.utcoffset().total_seconds())  # type: ignore[union-attr]


@functools.lru_cache(maxsize=64)
def _transitions(zone_name: str, first_hour: int, last_hour: int) -> tuple[np.ndarray, np.ndarray]:
    """Offset changes of a zone between two hours (unix hours): (times, offsets from then on).

    The offset is read at every hour; where two neighbouring hours differ, the change is
    found to the second by bisection (zones change offset at most once in an hour).
    """
    zone = _zone(zone_name)
    hours = np.arange(first_hour, last_hour + 2, dtype=np.int64)
    offsets = np.array([_offset(zone, float(h * _HOUR)) for h in hours], dtype=np.int64)
    changes = np.flatnonzero(np.diff(offsets))
    times = [float(hours[0] * _HOUR)]
    values = [int(offsets[0])]
    for k in changes:
        lo, hi = int(hours[k] * _HOUR), int(hours[k + 1] * _HOUR)  # offset differs at hi, not at lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _offset(zone, float(mid)) == offsets[k]:
                lo = mid
            else:
                hi = mid
        times.append(float(hi))
        values.append(int(offsets[k + 1]))
    return np.array(times), np.array(values, dtype=np.float64)


def utc_offsets(zone_name: str, timestamps: np.ndarray) -> np.ndarray:
    """The UTC offset (seconds) of ``zone_name`` at each unix time of ``timestamps``."""
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size == 0:
        return np.zeros(0)
    if zone_name == "UTC":
        return np.zeros(ts.shape)
    # Whole days around the range, so neighbouring calls share the cached transitions.
    first = int(np.floor(np.nanmin(ts) / DAY_SECONDS)) * 24 - 24
    last = int(np.ceil(np.nanmax(ts) / DAY_SECONDS)) * 24 + 24
    times, values = _transitions(zone_name, first, last)
    index = np.searchsorted(times, ts, side="right") - 1
    return values[np.clip(index, 0, values.size - 1)]


@functools.lru_cache(maxsize=64)
def public_holidays(country: str, subdivision: str | None, years: tuple[int, ...]) -> Mapping[dt.date, str]:
    """Public holidays of ``country`` (ISO 3166-1 code) and ``subdivision`` in ``years``, by date.

    Raises ValueError when the holidays library knows no such country or subdivision.
    """
    import holidays  # imported on first use: most regions declare no country

    try:
        found = holidays.country_holidays(country, subdiv=subdivision, years=list(years))
    except NotImplementedError as exc:  # the library's answer to an unknown country or subdivision
        raise ValueError(
            f"the holidays library knows no country {country!r}"
            + (f" with subdivision {subdivision!r}" if subdivision else "")
            + f": {exc}"
        ) from exc
    return dict(sorted(found.items()))


@dataclass(frozen=True, kw_only=True)
class Calendar:
    """One region's time zone and calendar days (public holidays and its own special days)."""

    time_zone: str = "UTC"
    """IANA time zone name."""
    holidays: Mapping[dt.date, str] = field(default_factory=dict)
    """Public holidays by local date, with their names."""
    special_days: frozenset[dt.date] = frozenset()
    """The region's own special days (local dates)."""
    reduced_days: frozenset[dt.date] = frozenset()
    """The region's reduced days (local dates): working days with fewer users than usual. A
    date that is also a holiday or special day counts as that (the quieter kind)."""

    def __post_init__(self) -> None:
        _zone(self.time_zone)  # fail early on an unknown zone
        quiet = {day_number(d) for d in self.holidays} | {day_number(d) for d in self.special_days}
        reduced = {day_number(d) for d in self.reduced_days} - quiet
        object.__setattr__(self, "_days", np.array(sorted(quiet | reduced), dtype=np.int64))
        object.__setattr__(self, "_reduced", np.array(sorted(reduced), dtype=np.int64))

    @property
    def ordinary(self) -> bool:
        """UTC with no calendar day: the forecast then works exactly as before calendars existed."""
        return self.time_zone == "UTC" and not self.holidays and not self.special_days and not self.reduced_days

    @property
    def day_numbers(self) -> np.ndarray:
        """The calendar days as local day numbers (days since 1970-01-01), ascending."""
        return self._days  # type: ignore[attr-defined,no-any-return]

    def local_seconds(self, timestamps: np.ndarray) -> np.ndarray:
        """Unix times shifted to the region's wall clock (seconds since 1970-01-01 00:00 local)."""
        ts = np.asarray(timestamps, dtype=np.float64)
        return ts + utc_offsets(self.time_zone, ts)

    def is_calendar_day(self, local_days: np.ndarray) -> np.ndarray:
        """Whether each local day number is a public holiday, a special day or a reduced day."""
        days = np.asarray(local_days, dtype=np.int64)
        if self._days.size == 0:  # type: ignore[attr-defined]
            return np.zeros(days.shape, dtype=bool)
        return np.isin(days, self._days)  # type: ignore[attr-defined]

    def is_reduced_day(self, local_days: np.ndarray) -> np.ndarray:
        """Whether each local day number is a reduced day (and not also a holiday or special day)."""
        days = np.asarray(local_days, dtype=np.int64)
        if self._reduced.size == 0:  # type: ignore[attr-defined]
            return np.zeros(days.shape, dtype=bool)
        return np.isin(days, self._reduced)  # type: ignore[attr-defined]

    def names(self, *, start: dt.date, end: dt.date) -> list[tuple[dt.date, str]]:
        """The calendar days from ``start`` to ``end`` (inclusive) with their names, in order."""
        out = {d: n for d, n in self.holidays.items() if start <= d <= end}
        for d in self.special_days:
            if start <= d <= end:
                out[d] = f"{out[d]}; special day" if d in out else "special day"
        for d in self.reduced_days:
            if start <= d <= end:
                out[d] = f"{out[d]}; reduced day" if d in out else "reduced day"
        return sorted(out.items())


UTC_CALENDAR = Calendar()
"""No time zone, no calendar day: the default of a region that declares nothing."""


def region_calendar(
    *,
    time_zone: str = "UTC",
    country: str | None = None,
    subdivision: str | None = None,
    special_days: Iterable[dt.date] = (),
    reduced_days: Iterable[dt.date] = (),
    years: Iterable[int] = (),
) -> Calendar:
    """A region's calendar: its zone, ``country``'s public holidays in ``years``, its own days.

    ``years`` should cover the history and the horizon the forecast reads (the caller knows
    both); without a country it is not needed.
    """
    holidays: Mapping[dt.date, str] = {}
    if country:
        holidays = public_holidays(country, subdivision or None, tuple(sorted(set(years))))
    return Calendar(
        time_zone=time_zone,
        holidays=holidays,
        special_days=frozenset(special_days),
        reduced_days=frozenset(reduced_days),
    )


def calendar_of(declared: RegionCalendar, *, now: float, history_seconds: float) -> Calendar:
    """The :class:`Calendar` a region declares in its RegionFailover (``spec.calendar`` or a peer's).

    Public holidays are taken for every year from the oldest history sample to a year
    after ``now``, so the history and any forecast horizon are covered.
    """
    first = dt.datetime.fromtimestamp(now - history_seconds, tz=dt.timezone.utc).year
    last = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc).year + 1
    holidays = declared.holidays
    return region_calendar(
        time_zone=declared.time_zone,
        country=holidays.country if holidays else None,
        subdivision=holidays.subdivision if holidays else None,
        special_days=declared.special_days,
        reduced_days=declared.reduced_days,
        years=range(first, last + 1),
    )
