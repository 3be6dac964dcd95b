"""Sizing: replicas-on-traffic regression and the dark replica count derived from it."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest

from regionshift.errors import NoData
from regionshift.api.models import DarkCapacityPolicy, ModelFit
from regionshift.decide.sizing import DarkSizing, FitMethod, ScalingFit, dark_replicas, fit_scaling

AT = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def line(*, intercept: float = 2.0, slope: float = 0.1) -> ScalingFit:
    return ScalingFit(
        intercept=intercept, slope=slope, r_squared=0.99, samples=100, fitted_at=AT, method=FitMethod.ORDINARY_LEAST_SQUARES
    )


def test_ordinary_least_squares_recovers_the_line() -> None:
    rng = np.random.default_rng(1)
    traffic = rng.uniform(20, 400, size=500)
    replicas = np.round(3.0 + 0.05 * traffic + rng.normal(0, 0.5, size=500))
    fit = fit_scaling(traffic=traffic, replicas=replicas, fitted_at=AT)
    assert fit.method is FitMethod.ORDINARY_LEAST_SQUARES
    assert fit.intercept == pytest.approx(3.0, abs=0.2)
    assert fit.slope == pytest.approx(0.05, rel=0.02)
    assert fit.r_squared > 0.95
    assert fit.samples == 500
    assert fit.fitted_at == AT
    assert fit.replicas_for(traffic=100) == pytest.approx(8.0, abs=0.3)


def test_fit_as_dark_cluster_status() -> None:
    model = line().to_model()
    assert isinstance(model, ModelFit)
    assert model.wire() == {
        "intercept": 2.0,
        "slopeReplicasPerUnit": 0.1,
        "rSquared": 0.99,
        "samples": 100,
        "fittedAt": "2026-01-05T12:00:00Z",
        "method": "OrdinaryLeastSquares",
    }


def test_missing_pairs_are_dropped() -> None:
    traffic = [10.0, 20.0, float("nan"), 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0]
    replicas = [2.0, 3.0, 4.0, float("inf"), 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0]
    fit = fit_scaling(traffic=traffic, replicas=replicas, fitted_at=AT)
    assert fit.samples == 10
    assert fit.slope == pytest.approx(0.1)
    assert fit.intercept == pytest.approx(1.0)
    assert fit.r_squared == pytest.approx(1.0)


def test_too_little_history_is_no_data() -> None:
    with pytest.raises(NoData, match="pairs"):
        fit_scaling(traffic=[1.0, 2.0], replicas=[1.0, 2.0], fitted_at=AT)
    with pytest.raises(NoData, match="no traffic"):
        fit_scaling(traffic=[0.0] * 20, replicas=[3.0] * 20, fitted_at=AT)
    with pytest.raises(ValueError, match="equal length"):
        fit_scaling(traffic=[1.0, 2.0], replicas=[1.0], fitted_at=AT)


def test_fixed_replica_count_falls_back_to_proportional_scaling() -> None:
    traffic = np.linspace(50, 150, 50)
    fit = fit_scaling(traffic=traffic, replicas=np.full(50, 10.0), fitted_at=AT)
    assert fit.method is FitMethod.PROPORTIONAL
    assert fit.intercept == 0.0
    assert fit.slope == pytest.approx(0.1)  # 10 replicas for 100 on average
    assert 0.0 <= fit.r_squared <= 1.0


def test_flat_traffic_falls_back_to_proportional_scaling() -> None:
    fit = fit_scaling(traffic=np.full(30, 80.0), replicas=np.full(30, 8.0), fitted_at=AT)
    assert fit.method is FitMethod.PROPORTIONAL
    assert fit.slope == pytest.approx(0.1)
    assert fit.r_squared == 0.0


def test_dark_replicas_absorb_a_share_of_the_largest_peer() -> None:
    # own peak 100 needs 2 + 10 = 12; half of b's 300 adds 15 replicas; headroom 1.2 makes
    # 18; the main Deployment runs 14, i.e. 2 spare; 18 - 2 = 16.
    sizing = dark_replicas(
        fit=line(),
        policy=DarkCapacityPolicy(headroom_ratio=1.2),
        own_peak=100.0,
        peer_peaks={"a": 200.0, "b": 300.0},
        share=0.5,
        current_replicas=14,
    )
    assert isinstance(sizing, DarkSizing)
    assert sizing.largest_peer == "b"
    assert sizing.peer_peak == 300.0
    assert sizing.need_replicas == pytest.approx(15.0)
    assert sizing.spare_replicas == pytest.approx(2.0)
    assert sizing.forecast_replicas == 16
    assert sizing.desired_replicas == 16
    assert not sizing.clamped
    assert "b's peak 300" in sizing.message


def test_fractional_need_rounds_up() -> None:
    sizing = dark_replicas(
        fit=line(slope=0.013),
        policy=DarkCapacityPolicy(headroom_ratio=1.0),
        own_peak=100.0,
        peer_peaks={"a": 100.0},
        share=1.0,
        current_replicas=0,
    )
    assert sizing.need_replicas == pytest.approx(1.3)
    assert sizing.forecast_replicas == 2


def test_underprovisioned_main_has_no_spare() -> None:
    sizing = dark_replicas(
        fit=line(),
        policy=DarkCapacityPolicy(headroom_ratio=1.0),
        own_peak=100.0,
        peer_peaks={"a": 100.0},
        share=1.0,
        current_replicas=5,
    )
    assert sizing.spare_replicas == 0.0
    assert sizing.forecast_replicas == 10


def test_spare_capacity_can_cover_the_whole_need() -> None:
    sizing = dark_replicas(
        fit=line(),
        policy=DarkCapacityPolicy(headroom_ratio=1.0, min_replicas=1),
        own_peak=100.0,
        peer_peaks={"a": 50.0},
        share=1.0,
        current_replicas=40,
    )
    assert sizing.forecast_replicas == 0
    assert sizing.desired_replicas == 1
    assert sizing.clamped
    assert "clamped to 1" in sizing.message


def test_max_replicas_caps_the_dark_cluster() -> None:
    sizing = dark_replicas(
        fit=line(slope=1.0),
        policy=DarkCapacityPolicy(max_replicas=20),
        own_peak=10.0,
        peer_peaks={"a": 1000.0},
        share=1.0,
        current_replicas=0,
    )
    assert sizing.forecast_replicas == math.ceil(1000 * 1.2)
    assert sizing.desired_replicas == 20


def test_no_peers_needs_nothing() -> None:
    sizing = dark_replicas(
        fit=line(), policy=DarkCapacityPolicy(min_replicas=2), own_peak=100.0, peer_peaks={}, share=1.0, current_replicas=3
    )
    assert sizing.largest_peer is None
    assert sizing.forecast_replicas == 0
    assert sizing.desired_replicas == 2


def test_negative_intercept_never_needs_negative_replicas() -> None:
    fit = line(intercept=-5.0, slope=0.1)
    assert fit.replicas_for(traffic=10.0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"share": 1.5}, "share"),
        ({"own_peak": -1.0}, "negative"),
        ({"peer_peaks": {"a": -1.0}}, "negative"),
        ({"current_replicas": -1}, "current_replicas"),
    ],
)
def test_bad_input_is_rejected(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "fit": line(),
        "policy": DarkCapacityPolicy(),
        "own_peak": 100.0,
        "peer_peaks": {"a": 100.0},
        "share": 0.5,
        "current_replicas": 3,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        dark_replicas(**arguments)  # type: ignore[arg-type]
