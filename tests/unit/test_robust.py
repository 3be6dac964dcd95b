"""The NumPy statistics of regionshift.decide.robust agree with statsmodels' (which the operator no longer imports)."""

from __future__ import annotations

import numpy as np
import pytest

from regionshift.decide.robust import (
    least_squares_line,
    mad,
    tukey_biweight_weights,
    weighted_slope_through_origin,
)

sm = pytest.importorskip("statsmodels.api")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_tukey_biweight_weights_match_statsmodels(rng: np.random.Generator) -> None:
    z = np.concatenate([rng.normal(0, 3, 500), [0.0, 4.685, -4.685, 4.7, -10.0]])
    assert np.allclose(tukey_biweight_weights(z), sm.robust.norms.TukeyBiweight().weights(z), rtol=0, atol=1e-15)


def test_mad_matches_statsmodels_with_either_centre(rng: np.random.Generator) -> None:
    a = rng.standard_t(3, 1001) + 2.0
    assert mad(a) == pytest.approx(float(sm.robust.scale.mad(a)), rel=1e-12)
    assert mad(a, center=0.0) == pytest.approx(float(sm.robust.scale.mad(a, center=0.0)), rel=1e-12)


def test_weighted_slope_matches_statsmodels_wls(rng: np.random.Generator) -> None:
    x = rng.normal(0, 5, 300)
    y = 0.3 * x + rng.normal(0, 1, 300)
    w = rng.uniform(0, 1, 300)
    w[:20] = 0.0
    expected = float(sm.WLS(y, x, weights=w).fit().params[0])
    assert weighted_slope_through_origin(y, x, weights=w) == pytest.approx(expected, rel=1e-10)


def test_least_squares_line_matches_statsmodels_ols(rng: np.random.Generator) -> None:
    x = rng.uniform(10, 100, 4000)
    y = 2.0 + 0.05 * x + rng.normal(0, 0.3, 4000)
    result = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
    line = least_squares_line(x, y)
    assert line.intercept == pytest.approx(float(result.params[0]), rel=1e-9)
    assert line.slope == pytest.approx(float(result.params[1]), rel=1e-9)
    assert line.r_squared == pytest.approx(float(result.rsquared), rel=1e-9)
