"""Local time, calendar days and the history step: the forecast follows the region's clock and calendar."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from regionshift.api.models import RegionCalendar, RegionFailoverSpec
from regionshift.decide.calendar import UTC_CALENDAR, Calendar, calendar_of, region_calendar, utc_offsets
from regionshift.decide.forecast import SeasonalForecast, fit_bucket_seconds
from regionshift.local.backtest import REPLAY_DATA, held_out_from, load_replay, replay_calendar

DAY = 86_400.0


def local_demand(timestamps: np.ndarray, *, zone: str, holidays: frozenset[dt.date] = frozenset()) -> np.ndarray:
    """Demand that follows the local clock: a morning and an evening peak, quiet nights and
    weekends, holidays at 60 % of a Sunday; each sample covers the step ending at its time."""
    tz = ZoneInfo(zone)
    step = float(np.median(np.diff(timestamps)))
    out = np.empty(timestamps.size)
    for n, t in enumerate(timestamps):
        moment = dt.datetime.fromtimestamp(float(t) - step / 2, tz=tz)
        hour = moment.hour + moment.minute / 60.0
        daily = 0.25 + math.exp(-((hour - 8.5) ** 2) / 3.0) + 0.8 * math.exp(-((hour - 18.0) ** 2) / 6.0)
        weekend = moment.weekday() >= 5 or moment.date() in holidays
        if weekend:
            daily = 0.25 + 0.7 * math.exp(-((hour - 14.0) ** 2) / 12.0)
        out[n] = 1000.0 * daily * (0.6 if moment.date() in holidays else 1.0)
    return out


def grid(start: str, days: float, step: float, zone: str = "UTC") -> np.ndarray:
    begin = dt.datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(zone)).timestamp()
    return begin + step * np.arange(1, int(days * DAY / step) + 1)


# ---------------------------------------------------------------------------- time zones


@pytest.mark.parametrize(
    ("zone", "change", "before", "after"),
    [
        ("America/New_York", "2014-11-02T06:00:00+00:00", -4 * 3600, -5 * 3600),  # US fall back
        ("Europe/Paris", "2014-10-26T01:00:00+00:00", 2 * 3600, 1 * 3600),  # European fall back
        ("Europe/Paris", "2015-03-29T01:00:00+00:00", 1 * 3600, 2 * 3600),  # European spring forward
        ("Asia/Kolkata", "2015-03-29T01:00:00+00:00", 19_800, 19_800),  # no change, half-hour offset
    ],
)
def test_utc_offsets_change_at_the_second_the_zone_changes(zone: str, change: str, before: int, after: int) -> None:
    at = dt.datetime.fromisoformat(change).timestamp()
    offsets = utc_offsets(zone, np.array([at - 3600, at - 1, at, at + 3600]))
    assert list(offsets) == [before, before, after, after]


def test_an_unknown_zone_is_refused_by_the_calendar_and_the_spec() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        Calendar(time_zone="Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="unknown time zone"):
        RegionCalendar.model_validate({"timeZone": "Mars/Olympus_Mons"})
    assert RegionCalendar().time_zone == "UTC"


@pytest.mark.parametrize(
    ("zone", "change"),
    [("America/New_York", "2014-11-02T12:00"), ("Europe/Berlin", "2014-10-26T12:00"), ("Europe/Berlin", "2015-03-29T12:00")],
)
def test_a_time_change_moves_nothing_in_local_time(zone: str, change: str) -> None:
    # Fit on two weeks before the change; forecast the three days after it. In local time
    # the forecast stays on the curve; in UTC the whole curve is an hour off.
    end = dt.datetime.fromisoformat(change).replace(tzinfo=ZoneInfo(zone)).timestamp() - 12 * 3600
    ts = end - 600 * np.arange(int(14.5 * DAY / 600), 0, -1) + 600
    future = end + 600 * np.arange(1, int(3 * DAY / 600))
    history = local_demand(ts, zone=zone)
    truth = local_demand(future, zone=zone)
    local = SeasonalForecast.fit(timestamps=ts, values=history, calendar=Calendar(time_zone=zone))
    utc = SeasonalForecast.fit(timestamps=ts, values=history, calendar=UTC_CALENDAR)
    local_error = np.max(np.abs(local.predict_at(timestamps=future).mean / truth - 1))
    utc_error = np.max(np.abs(utc.predict_at(timestamps=future).mean / truth - 1))
    assert local_error < 0.12, local_error
    assert utc_error > 0.3 and utc_error > 3 * local_error, utc_error


# ---------------------------------------------------------------------------- history step


@pytest.mark.parametrize("step", [60, 600, 1800, 3600])
def test_every_allowed_history_step_yields_a_forecast(step: int) -> None:
    zone = "America/New_York"
    ts = grid("2014-09-01T00:00", 14.5, step, zone)
    future = ts[-1] + step * np.arange(1, int(DAY / step) + 1)
    forecast = SeasonalForecast.fit(timestamps=ts, values=local_demand(ts, zone=zone), calendar=Calendar(time_zone=zone))
    assert forecast.step_seconds == step
    error = np.abs(forecast.predict_at(timestamps=future).mean / local_demand(future, zone=zone) - 1)
    assert float(np.median(error)) < 0.05, (step, float(np.median(error)))
    assert float(np.max(error)) < (0.12 if step <= 600 else 0.3), (step, float(np.max(error)))


def test_fit_buckets_follow_a_coarse_step() -> None:
    assert fit_bucket_seconds(fit_step_seconds=600, step_seconds=60) == 600
    assert fit_bucket_seconds(fit_step_seconds=600, step_seconds=1800) == 1800
    assert fit_bucket_seconds(fit_step_seconds=600, step_seconds=3600) == 3600
    assert fit_bucket_seconds(fit_step_seconds=600, step_seconds=700) == 720  # the next divisor of a day


# ---------------------------------------------------------------------------- calendar days


def test_public_holidays_come_from_the_holidays_library() -> None:
    calendar = region_calendar(time_zone="America/New_York", country="US", subdivision="NY", years=[2014])
    assert calendar.holidays[dt.date(2014, 11, 27)] == "Thanksgiving Day"
    assert dt.date(2014, 2, 12) in calendar.holidays  # Lincoln's Birthday: New York's own
    assert dt.date(2014, 2, 12) not in region_calendar(country="US", years=[2014]).holidays
    with pytest.raises(ValueError, match="knows no country"):
        region_calendar(country="XX", years=[2014])


def test_the_spec_calendar_reaches_the_forecast_calendar() -> None:
    spec = RegionFailoverSpec.model_validate({
        "region": "us-east",
        "calendar": {"timeZone": "America/New_York", "holidays": {"country": "US", "subdivision": "NY"},
                     "specialDays": ["2026-11-30"]},
        "peers": [{"name": "eu-west", "calendar": {"timeZone": "Europe/Dublin", "holidays": {"country": "IE"}}}],
        "signal": {"prometheusUrl": "http://p:9090", "query": 'sum(rate(x{region="{region}"}[1m]))'},
        "selector": {"matchLabels": {"app": "a"}},
    })
    now = dt.datetime(2026, 11, 29, tzinfo=dt.timezone.utc).timestamp()
    east = calendar_of(spec.calendar, now=now, history_seconds=14.5 * DAY)
    west = calendar_of(spec.peers[0].calendar, now=now, history_seconds=14.5 * DAY)
    assert east.time_zone == "America/New_York" and dt.date(2026, 11, 26) in east.holidays
    assert dt.date(2026, 11, 30) in east.special_days
    assert dt.date(2026, 12, 26) in west.holidays  # St. Stephen's Day
    assert dt.date(2027, 1, 1) in west.holidays  # the horizon's year is covered too
    assert calendar_of(RegionCalendar(), now=now, history_seconds=DAY).ordinary


def test_a_holiday_is_expected_and_does_not_skew_the_next_weeks() -> None:
    zone = "America/New_York"
    thanksgiving = dt.date(2014, 11, 27)
    calendar = region_calendar(time_zone=zone, country="US", subdivision="NY", years=[2014])
    ts = grid("2014-11-10T00:00", 35, 600, zone)
    values = local_demand(ts, zone=zone, holidays=frozenset({thanksgiving}))
    local_day = np.array([dt.datetime.fromtimestamp(t - 300, tz=ZoneInfo(zone)).date() for t in ts])

    # On the holiday, fitted on the two weeks before: expected no higher than what comes.
    start = int(np.flatnonzero(local_day == thanksgiving)[0])
    lo = start - int(14.5 * DAY / 600)
    on_the_day = slice(start, start + 144)
    fit = SeasonalForecast.fit(timestamps=ts[lo:start], values=values[lo:start], calendar=calendar)
    ratio = values[on_the_day] / fit.predict_at(timestamps=ts[on_the_day]).mean
    assert ratio.min() > 0.75, ratio.min()  # never an alarm (the threshold is 0.7)
    plain = SeasonalForecast.fit(timestamps=ts[lo:start], values=values[lo:start], calendar=Calendar(time_zone=zone))
    assert (values[on_the_day] / plain.predict_at(timestamps=ts[on_the_day]).mean).min() < 0.5

    # The Thursday one and two weeks later: the holiday is not learnt as a Thursday.
    for weeks in (1, 2):
        begin = start + weeks * 144 * 7
        lo = begin - int(14.5 * DAY / 600)
        fit = SeasonalForecast.fit(timestamps=ts[lo:begin], values=values[lo:begin], calendar=calendar)
        error = np.abs(fit.predict_at(timestamps=ts[begin : begin + 144]).mean / values[begin : begin + 144] - 1)
        assert error.max() < 0.1, (weeks, error.max())


def test_special_days_are_calendar_days() -> None:
    launch = dt.date(2026, 3, 5)
    calendar = region_calendar(time_zone="Europe/Paris", special_days=[launch])
    days = np.array([(launch - dt.date(1970, 1, 1)).days + k for k in (-1, 0, 1)])
    assert list(calendar.is_calendar_day(days)) == [False, True, False]
    assert calendar.names(start=launch, end=launch) == [(launch, "special day")]


def test_reduced_days_are_calendar_days_of_their_own_kind() -> None:
    christmas, eve, before = dt.date(2014, 12, 25), dt.date(2014, 12, 24), dt.date(2014, 12, 23)
    calendar = region_calendar(time_zone="America/New_York", country="US", subdivision="NY",
                               reduced_days=[before, eve, christmas], years=[2014])
    days = np.array([(d - dt.date(1970, 1, 1)).days for d in (dt.date(2014, 12, 22), before, eve, christmas)])
    assert list(calendar.is_calendar_day(days)) == [False, True, True, True]
    assert list(calendar.is_reduced_day(days)) == [False, True, True, False]  # a holiday stays a holiday
    assert calendar.names(start=before, end=christmas) == [
        (before, "reduced day"), (eve, "reduced day"), (christmas, "Christmas Day; reduced day")]
    assert not Calendar(reduced_days=frozenset({before})).ordinary
    declared = RegionCalendar.model_validate({"timeZone": "America/New_York", "reducedDays": ["2014-12-23"]})
    assert calendar_of(declared, now=datetime_at("2014-12-20"), history_seconds=14.5 * DAY).reduced_days == {before}


def datetime_at(day: str) -> float:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp()


def commute_down(ts: np.ndarray, *, zone: str, days: frozenset[dt.date], factor: float) -> np.ndarray:
    """local_demand, with the morning commute (6-10 a.m.) of ``days`` at ``factor`` and their
    nights 20 % busier: a working day of the holiday season."""
    values = local_demand(ts, zone=zone)
    tz = ZoneInfo(zone)
    for n, t in enumerate(ts):
        moment = dt.datetime.fromtimestamp(float(t) - 300, tz=tz)
        if moment.date() in days:
            values[n] *= factor if 6 <= moment.hour < 10 else (1.2 if moment.hour < 6 else 1.0)
    return values


def test_a_reduced_day_is_its_own_weekday_at_a_lower_level() -> None:
    zone = "America/New_York"
    reduced = dt.date(2014, 12, 23)  # a Tuesday whose commute runs at 65 %, after a busier night
    ts = grid("2014-12-01T00:00", 23, 600, zone)
    values = commute_down(ts, zone=zone, days=frozenset({reduced}), factor=0.65)
    local_day = np.array([dt.datetime.fromtimestamp(t - 300, tz=ZoneInfo(zone)).date() for t in ts])
    begin = int(np.flatnonzero(local_day == reduced)[0]) + 42  # 07:00, re-levelled on the busier night
    lo = begin - int(14.5 * DAY / 600)
    commute = slice(begin, begin + 18)  # 07:00-10:00
    # Both regions declare a calendar (so neither guesses an analogue day); one names the reduced day.
    elsewhere = frozenset({dt.date(2015, 7, 1)})
    plain = SeasonalForecast.fit(timestamps=ts[lo:begin], values=values[lo:begin],
                                 calendar=Calendar(time_zone=zone, special_days=elsewhere))
    declared = Calendar(time_zone=zone, special_days=elsewhere, reduced_days=frozenset({reduced}))
    fit = SeasonalForecast.fit(timestamps=ts[lo:begin], values=values[lo:begin], calendar=declared)
    expected, ordinary = fit.predict_at(timestamps=ts[commute]).mean, plain.predict_at(timestamps=ts[commute]).mean
    assert np.allclose(expected / ordinary, 0.7, atol=0.02)  # its own weekday's shape, times calendar_day_level
    assert (values[commute] / ordinary).min() < 0.7  # read as an ordinary Tuesday: an alarm
    assert (values[commute] / expected).min() > 0.7  # read as a reduced day: none (the threshold is 0.7)


def test_after_weeks_of_reduced_days_the_working_days_keep_their_shape() -> None:
    zone = "America/New_York"
    # Two weeks whose working days are all reduced (the holiday season), then a Monday.
    ts = grid("2014-12-13T00:00", 17, 600, zone)
    season = frozenset(dt.date(2014, 12, 15) + dt.timedelta(days=k) for k in range(14)
                       if (dt.date(2014, 12, 15) + dt.timedelta(days=k)).weekday() < 5)
    values = commute_down(ts, zone=zone, days=season, factor=0.8)
    local_day = np.array([dt.datetime.fromtimestamp(t - 300, tz=ZoneInfo(zone)).date() for t in ts])
    begin = int(np.flatnonzero(local_day == dt.date(2014, 12, 29))[0])  # Monday 00:00, an ordinary day
    lo = begin - int(14.5 * DAY / 600)
    fit = SeasonalForecast.fit(timestamps=ts[lo:begin], values=values[lo:begin],
                               calendar=Calendar(time_zone=zone, reduced_days=season))
    monday = slice(begin, begin + 144)
    error = fit.predict_at(timestamps=ts[monday]).mean / values[monday] - 1
    # The working days' shape comes from the reduced days (weighed lightly), not from the
    # weekend, whose nights and mornings differ by far more.
    assert np.abs(error).max() < 0.3, float(np.abs(error).max())


# ---------------------------------------------------------------------------- held out, then accepted


def test_a_drop_held_out_is_not_learnt_and_is_learnt_once_accepted() -> None:
    zone = "Europe/Berlin"
    ts = grid("2015-02-01T00:00", 14.5, 600, zone)
    values = local_demand(ts, zone=zone)
    values[-36:] *= 0.5  # the last six hours run at half
    began = float(ts[-36])
    future = ts[-1] + 600 * np.arange(1, 7)
    truth = local_demand(future, zone=zone)
    calendar = Calendar(time_zone=zone)
    held = SeasonalForecast.fit(timestamps=ts, values=values, calendar=calendar, held_out_from=began)
    accepted = SeasonalForecast.fit(timestamps=ts, values=values, calendar=calendar, held_out_from=None)
    assert np.allclose(held.predict_at(timestamps=future).mean / truth, 1.0, atol=0.08)
    assert np.allclose(accepted.predict_at(timestamps=future).mean / truth, 0.5, atol=0.06)


def test_the_refit_holds_out_only_a_drop_detection_may_still_call_an_outage() -> None:
    from regionshift.api.models import Verdict
    from regionshift.decide.detection import RegionVerdict

    start = dt.datetime(2026, 1, 5, 12, tzinfo=dt.timezone.utc)
    for verdict, held in ((Verdict.UNHEALTHY, True), (Verdict.HELD_BACK, True), (Verdict.UNKNOWN, False),
                          (Verdict.HEALTHY, False)):
        judged = RegionVerdict(region="r", verdict=verdict, message="", drop_started_at=start)
        assert held_out_from(judged) == (start.timestamp() if held else None), verdict
    assert held_out_from(None) is None


# ---------------------------------------------------------------------------- the real series


def test_the_taxi_series_is_read_in_new_york_time_with_the_repeated_hour_split() -> None:
    series = load_replay("nyc-taxi")
    assert series.step_seconds == 1800
    assert np.all(np.diff(series.timestamps) == 1800)
    assert np.isfinite(series.values).all()
    assert series.values.size == 10_320 + 2  # the hour daylight saving time repeats: two more samples
    raw = np.loadtxt(REPLAY_DATA / "nyc-taxi" / "nyc_taxi.csv", delimiter=",", skiprows=1, usecols=1)
    assert series.values.sum() == pytest.approx(raw.sum())
    assert [name for name, _, _ in series.windows][1] == "Thanksgiving"


def test_the_taxi_region_declares_its_calendar_in_the_spec_format() -> None:
    series = load_replay("nyc-taxi")
    assert series.calendar.time_zone == "America/New_York"
    assert series.calendar.holidays is not None and series.calendar.holidays.country == "US"
    calendar = replay_calendar(series)
    days = np.array([(d - dt.date(1970, 1, 1)).days for d in (dt.date(2014, 12, 23), dt.date(2014, 12, 25))])
    assert list(calendar.is_reduced_day(days)) == [True, False]  # Christmas is a holiday
    assert all(d.weekday() < 5 for d in series.calendar.reduced_days)  # working days only


def test_a_reduced_day_turning_unhealthy_is_no_holiday_miss() -> None:
    from regionshift.api.models import DetectionPolicy
    from regionshift.local.backtest import HolidayOutcome, InjectionOutcome, ReplayReport

    series = load_replay("nyc-taxi")
    caught = tuple(InjectionOutcome(depth=d, start=0.0, delay_samples=3) for d in (0.4, 0.6) for _ in range(20))

    def report(*days: HolidayOutcome) -> ReplayReport:
        return ReplayReport(series=series, calendar=replay_calendar(series), history_days=14, refit_interval_seconds=3600,
                            policy=DetectionPolicy(), replay_start=0.0, evaluations=1, fits=1, false_evacuations=(),
                            unhealthy_hours_outside=0.0, windows=(), holidays=days, injections=caught, seed=7)

    reduced = HolidayOutcome(day=dt.date(2014, 12, 26), name="reduced day", in_window="Christmas", reduced=True,
                             unhealthy=True, lowest_ratio=0.4)
    holiday = HolidayOutcome(day=dt.date(2014, 12, 25), name="Christmas Day", in_window="Christmas", reduced=False,
                             unhealthy=True, lowest_ratio=0.4)
    assert report(reduced).misses == []  # forecast lower by design; outside a window it is a false evacuation
    assert report(reduced, holiday).misses == ["holidays or special days turned Unhealthy: 2014-12-25 Christmas Day"]


def test_a_reduced_day_is_not_lowered_twice_after_a_quiet_day() -> None:
    zone = "America/New_York"
    # Monday at 60 % all day, Tuesday too until 10:00, then as usual: the season's quiet
    # mornings before an afternoon like an ordinary one.
    quiet, busy = dt.date(2014, 12, 29), dt.date(2014, 12, 30)
    ts = grid("2014-12-10T00:00", 21, 600, zone)
    values = local_demand(ts, zone=zone)
    local_day = np.array([dt.datetime.fromtimestamp(t - 300, tz=ZoneInfo(zone)).date() for t in ts])
    tuesday = int(np.flatnonzero(local_day == busy)[0])
    values[local_day == quiet] *= 0.6
    values[tuesday : tuesday + 60] *= 0.6
    begin = tuesday + 78  # Tuesday 13:00
    lo = begin - int(14.5 * DAY / 600)
    calendar = Calendar(time_zone=zone, reduced_days=frozenset({quiet, busy}))
    fit = SeasonalForecast.fit(timestamps=ts[lo:begin], values=values[lo:begin], calendar=calendar)
    afternoon = slice(begin, begin + 24)
    ratio = fit.predict_at(timestamps=ts[afternoon]).mean / values[afternoon]
    # The last three hours set the level, times 0.7; the quiet last whole day does not hold
    # it lower (about 0.7 × 0.6 × 1.16 ≈ 0.49 if it did).
    assert np.allclose(ratio, 0.7, atol=0.07), (float(ratio.min()), float(ratio.max()))
