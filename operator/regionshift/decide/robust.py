"""The few robust and least-squares statistics the forecast and the sizing fit use, in NumPy.

They were statsmodels calls (``robust.norms.TukeyBiweight``, ``robust.scale.mad``, ``WLS``
and ``OLS``). Importing statsmodels pulls in scipy and pandas: about 125 MiB of the
operator's resident memory before it did any work, for four formulas of a line or two
each. These are the same formulas (the results agree with statsmodels' to rounding; the
unit tests compare them), so the operator's memory is its work's, not its imports'.

Pure functions over NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "GAUSSIAN_3_4",
    "TUKEY_C",
    "LineFit",
    "least_squares_line",
    "mad",
    "tukey_biweight_weights",
    "weighted_slope_through_origin",
]

GAUSSIAN_3_4 = 0.6744897501960817
"""The standard normal's 3/4 quantile: a MAD divided by it estimates a normal's sigma."""
TUKEY_C = 4.685
"""Tukey's biweight tuning constant (95 % efficiency under normal errors), statsmodels' default."""


def tukey_biweight_weights(z: np.ndarray, *, c: float = TUKEY_C) -> np.ndarray:
    """``(1 - (z/c)²)²`` where ``|z| <= c``, else 0 (NaN stays NaN)."""
    z = np.asarray(z, dtype=np.float64)
    return (1.0 - (z / c) ** 2) ** 2 * np.less_equal(np.abs(z), c)


def mad(a: np.ndarray, *, center: float | None = None) -> float:
    """Median absolute deviation from ``center`` (default: the median), scaled to a normal's sigma.

    NaN for an empty array.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return float("nan")
    middle = float(np.median(a)) if center is None else center
    return float(np.median(np.abs(a - middle) / GAUSSIAN_3_4))


def weighted_slope_through_origin(y: np.ndarray, x: np.ndarray, *, weights: np.ndarray) -> float:
    """The weighted least-squares slope of ``y = slope × x`` (no intercept)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    return float(np.sum(w * x * y) / np.sum(w * x * x))


@dataclass(frozen=True, kw_only=True)
class LineFit:
    """``y = intercept + slope × x`` by ordinary least squares, and its R²."""

    intercept: float
    slope: float
    r_squared: float
    """1 − residual / total sum of squares (NaN when y does not vary)."""


def least_squares_line(x: np.ndarray, y: np.ndarray) -> LineFit:
    """Ordinary least squares of ``y`` on ``x`` with an intercept (``x`` must vary)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    dx = x - np.mean(x)
    dy = y - np.mean(y)
    slope = float(np.dot(dx, dy) / np.dot(dx, dx))
    intercept = float(np.mean(y) - slope * np.mean(x))
    total = float(np.dot(dy, dy))
    residual = y - intercept - slope * x
    with np.errstate(divide="ignore", invalid="ignore"):
        r_squared = float(1.0 - np.dot(residual, residual) / total) if total > 0 else float("nan")
    return LineFit(intercept=intercept, slope=slope, r_squared=r_squared)
