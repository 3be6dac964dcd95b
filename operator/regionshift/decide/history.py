"""Signal and replica histories on a fixed time grid, kept compact and refreshed by increments.

Forecasts and the sizing model fit weeks of one-minute history per region and per
participating Deployment: with 500 Deployments that is ten million samples, refreshed every
refit interval. This module holds one series as a float32 NumPy array on a regular grid
(4 bytes a sample, NaN where a sample is missing) and says how to refresh it without
fetching it whole again:

* :func:`fetch_window` is the range to ask the source for: the whole window the first time,
  afterwards only from a couple of steps before the newest sample (those may have been
  incomplete when they were read) up to now;
* :func:`merge` lays the fetched samples onto the grid (newer values win), appends what is
  new and drops what fell out of the window.

Grid points are multiples of the step since the epoch, so every fetch lands on the same grid.
Pure functions over plain data: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DAY_SECONDS", "History", "SeriesKey", "align", "dense", "fetch_window", "finite_span_seconds", "merge"]

DAY_SECONDS = 86_400.0
OVERLAP_STEPS = 2
"""Steps before the newest sample fetched again on a refresh: the newest samples of a rate
or an average may have been computed over a partly scraped window when they were read."""


@dataclass(frozen=True, kw_only=True)
class SeriesKey:
    """What a history depends on: a changed key means the history is another series."""

    query: str
    """The PromQL, placeholders filled."""
    step_seconds: float
    """Grid step of the history."""
    window_seconds: float
    """How far back the history reaches from now."""


@dataclass(frozen=True, kw_only=True, eq=False)
class History:
    """One series at a fixed step: ``values[i]`` is the sample at ``start + i * step`` (NaN: missing)."""

    start: float
    step_seconds: float
    values: np.ndarray
    """float32, one-dimensional."""

    def __post_init__(self) -> None:
        if self.step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {self.step_seconds}")
        if self.values.dtype != np.float32 or self.values.ndim != 1:
            object.__setattr__(self, "values", np.asarray(self.values, dtype=np.float32).reshape(-1))

    def __len__(self) -> int:
        return int(self.values.size)

    @property
    def end(self) -> float:
        """Time of the last grid point (``start`` less one step when empty)."""
        return self.start + self.step_seconds * (self.values.size - 1)

    @property
    def nbytes(self) -> int:
        """Memory held by the samples."""
        return int(self.values.nbytes)

    def timestamps(self) -> np.ndarray:
        """The grid, float64 unix seconds."""
        return self.start + self.step_seconds * np.arange(self.values.size, dtype=np.float64)

    def downsampled(self, *, step_seconds: float) -> History:
        """Mean over windows of ``step_seconds`` (NaN where a window has no sample)."""
        factor = max(1, int(round(step_seconds / self.step_seconds)))
        if factor == 1:
            return self
        arr = self.values.astype(np.float64)
        usable = arr.size // factor * factor
        blocks = arr[:usable].reshape(-1, factor)
        with np.errstate(all="ignore"):
            counts = np.sum(~np.isnan(blocks), axis=1)
            means = np.where(counts > 0, np.nansum(blocks, axis=1) / np.maximum(counts, 1), np.nan)
        return History(start=self.start, step_seconds=self.step_seconds * factor, values=means.astype(np.float32))


def _grid_floor(t: float, step: float) -> float:
    return math.floor(t / step + 1e-9) * step


def _as_arrays(samples: Sequence[tuple[float, float]] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(samples, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def dense(samples: Sequence[tuple[float, float]] | np.ndarray, *, step_seconds: float) -> History:
    """The samples on a grid starting at the first one, NaN where a grid point has none."""
    ts, vs = _as_arrays(samples)
    if ts.size == 0:
        raise ValueError("no samples")
    start = float(ts[0])
    index = np.rint((ts - start) / step_seconds).astype(np.int64)
    values = np.full(int(index.max()) + 1, np.nan, dtype=np.float32)
    values[index] = vs
    return History(start=start, step_seconds=step_seconds, values=values)


def fetch_window(history: History | None, *, now: float, step_seconds: float, window_seconds: float) -> tuple[float, float]:
    """``(start, end)`` to fetch so that the history covers ``window_seconds`` up to ``now``.

    The whole window when there is no history yet (or it ends before the window begins);
    otherwise from :data:`OVERLAP_STEPS` before its newest grid point. ``start`` is on the
    grid (a multiple of the step), so the answer's samples fall on it.
    """
    oldest = _grid_floor(now - window_seconds, step_seconds)
    if history is None or history.values.size == 0 or history.step_seconds != step_seconds:
        return oldest, now
    resume = history.end - OVERLAP_STEPS * step_seconds
    return (max(oldest, _grid_floor(resume, step_seconds)), now)


def merge(
    history: History | None,
    samples: Sequence[tuple[float, float]] | np.ndarray,
    *,
    now: float,
    step_seconds: float,
    window_seconds: float,
) -> History:
    """``history`` with ``samples`` laid onto its grid, trimmed to the window ending ``now``.

    Fetched samples replace what the grid held at their times (a re-read of a sample
    that was incomplete), grid points between the old end and the new samples stay NaN,
    and grid points older than ``now - window_seconds`` are dropped. Samples off the grid
    go to the nearest grid point.
    """
    oldest = _grid_floor(now - window_seconds, step_seconds)
    ts, vs = _as_arrays(samples)
    if history is not None and history.step_seconds != step_seconds:
        history = None
    if history is None or history.values.size == 0:
        if ts.size == 0:
            return History(start=oldest, step_seconds=step_seconds, values=np.empty(0, dtype=np.float32))
        start = _grid_floor(float(ts[0]) + step_seconds / 2, step_seconds)
        old_values = np.empty(0, dtype=np.float32)
    else:
        start = history.start
        old_values = history.values
    newest = history.end if history is not None and history.values.size else start - step_seconds
    if ts.size:
        newest = max(newest, float(ts.max()))
    length = int(round((newest - start) / step_seconds)) + 1 if newest >= start else 0
    values = np.full(max(length, old_values.size), np.nan, dtype=np.float32)
    values[: old_values.size] = old_values
    if ts.size:
        index = np.rint((ts - start) / step_seconds).astype(np.int64)
        keep = index >= 0
        values[index[keep]] = vs[keep]
    drop = int(max(0, round((oldest - start) / step_seconds)))
    if drop >= values.size:
        return History(start=oldest, step_seconds=step_seconds, values=np.empty(0, dtype=np.float32))
    return History(start=start + drop * step_seconds, step_seconds=step_seconds, values=values[drop:].copy())


def finite_span_seconds(history: History) -> float:
    """Seconds from the first to the last sample that holds a value (0 if none or one)."""
    finite = np.flatnonzero(np.isfinite(history.values))
    if finite.size < 2:
        return 0.0
    return float(finite[-1] - finite[0]) * history.step_seconds


def align(traffic: History, replicas: History) -> tuple[np.ndarray, np.ndarray]:
    """Paired (traffic, replicas) float64 arrays at the times both hold a value.

    A history at a finer step is first averaged to the other's step (one fetched live, one
    read back from the 5-minute cache); grid points are paired with the nearest one.
    """
    if not math.isclose(traffic.step_seconds, replicas.step_seconds):
        if traffic.step_seconds < replicas.step_seconds:
            traffic = traffic.downsampled(step_seconds=replicas.step_seconds)
        else:
            replicas = replicas.downsampled(step_seconds=traffic.step_seconds)
        if not math.isclose(traffic.step_seconds, replicas.step_seconds):
            raise ValueError(f"steps {traffic.step_seconds:g} s and {replicas.step_seconds:g} s do not divide")
    shift = int(round((replicas.start - traffic.start) / traffic.step_seconds))
    # traffic index i pairs with replicas index i - shift
    lo = max(0, shift)
    hi = min(traffic.values.size, replicas.values.size + shift)
    if hi <= lo:
        return np.empty(0), np.empty(0)
    x = traffic.values[lo:hi].astype(np.float64)
    y = replicas.values[lo - shift : hi - shift].astype(np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]
