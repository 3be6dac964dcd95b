"""Dark-capacity sizing: the talk's "scaling pattern: linear regression".

A savior region must absorb a failing peer's traffic the moment it is ungated, so its
dark capacity is sized ahead of time from data, per participating Deployment:

1. **Fit** ordinary least squares of the Deployment's replicas on the region's signal over
   the history (``replicas = intercept + slope × traffic``): its own autoscaler already
   tells how many pods a unit of traffic takes. The fit (coefficients, R², samples,
   fitted at) goes to the DarkCluster's status.
2. **Need**: the extra replicas this region needs to take its share of the largest peer's
   forecast peak over the horizon, on top of its own forecast peak::

       need  = fit(own_peak + share × largest_peer_peak) − fit(own_peak)
       spare = max(0, current_replicas − fit(own_peak))
       dark  = clamp(ceil(need × headroom − spare), min, max)

   ``spare`` is what the main Deployment runs beyond what its own peak needs: capacity
   that absorbs peer traffic without a single dark pod.

When the history cannot support a regression (traffic barely moves, or replicas do not
grow with it, as for a Deployment with a fixed replica count) the model falls back to
proportional scaling through the origin, ``replicas = traffic × mean(replicas) /
mean(traffic)``, and says so in ``method``: a fixed-size Deployment still needs more pods
for more traffic, which a flat regression line would deny.

:func:`plan_sizing` sizes every participating Deployment of a domain in one call, each on
its own (one that cannot be fitted does not stop the others) and within a time budget: the
Deployments it did not reach are returned as deferred, for the next run to take first.

Pure functions over plain numbers (the clock of the budget is passed in); the sizing task
of :mod:`regionshift.controllers.regionfailover` calls them in a worker thread.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from regionshift.api.models import DarkCapacityPolicy, ModelFit
from regionshift.decide.history import History, align
from regionshift.decide.robust import least_squares_line
from regionshift.errors import NoData

__all__ = [
    "DarkSizing",
    "FitMethod",
    "ScalingFit",
    "SizingPlan",
    "SizingTarget",
    "dark_replicas",
    "fit_scaling",
    "plan_sizing",
]


class FitMethod(str, enum.Enum):
    """How the scaling model was obtained."""

    ORDINARY_LEAST_SQUARES = "OrdinaryLeastSquares"
    PROPORTIONAL = "Proportional"


@dataclass(frozen=True, kw_only=True)
class ScalingFit:
    """The fitted scaling model ``replicas = intercept + slope × traffic``."""

    intercept: float
    slope: float
    """Replicas per unit of the signal."""
    r_squared: float
    """Share of the replica variance the model explains, 0..1."""
    samples: int
    fitted_at: datetime
    method: FitMethod

    def replicas_for(self, *, traffic: float) -> float:
        """Replicas the model expects at ``traffic`` (never negative)."""
        return max(0.0, self.intercept + self.slope * traffic)

    def to_model(self) -> ModelFit:
        """The fit as the DarkCluster status reports it."""
        return ModelFit(
            intercept=self.intercept,
            slope_replicas_per_unit=self.slope,
            r_squared=self.r_squared,
            samples=self.samples,
            fitted_at=self.fitted_at.isoformat().replace("+00:00", "Z"),
            method=self.method.value,
        )


def fit_scaling(
    *,
    traffic: Sequence[float] | np.ndarray,
    replicas: Sequence[float] | np.ndarray,
    fitted_at: datetime,
    min_samples: int = 10,
) -> ScalingFit:
    """Fit replicas on traffic by ordinary least squares (:func:`~regionshift.decide.robust.least_squares_line`).

    Pairs with a missing or non-finite value are dropped. Raises
    :class:`~regionshift.errors.NoData` when fewer than ``min_samples`` pairs remain or the
    history carries no traffic at all.
    """
    x = np.asarray(traffic, dtype=np.float64)
    y = np.asarray(replicas, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("traffic and replicas must be one-dimensional and of equal length")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < max(min_samples, 3):
        raise NoData(f"{x.size} usable (traffic, replicas) pairs, need at least {max(min_samples, 3)}")
    mean_x = float(np.mean(x))
    if mean_x <= 0:
        raise NoData("the history carries no traffic: nothing to scale from")
    total = float(np.sum((y - np.mean(y)) ** 2))

    if float(np.std(x)) > 1e-6 * mean_x:
        line = least_squares_line(x, y)
        intercept, slope = line.intercept, line.slope
        if slope > 0:
            r_squared = line.r_squared if total > 0 else 0.0
            return ScalingFit(
                intercept=intercept,
                slope=slope,
                r_squared=min(1.0, max(0.0, r_squared if math.isfinite(r_squared) else 0.0)),
                samples=int(x.size),
                fitted_at=fitted_at,
                method=FitMethod.ORDINARY_LEAST_SQUARES,
            )
    slope = float(np.mean(y)) / mean_x
    residual = float(np.sum((y - slope * x) ** 2))
    r_squared = 1.0 - residual / total if total > 0 else 0.0
    return ScalingFit(
        intercept=0.0,
        slope=slope,
        r_squared=min(1.0, max(0.0, r_squared)),
        samples=int(x.size),
        fitted_at=fitted_at,
        method=FitMethod.PROPORTIONAL,
    )


@dataclass(frozen=True, kw_only=True)
class DarkSizing:
    """How many dark replicas one Deployment needs, with the figures behind it."""

    desired_replicas: int
    """What the shadow Deployment should run: clamped to the policy's min and max."""
    forecast_replicas: int
    """The same before the clamp (never negative): DarkCluster ``status.forecastReplicas``."""
    need_replicas: float
    """Extra replicas to absorb the peer's share, before headroom."""
    spare_replicas: float
    """Replicas the main Deployment runs beyond its own forecast peak."""
    largest_peer: str | None
    peer_peak: float
    own_peak: float
    message: str

    @property
    def clamped(self) -> bool:
        """Whether min or max changed the forecast."""
        return self.desired_replicas != self.forecast_replicas


