"""Benchmark: fit and forecast 500 Deployments over 14 days of one-minute history.

Run: ``PYTHONPATH=operator python tests/benchmarks/bench_forecast.py [--series 500]``

For each series (one Deployment's traffic, each with its own size, time zone and noise)
it times, in one process:

* the seasonal forecast (:class:`regionshift.decide.forecast.SeasonalForecast`): fit on 14 days
  at one-minute steps (20,160 samples) and forecast the next hour;
* the scaling model (:func:`regionshift.decide.sizing.fit_scaling`): OLS of replicas on traffic
  over the same 14 days;
* a seasonal-naive baseline: the same minute a week earlier.

It prints wall-clock seconds, peak traced memory (``tracemalloc``, a separate pass) and the
process's peak resident set, and compares accuracy on the next hour against the
noise-free truth. ``--alternatives N`` also times statsmodels' MSTL and
UnobservedComponents on N series, the models the forecast module's docstring rejects.
Data generation is not timed.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
import warnings
from datetime import datetime, timezone

import numpy as np

from regionshift.decide.forecast import SeasonalForecast
from regionshift.decide.sizing import fit_scaling
from regionshift.local.synthetic import RegionProfile, generate_history

__all__ = ["main"]

START = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
HISTORY = 14 * 1440
HORIZON = 60


def _series(index: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One Deployment's 14 days of history plus the next hour, and its replica history."""
    rng = np.random.default_rng([seed, index])
    profile = RegionProfile(
        name=f"deployment-{index}",
        utc_offset_hours=float(rng.choice([-8.0, -5.0, 0.0, 1.0, 5.5, 9.0])),
        peak=float(rng.uniform(5.0, 400.0)),
    )
    history = generate_history(start=START, days=14 + HORIZON / 1440, seed=seed + index, regions=(profile,))
    values = history.values[profile.name]
    per_pod = float(rng.uniform(5.0, 20.0))
    replicas = np.ceil(values[:HISTORY] / per_pod) + rng.integers(0, 2, size=HISTORY)
    return history.timestamps, values, history.rates[profile.name], replicas


def _seasonal_naive(values: np.ndarray) -> np.ndarray:
    """Next hour = the same minutes one week earlier (one day earlier where that is missing)."""
    week = values[HISTORY - 7 * 1440 : HISTORY - 7 * 1440 + HORIZON]
    day = values[HISTORY - 1440 : HISTORY - 1440 + HORIZON]
    return np.where(np.isfinite(week), week, day)


def _time(series: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    fitted_at = datetime.fromtimestamp(START + 14 * 86_400, tz=timezone.utc)
    totals = {"forecast": 0.0, "sizing": 0.0, "naive": 0.0}
    errors: dict[str, list[float]] = {"forecast": [], "naive": []}
    for ts, values, rates, replicas in series:
        began = time.perf_counter()
        forecast = SeasonalForecast.fit(timestamps=ts[:HISTORY], values=values[:HISTORY], step_seconds=60)
        prediction = forecast.predict_at(timestamps=ts[HISTORY : HISTORY + HORIZON])
        totals["forecast"] += time.perf_counter() - began

        began = time.perf_counter()
        fit_scaling(traffic=values[:HISTORY], replicas=replicas, fitted_at=fitted_at)
        totals["sizing"] += time.perf_counter() - began

        began = time.perf_counter()
        naive = _seasonal_naive(values)
        totals["naive"] += time.perf_counter() - began

        truth = rates[HISTORY : HISTORY + HORIZON]
        errors["forecast"].append(float(np.mean(np.abs(prediction.mean / truth - 1))))
        errors["naive"].append(float(np.mean(np.abs(naive / truth - 1))))
    for name, values in errors.items():
        totals[f"{name}_mape"] = float(np.mean(values))
        totals[f"{name}_p95"] = float(np.percentile(values, 95))
    return totals


def _peak_memory(series: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> int:
    """Peak bytes traced while fitting and forecasting one series, the worst over all."""
    worst = 0
    tracemalloc.start()
    for ts, values, _, _ in series:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        forecast = SeasonalForecast.fit(timestamps=ts[:HISTORY], values=values[:HISTORY], step_seconds=60)
        forecast.predict_at(timestamps=ts[HISTORY : HISTORY + HORIZON])
        worst = max(worst, tracemalloc.get_traced_memory()[1] - baseline)
    tracemalloc.stop()
    return worst


def _alternatives(series: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Time statsmodels' MSTL and UnobservedComponents on 10-minute means of the same data."""
    from statsmodels.tsa.seasonal import MSTL
    from statsmodels.tsa.statespace.structural import UnobservedComponents

    for _, values, _, _ in series:
        tenmin = np.log(values[:HISTORY].reshape(-1, 10).mean(axis=1) + 1.0)
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mstl = MSTL(tenmin, periods=(144, 1008)).fit()
        print(f"  MSTL(144, 1008) on {tenmin.size} points: {time.perf_counter() - began:.2f} s,"
              f" seasonal components kept: {1 if mstl.seasonal.ndim == 1 else mstl.seasonal.shape[1]}")
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            UnobservedComponents(
                tenmin,
                level="local level",
                freq_seasonal=[{"period": 144, "harmonics": 10}, {"period": 1008, "harmonics": 3}],
            ).fit(disp=False, maxiter=50)
        print(f"  UnobservedComponents (2 trigonometric seasonals) on {tenmin.size} points:"
              f" {time.perf_counter() - began:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=500, help="Deployments to fit (default 500)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--alternatives", type=int, default=0, help="also time MSTL/UC on this many series")
    args = parser.parse_args()

    began = time.perf_counter()
    series = [_series(index, args.seed) for index in range(args.series)]
    generated = time.perf_counter() - began
    timing = _time(series)
    peak = _peak_memory(series)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    n = args.series
    print(f"{n} Deployments x 14 days of 1-minute history ({HISTORY} samples each); data generated in {generated:.1f} s")
    print(f"seasonal forecast, fit + next hour: {timing['forecast']:.2f} s total,"
          f" {1000 * timing['forecast'] / n:.2f} ms per Deployment")
    print(f"scaling model (OLS replicas ~ traffic): {timing['sizing']:.2f} s total,"
          f" {1000 * timing['sizing'] / n:.2f} ms per Deployment")
    print(f"seasonal-naive baseline (same minute last week): {timing['naive'] * 1000:.1f} ms total")
    print(f"time ratio forecast / seasonal-naive: {timing['forecast'] / max(timing['naive'], 1e-9):.0f}x")
    print(f"next-hour mean abs error vs the noise-free truth: forecast {100 * timing['forecast_mape']:.2f} %"
          f" (p95 {100 * timing['forecast_p95']:.2f} %), seasonal-naive {100 * timing['naive_mape']:.2f} %"
          f" (p95 {100 * timing['naive_p95']:.2f} %); error ratio"
          f" {timing['forecast_mape'] / timing['naive_mape']:.2f}")
    print(f"peak traced memory of one fit + forecast: {peak / 2**20:.1f} MiB")
    print(f"peak resident set of the whole process (data for {n} series included): {rss_kib / 1024:.0f} MiB")
    if args.alternatives:
        print(f"alternatives on {args.alternatives} series:")
        _alternatives(series[: args.alternatives])


if __name__ == "__main__":
    main()
