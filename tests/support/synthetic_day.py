"""The tests' synthetic day: a daily wave whose phase counts from the start of the run.

A signal that is a sine of the wall clock makes a test depend on the hour it runs at (near
the daily trough a region's spare replicas cover the need and the dark size is 0). Every
test that needs a daily shape takes it from here, so where in the day it starts is chosen by
the test (:data:`PHASES`), never by the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DAY", "PHASES", "SyntheticDay"]

DAY = 86_400.0
PHASES = {"trough": -math.pi / 2, "rising": 0.0, "peak": math.pi / 2, "falling": math.pi}
"""Where in the synthetic day the run starts: sin(phase) is -1, 0 going up, 1, 0 going down."""


@dataclass(frozen=True)
class SyntheticDay:
    """The tests' daily wave, its phase counted from the start of the run, not the wall clock."""

    start: float
    levels: Mapping[str, float] = field(default_factory=dict)

    def signal(self, region: str, t: float, *, phase: str = "rising", scale: float = 1.0) -> float:
        """The healthy signal of a region at ``t``: a daily wave of ±30 % around its level."""
        angle = 2 * math.pi * (t - self.start) / DAY + PHASES[phase]
        return scale * self.levels.get(region, 500.0) * (1.0 + 0.3 * math.sin(angle))

    @staticmethod
    def replicas_for(traffic: float) -> float:
        """What a participating Deployment's autoscaler runs for a traffic: 2 + 1 per 100."""
        return float(round(2 + traffic / 100.0))
