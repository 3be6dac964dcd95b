"""The seasonal forecast follows daily and weekly shape, re-levels, survives gaps, and caches."""

from __future__ import annotations

import numpy as np
import pytest

from regionshift.errors import NoData
from regionshift.decide.forecast import ForecastCache, ForecastConfig, SeasonalForecast
from regionshift.local.synthetic import DAY_SECONDS, RegionProfile, SyntheticConfig, generate_history

START = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
HISTORY = int(14.5 * 1440)
CLEAN = SyntheticConfig(level_change_sd=0.0, jitter_sd=0.0, counting_noise=False, growth_per_year=0.0)
ONE = (RegionProfile(name="r", utc_offset_hours=-5.0, peak=200.0),)


def fit_until(history, name: str, end: int, **kwargs) -> SeasonalForecast:  # type: ignore[no-untyped-def]
    return SeasonalForecast.fit(
        timestamps=history.timestamps[end - HISTORY : end], values=history.values[name][end - HISTORY : end], **kwargs
    )


@pytest.fixture(scope="module")
def clean():  # type: ignore[no-untyped-def]
    return generate_history(start=START, days=22, seed=1, config=CLEAN)


@pytest.fixture(scope="module")
def noisy():  # type: ignore[no-untyped-def]
    return generate_history(start=START, days=22, seed=2)


def test_clean_weekly_shape_is_forecast_closely(clean) -> None:  # type: ignore[no-untyped-def]
    # Every six hours over a week, the next three hours: weekdays, weekends and their
    # transitions, at every time of day, for every region.
    worst = 0.0
    for end in range(16 * 1440, 22 * 1440 - 180, 360):
        for name in clean.values:
            prediction = fit_until(clean, name, end).predict_at(timestamps=clean.timestamps[end : end + 180])
            worst = max(worst, float(np.max(np.abs(prediction.mean / clean.rates[name][end : end + 180] - 1))))
    assert worst < 0.08


def test_noisy_next_hour_is_forecast_within_a_few_percent(noisy) -> None:  # type: ignore[no-untyped-def]
    errors, covered = [], []
    for end in range(16 * 1440 + 17, 22 * 1440 - 60, 240):
        for name in noisy.values:
            prediction = fit_until(noisy, name, end).predict_at(timestamps=noisy.timestamps[end : end + 60])
            errors.append(float(np.median(np.abs(prediction.mean / noisy.rates[name][end : end + 60] - 1))))
            observed = noisy.values[name][end : end + 60]
            covered.append(float(np.mean((observed >= prediction.lower) & (observed <= prediction.upper))))
    assert float(np.median(errors)) < 0.04
    assert float(np.percentile(errors, 95)) < 0.12
    assert 0.85 < float(np.mean(covered)) <= 1.0


def test_interval_brackets_the_mean(noisy) -> None:  # type: ignore[no-untyped-def]
    forecast = fit_until(noisy, "us-east", 20 * 1440)
    prediction = forecast.predict(start=noisy.timestamps[20 * 1440], end=noisy.timestamps[20 * 1440] + 3600, step_seconds=60)
    assert prediction.mean.size == 61
    assert np.all(prediction.lower < prediction.mean)
    assert np.all(prediction.mean < prediction.upper)
    assert forecast.sigma > 0


def test_expected_matches_predict_at(noisy) -> None:  # type: ignore[no-untyped-def]
    forecast = fit_until(noisy, "eu-west", 20 * 1440)
    at = float(noisy.timestamps[20 * 1440 + 7])
    one = forecast.expected(at=at)
    many = forecast.predict_at(timestamps=[at])
    assert one.at == at
    assert one.mean == pytest.approx(float(many.mean[0]))
    assert one.lower == pytest.approx(float(many.lower[0]))
    assert one.upper == pytest.approx(float(many.upper[0]))


def test_peak_of_a_prediction(noisy) -> None:  # type: ignore[no-untyped-def]
    forecast = fit_until(noisy, "us-west", 20 * 1440)
    prediction = forecast.predict(start=noisy.timestamps[20 * 1440], end=noisy.timestamps[20 * 1440] + 86_400, step_seconds=300)
    assert prediction.peak() == pytest.approx(float(prediction.mean.max()))
    assert prediction.peak(upper=True) > prediction.peak()
    empty = forecast.predict_at(timestamps=np.array([]))
    with pytest.raises(ValueError, match="empty"):
        empty.peak()


def test_gaps_in_history_do_not_hurt_the_forecast(clean) -> None:  # type: ignore[no-untyped-def]
    end = 20 * 1440 + 600
    values = clean.values["us-east"][end - HISTORY : end].copy()
    rng = np.random.default_rng(0)
    for start in rng.integers(0, values.size - 180, size=12):
        values[start : start + 180] = np.nan  # twelve three-hour gaps
    values[-30:-10] = np.nan  # and a gap just before the end
    forecast = SeasonalForecast.fit(timestamps=clean.timestamps[end - HISTORY : end], values=values)
    prediction = forecast.predict_at(timestamps=clean.timestamps[end : end + 120])
    assert np.max(np.abs(prediction.mean / clean.rates["us-east"][end : end + 120] - 1)) < 0.08