def dark_replicas(
    *,
    fit: ScalingFit,
    policy: DarkCapacityPolicy,
    own_peak: float,
    peer_peaks: Mapping[str, float],
    share: float,
    current_replicas: int,
) -> DarkSizing:
    """Size one Deployment's dark capacity.

    ``own_peak`` and ``peer_peaks`` are forecast peaks of the signal over the policy's
    horizon (e.g. :meth:`regionshift.decide.forecast.Prediction.peak`), in the units the fit was
    made in; ``share`` is the part of a failing peer's traffic this region takes (0..1);
    ``current_replicas`` is what the main Deployment runs now.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in 0..1, got {share}")
    if own_peak < 0 or any(p < 0 for p in peer_peaks.values()):
        raise ValueError("peaks must not be negative")
    if current_replicas < 0:
        raise ValueError(f"current_replicas must not be negative, got {current_replicas}")
    largest = max(peer_peaks, key=lambda name: (peer_peaks[name], name)) if peer_peaks else None
    peer_peak = peer_peaks[largest] if largest is not None else 0.0
    own_need = fit.replicas_for(traffic=own_peak)
    need = fit.replicas_for(traffic=own_peak + share * peer_peak) - own_need
    spare = max(0.0, current_replicas - own_need)
    raw = need * policy.headroom_ratio - spare
    forecast = max(0, math.ceil(raw - 1e-9))
    desired = min(policy.max_replicas, max(policy.min_replicas, forecast))
    if largest is None:
        message = "no peers: nothing to absorb"
    else:
        message = (
            f"{share:.0%} of {largest}'s peak {peer_peak:.4g} needs {need:.1f} replicas"
            f" × headroom {policy.headroom_ratio:g} − spare {spare:.1f} = {raw:.1f}"
            f" → {forecast}"
        )
        if desired != forecast:
            message += f", clamped to {desired} (min {policy.min_replicas}, max {policy.max_replicas})"
    return DarkSizing(
        desired_replicas=desired,
        forecast_replicas=forecast,
        need_replicas=need,
        spare_replicas=spare,
        largest_peer=largest,
        peer_peak=peer_peak,
        own_peak=own_peak,
        message=message,
    )


@dataclass(frozen=True, kw_only=True)
class SizingTarget:
    """One participating Deployment to size: its replica history and what it runs now."""

    name: str
    replicas: History
    current_replicas: int


@dataclass(frozen=True, kw_only=True)
class SizingPlan:
    """The outcome of sizing a domain's Deployments, each on its own."""

    sized: dict[str, tuple[ScalingFit, DarkSizing]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    """Deployment → why it could not be sized (one sentence)."""
    deferred: tuple[str, ...] = ()
    """Deployments not reached within the time budget, in the order they were due."""


def plan_sizing(
    *,
    targets: Sequence[SizingTarget],
    traffic: History,
    policy: DarkCapacityPolicy,
    own_peak: float,
    peer_peaks: Mapping[str, float],
    share: float,
    fitted_at: datetime,
    deadline: float,
    clock: Callable[[], float],
) -> SizingPlan:
    """Fit and size every target against the region's ``traffic`` history, until ``deadline``.

    ``clock()`` is compared with ``deadline`` before each target (the same clock, e.g.
    ``time.monotonic``); the first target is always sized, so a run always progresses.
    """
    plan = SizingPlan()
    deferred: list[str] = []
    for index, target in enumerate(targets):
        if index > 0 and clock() >= deadline:
            deferred = [t.name for t in targets[index:]]
            break
        try:
            x, y = align(traffic, target.replicas)
            fit = fit_scaling(traffic=x, replicas=y, fitted_at=fitted_at)
            plan.sized[target.name] = (fit, dark_replicas(
                fit=fit, policy=policy, own_peak=own_peak, peer_peaks=peer_peaks, share=share,
                current_replicas=target.current_replicas,
            ))
        except (NoData, ValueError) as exc:
            plan.failed[target.name] = f"cannot fit replicas on traffic: {exc}"
    return SizingPlan(sized=plan.sized, failed=plan.failed, deferred=tuple(deferred))
