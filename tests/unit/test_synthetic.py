"""The synthetic history has the properties the backtest relies on, and faults land where asked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from regionshift.local.synthetic import (
    DAY_SECONDS,
    DEFAULT_REGIONS,
    Fault,
    FaultKind,
    RegionProfile,
    SyntheticConfig,
    generate_history,
)

START = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
CLEAN = SyntheticConfig(
    level_change_sd=0.0, jitter_sd=0.0, counting_noise=False, growth_per_year=0.0, bursts_per_day=0.0
)
UTC_REGION = (RegionProfile(name="zero", utc_offset_hours=0.0, peak=100.0),)


def test_same_seed_same_history_and_other_seed_differs() -> None:
    one = generate_history(start=START, days=2, seed=3)
    two = generate_history(start=START, days=2, seed=3)
    three = generate_history(start=START, days=2, seed=4)
    for name in one.values:
        np.testing.assert_array_equal(one.values[name], two.values[name])
        assert not np.array_equal(one.values[name], three.values[name])


def test_region_streams_do_not_depend_on_the_other_regions() -> None:
    alone = generate_history(start=START, days=1, seed=3, regions=DEFAULT_REGIONS[:1])
    together = generate_history(start=START, days=1, seed=3)
    name = DEFAULT_REGIONS[0].name
    np.testing.assert_array_equal(alone.values[name], together.values[name])


def test_timestamps_are_regular_and_follow_the_start() -> None:
    history = generate_history(start=START, days=1, seed=1, step_seconds=30)
    assert history.timestamps.size == 2880
    assert history.timestamps[0] == START + 30
    assert np.all(np.diff(history.timestamps) == 30)


def test_daily_shape_peaks_in_the_local_evening_and_bottoms_before_dawn() -> None:
    history = generate_history(start=START, days=1, seed=1, config=CLEAN)
    for region in DEFAULT_REGIONS:
        local_hours = ((history.timestamps + region.utc_offset_hours * 3600) % DAY_SECONDS) / 3600
        rate = history.rates[region.name]
        evening = rate[(local_hours > 20) & (local_hours < 22)].mean()
        dawn = rate[(local_hours > 3) & (local_hours < 5)].mean()
        assert evening > 3 * dawn
        assert evening == pytest.approx(region.peak, rel=0.1)


def test_weekends_run_above_weekdays() -> None:
    history = generate_history(start=START, days=7, seed=1, regions=UTC_REGION, config=CLEAN)
    daily = history.rates["zero"].reshape(7, -1).mean(axis=1)  # Monday .. Sunday
    assert daily[5:].min() > daily[:5].max()


def test_day_to_day_level_changes_are_about_fifteen_percent() -> None:
    config = SyntheticConfig(jitter_sd=0.0, counting_noise=False, growth_per_year=0.0, weekend_level=1.0)
    history = generate_history(start=START, days=210, seed=5, regions=UTC_REGION, config=config)
    # Same-weekday-type pairs only: compare each weekday with the weekday before it.
    daily = np.log(history.rates["zero"].reshape(210, -1).mean(axis=1))
    weekday = (np.arange(210) % 7) < 5
    pairs = weekday[1:] & weekday[:-1]
    changes = np.diff(daily)[pairs]
    assert 0.10 < float(np.std(changes)) < 0.20


@pytest.mark.parametrize("overdispersion", [1.0, 1.5, 3.0])
def test_counting_noise_has_the_overdispersion_asked_for(overdispersion: float) -> None:
    # 1 is Poisson; more is negative-binomial with variance overdispersion × mean.
    config = SyntheticConfig(
        level_change_sd=0.0, jitter_sd=0.0, growth_per_year=0.0, bursts_per_day=0.0, overdispersion=overdispersion
    )
    history = generate_history(start=START, days=3, seed=2, regions=UTC_REGION, config=config)
    counts = history.values["zero"] * 60
    expected = history.rates["zero"] * 60
    z = (counts - expected) / np.sqrt(expected)
    assert float(np.mean(z)) == pytest.approx(0.0, abs=0.05)
    assert float(np.var(z)) == pytest.approx(overdispersion, rel=0.1)
    assert np.allclose(counts, np.round(counts))


def test_bursts_come_now_and_then_mostly_upward_and_dips_stay_shallow() -> None:
    config = SyntheticConfig(level_change_sd=0.0, jitter_sd=0.0, growth_per_year=0.0, counting_noise=False)
    history = generate_history(start=START, days=20, seed=4, step_seconds=5, regions=UTC_REGION, config=config)
    factor = history.values["zero"] / history.rates["zero"]
    touched = np.abs(np.log(factor)) > 1e-9
    # About 8 bursts a day of about 30 s: roughly 0.3 % of the time, each 5-s sample.
    assert 0.001 < float(touched.mean()) < 0.01
    assert float(factor.max()) > 1.5
    assert float((factor > 1.0).sum()) > float((factor < 1.0).sum())
    assert float(factor.min()) > 0.6  # a sag, never an outage


def test_no_bursts_when_turned_off() -> None:
    config = SyntheticConfig(jitter_sd=0.0, counting_noise=False, bursts_per_day=0.0)
    history = generate_history(start=START, days=2, seed=4, regions=UTC_REGION, config=config)
    np.testing.assert_allclose(history.values["zero"], history.rates["zero"])


def test_holiday_is_shaped_like_a_weekend_and_busier() -> None:
    wednesday = 2
    history = generate_history(start=START, days=14, seed=1, regions=UTC_REGION, config=CLEAN, holidays=(wednesday,))
    days = history.rates["zero"].reshape(14, -1)
    holiday, week_later = days[wednesday], days[wednesday + 7]
    assert holiday.mean() > 1.2 * week_later.mean()
    afternoon = slice(14 * 60, 16 * 60)
    saturday = days[5]
    assert holiday[afternoon].mean() / holiday.mean() == pytest.approx(
        saturday[afternoon].mean() / saturday.mean(), rel=0.05
    )


def test_slow_growth_compounds() -> None:
    config = SyntheticConfig(level_change_sd=0.0, jitter_sd=0.0, counting_noise=False, growth_per_year=1.0)
    history = generate_history(start=START, days=35, seed=1, regions=UTC_REGION, config=config)
    weeks = history.rates["zero"].reshape(5, -1).mean(axis=1)
    assert weeks[4] / weeks[0] == pytest.approx(math.exp(math.log(2.0) * 28 / 365), rel=0.01)


def test_regional_drop_scales_only_its_region_over_its_interval() -> None:
    fault = Fault(kind=FaultKind.REGIONAL_DROP, start=START + 3600, duration_seconds=600, regions=("us-east",), depth=0.5)
    history = generate_history(start=START, days=0.25, seed=1, config=CLEAN, faults=(fault,))
    ts = history.timestamps
    inside = (ts > fault.start) & (ts <= fault.end)
    assert int(inside.sum()) == 10
    np.testing.assert_allclose(history.values["us-east"][inside], 0.5 * history.rates["us-east"][inside])
    np.testing.assert_allclose(history.values["us-east"][~inside], history.rates["us-east"][~inside])
    np.testing.assert_allclose(history.values["eu-west"], history.rates["eu-west"])


def test_global_drop_hits_every_region() -> None:
    fault = Fault(kind=FaultKind.GLOBAL_DROP, start=START + 3600, duration_seconds=600, depth=0.3)
    history = generate_history(start=START, days=0.25, seed=1, config=CLEAN, faults=(fault,))
    inside = (history.timestamps > fault.start) & (history.timestamps <= fault.end)
    for name in history.values:
        np.testing.assert_allclose(history.values[name][inside], 0.7 * history.rates[name][inside])


def test_gap_leaves_nan_and_rollout_drop_records_its_rollout() -> None:
    gap = Fault(kind=FaultKind.GAP, start=START + 3600, duration_seconds=300, regions=("us-west",))
    drop = Fault(
        kind=FaultKind.ROLLOUT_DROP, start=START + 7200, duration_seconds=600, regions=("eu-west",), depth=0.6
    )
    history = generate_history(start=START, days=0.25, seed=1, faults=(gap, drop))
    missing = np.isnan(history.values["us-west"])
    assert int(missing.sum()) == 5
    assert np.all(history.timestamps[missing] > gap.start)
    assert history.rollouts["eu-west"] == (START + 7200 - 120,)
    assert history.last_rollout(region="eu-west", at=START + 7100) == START + 7080
    assert history.last_rollout(region="eu-west", at=START + 7000) is None
    assert history.last_rollout(region="us-east", at=START + 9000) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": FaultKind.REGIONAL_DROP, "start": 0.0, "duration_seconds": 0.0}, "duration"),
        ({"kind": FaultKind.REGIONAL_DROP, "start": 0.0, "duration_seconds": 60.0, "depth": 1.5}, "depth"),
        ({"kind": FaultKind.ROLLOUT_DROP, "start": 0.0, "duration_seconds": 60.0, "regions": ("a", "b")}, "one region"),
    ],
)
def test_fault_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault(**kwargs)  # type: ignore[arg-type]


def test_unknown_fault_region_is_rejected() -> None:
    fault = Fault(kind=FaultKind.GAP, start=START, duration_seconds=60, regions=("mars",))
    with pytest.raises(ValueError, match="unknown regions"):
        generate_history(start=START, days=0.1, seed=1, faults=(fault,))