def test_absent_samples_count_as_missing(clean) -> None:  # type: ignore[no-untyped-def]
    end = 20 * 1440
    ts = clean.timestamps[end - HISTORY : end]
    values = clean.values["eu-west"][end - HISTORY : end].copy()
    values[1000:1300] = np.nan
    keep = np.isfinite(values)
    with_nan = SeasonalForecast.fit(timestamps=ts, values=values, step_seconds=60)
    without = SeasonalForecast.fit(timestamps=ts[keep], values=values[keep], step_seconds=60)
    probe = clean.timestamps[end : end + 60]
    np.testing.assert_allclose(with_nan.predict_at(timestamps=probe).mean, without.predict_at(timestamps=probe).mean)


def test_forecast_follows_a_new_level_within_hours(clean) -> None:  # type: ignore[no-untyped-def]
    # A rise is followed at once up to levelAboveDay over the last whole day's level, and
    # wholly once it has lasted half a day: a few hours above the shape never lift the
    # forecast of the rest of the day more than that (the safe side for detection).
    end = 20 * 1440 + 300
    usual = fit_until(clean, "us-east", end)
    for hours, low, high in ((6, 1.12, 1.25), (14, 1.25, 1.36)):
        values = clean.values["us-east"][end - HISTORY : end].copy()
        values[-hours * 60 :] *= 1.3  # the last hours run 30 % high
        forecast = SeasonalForecast.fit(timestamps=clean.timestamps[end - HISTORY : end], values=values)
        prediction = forecast.predict_at(timestamps=clean.timestamps[end : end + 60])
        ratio = prediction.mean / clean.rates["us-east"][end : end + 60]
        assert np.all((low < ratio) & (ratio < high)), (hours, ratio.min(), ratio.max())
        assert low < np.exp(forecast.level - usual.level) < high


def test_a_short_outage_at_the_end_does_not_drag_the_forecast(clean) -> None:  # type: ignore[no-untyped-def]
    end = 20 * 1440 + 300
    values = clean.values["eu-west"][end - HISTORY : end].copy()
    values[-30:] *= 0.3  # the last 30 minutes lost 70 %
    forecast = SeasonalForecast.fit(timestamps=clean.timestamps[end - HISTORY : end], values=values)
    prediction = forecast.predict_at(timestamps=clean.timestamps[end : end + 30])
    assert np.all(np.abs(prediction.mean / clean.rates["eu-west"][end : end + 30] - 1) < 0.06)


def test_a_holiday_is_forecast_like_a_weekend_day() -> None:
    # Thursday 2026-01-22 is a holiday in the region (local day index 18 from Sunday the 4th).
    history = generate_history(start=START, days=19, seed=1, regions=ONE, config=CLEAN, holidays=(18,))
    local_evening = int((17 + 0.75 + 5 / 24) * 1440)  # Thursday 18:00 local, 23:00 UTC
    truth = history.rates["r"][local_evening : local_evening + 120]
    probe = history.timestamps[local_evening : local_evening + 120]
    forecast = fit_until(history, "r", local_evening)
    assert forecast.shift_days == 2  # Saturday's shape
    analogue_error = np.max(np.abs(forecast.predict_at(timestamps=probe).mean / truth - 1))
    never = fit_until(history, "r", local_evening, config=ForecastConfig(analogue_margin=1.0))
    assert never.shift_days == 0
    own_error = np.max(np.abs(never.predict_at(timestamps=probe).mean / truth - 1))
    assert analogue_error < 0.06 < own_error


def test_less_than_a_week_of_history_falls_back_to_the_daily_shape() -> None:
    history = generate_history(start=START, days=5, seed=1, regions=ONE, config=CLEAN)
    end = 4 * 1440
    forecast = SeasonalForecast.fit(timestamps=history.timestamps[:end], values=history.values["r"][:end])
    prediction = forecast.predict_at(timestamps=history.timestamps[end : end + 240])
    assert np.max(np.abs(prediction.mean / history.rates["r"][end : end + 240] - 1)) < 0.05


def test_growth_is_measured_not_confused_with_the_week() -> None:
    config = SyntheticConfig(level_change_sd=0.0, jitter_sd=0.0, counting_noise=False, growth_per_year=3.0)
    history = generate_history(start=START, days=15, seed=1, regions=ONE, config=config)
    forecast = SeasonalForecast.fit(timestamps=history.timestamps, values=history.values["r"])
    assert forecast.growth_per_day == pytest.approx(4.0 ** (1 / 365) - 1, rel=0.2)
    flat = generate_history(start=START, days=15, seed=1, regions=ONE, config=CLEAN)
    assert abs(SeasonalForecast.fit(timestamps=flat.timestamps, values=flat.values["r"]).growth_per_day) < 0.001


def test_too_little_history_is_no_data() -> None:
    ts = START + 60.0 * np.arange(1, 300)
    with pytest.raises(NoData):
        SeasonalForecast.fit(timestamps=ts, values=np.full(ts.size, 5.0))
    with pytest.raises(NoData):
        SeasonalForecast.fit(timestamps=ts, values=np.full(ts.size, np.nan))


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="equal length"):
        SeasonalForecast.fit(timestamps=[1.0, 2.0], values=[1.0])
    with pytest.raises(ValueError, match="ascending"):
        SeasonalForecast.fit(timestamps=[3.0, 2.0, 1.0], values=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="interval"):
        ForecastConfig(interval=1.0)
    with pytest.raises(ValueError, match="divide a day"):
        ForecastConfig(fit_step_seconds=7000)
    with pytest.raises(ValueError, match="level_window_seconds"):
        ForecastConfig(level_window_seconds=10 * 3600.0)
    with pytest.raises(ValueError, match="analogue_margin"):
        ForecastConfig(analogue_margin=1.5)
    with pytest.raises(ValueError, match="weekday_level_weight"):
        ForecastConfig(weekday_level_weight=-0.1)


def test_zeros_and_negative_values_forecast_zero() -> None:
    ts = START + 60.0 * np.arange(1, 3 * 1440)
    forecast = SeasonalForecast.fit(timestamps=ts, values=np.where(np.arange(ts.size) % 2, 0.0, -1.0))
    assert forecast.expected(at=ts[-1] + 60).mean == pytest.approx(0.0, abs=1e-6)


def test_cache_refits_only_when_due(clean) -> None:  # type: ignore[no-untyped-def]
    cache = ForecastCache(refit_interval_seconds=3600)
    assert cache.due(key="us-east", now=1000.0)
    assert cache.get(key="us-east") is None
    assert cache.fitted_at(key="us-east") is None
    forecast = fit_until(clean, "us-east", 20 * 1440)
    cache.put(key="us-east", forecast=forecast, now=1000.0)
    assert not cache.due(key="us-east", now=1000.0 + 3599)
    assert cache.due(key="us-east", now=1000.0 + 3600)
    assert cache.due(key="eu-west", now=1000.0)
    # A stale forecast is still served: the caller decides whether to refit.
    assert cache.get(key="us-east") is forecast
    assert cache.fitted_at(key="us-east") == 1000.0
    cache.put(key="eu-west", forecast=forecast, now=1500.0)
    assert len(cache) == 2
    cache.retain(keys={"eu-west"})
    assert len(cache) == 1
    assert cache.get(key="us-east") is None
    with pytest.raises(ValueError):
        ForecastCache(refit_interval_seconds=0)


def test_predict_validates_its_range(clean) -> None:  # type: ignore[no-untyped-def]
    forecast = fit_until(clean, "us-east", 20 * 1440)
    with pytest.raises(ValueError, match="step_seconds"):
        forecast.predict(start=0.0, end=10.0, step_seconds=0)
    with pytest.raises(ValueError, match="end"):
        forecast.predict(start=10.0, end=0.0, step_seconds=1)
    assert forecast.history_end == clean.timestamps[20 * 1440 - 1]
    assert forecast.samples == HISTORY
    assert DAY_SECONDS == 86_400


def test_a_busy_night_in_an_odd_week_strays_from_the_working_days_not_the_ordinary_one() -> None:
    # Working days are quiet at night (10), weekend nights are busy (300). One Wednesday
    # night of the two in the history runs 60 % busier (a holiday-season week). Against the
    # mean of all nights, which the weekend lifts, the ordinary Wednesday looks the odd one;
    # against the working days' nights the busy one strays, and the next Wednesday night
    # is forecast like an ordinary one.
    step = 1800.0
    ts = START + step * np.arange(1, 16 * 48 + 1)  # Monday 2026-01-05 to Tuesday the 20th, UTC
    start_of = ts - step
    hour = (start_of % DAY_SECONDS) / 3600.0
    weekday = ((start_of // DAY_SECONDS).astype(np.int64) + 3) % 7  # Monday 0
    weekend = weekday >= 5
    night = hour < 5.0
    values = np.where(night, np.where(weekend, 300.0, 10.0), np.where(weekend, 80.0, 100.0))
    busy_wednesday = (start_of >= START + 9 * DAY_SECONDS) & (start_of < START + 10 * DAY_SECONDS) & night
    values = np.where(busy_wednesday, 16.0, values)
    forecast = SeasonalForecast.fit(timestamps=ts, values=values, step_seconds=step)
    wednesday_night = START + 16 * DAY_SECONDS + step * np.arange(3, 9)  # 01:00-04:00
    assert np.all(np.abs(forecast.predict_at(timestamps=wednesday_night).mean / 10.0 - 1.0) < 0.15)
