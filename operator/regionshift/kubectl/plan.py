"""``kubectl regionshift plan REGION``: what evacuating REGION would do here now, by the operator's DryRun logic.

The plugin decides nothing of its own: it runs the operator's one decision path, the pure
state machine :func:`regionshift.decide.evacuation.step` (and through it the weight
arithmetic of :mod:`regionshift.decide.weights`), in ``DryRun`` mode with
``spec.evacuate: [REGION]``, over the observations of this moment
(:mod:`regionshift.kubectl.live`). That is exactly how the operator's DryRun computes
``status.plan``; here it is computed on demand, for any region and in any mode, and written
nowhere. As in DryRun, regions whose verdict is Unhealthy are planned with REGION (an
operator in Automatic mode evacuates them anyway; in Manual mode it recommends them).

Pure: the RegionFailover and the observations in, a :class:`PlanNow` out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from regionshift.api.models import (
    EvacuationPlan,
    Mode,
    RegionEvacuation,
    RegionFailoverSpec,
    RegionFailoverStatus,
    Verdict,
)
from regionshift.decide.evacuation import Observations, Tuning, step

__all__ = ["PlanError", "PlanNow", "plan_now"]


class PlanError(ValueError):
    """No plan can be computed for that region (it is not a region of the domain)."""


@dataclass(frozen=True, kw_only=True)
class PlanNow:
    """What evacuating ``region`` would do in this region (``here``) now, and what it was computed from."""

    region: str
    here: str
    mode: Mode
    """The RegionFailover's own mode (the plan is computed in DryRun whatever it is)."""
    plan: EvacuationPlan | None
    """The plan; None when ``region`` is evacuated already (see :attr:`evacuation`)."""
    evacuation: RegionEvacuation | None
    """The evacuation of ``region`` under way here, if there is one."""
    verdicts: dict[str, Verdict]
    """Every region's verdict as the plan counted it (Unknown when detection's are stale)."""
    warm: dict[str, int]
    """Warm dark replicas per region as the plan counted them (here: its DarkClusters; peers: Prometheus)."""
    stored: EvacuationPlan | None
    """``status.plan`` as the operator last wrote it, when it covers ``region``."""

    @property
    def together(self) -> list[str]:
        """Regions planned along with ``region`` (their verdict is Unhealthy)."""
        return [r for r in (self.plan.regions if self.plan else []) if r != self.region]

    @property
    def matches_stored(self) -> bool | None:
        """Whether the operator's last ``status.plan`` says the same; None without one."""
        if self.stored is None or self.plan is None:
            return None
        return self.stored == self.plan


def plan_now(*, spec: RegionFailoverSpec, status: RegionFailoverStatus, region: str, observations: Observations,
             now: dt.datetime) -> PlanNow:
    """Run the DryRun step with ``spec.evacuate: [region]`` over ``observations`` at ``now``; nothing is written.

    ``now`` is timezone-aware. Raises :class:`PlanError` for a region outside the domain.
    """
    domain = [spec.region, *(peer.name for peer in spec.peers)]
    if region not in domain:
        raise PlanError(f"{region!r} is not a region of this RegionFailover (regions: {', '.join(domain)})")
    dry = spec.model_copy(update={"mode": Mode.DRY_RUN, "evacuate": [region]})
    decision = step(spec=dry, status=status, observations=observations, now=now, tuning=Tuning())
    if decision.writes:  # DryRun never writes; a plan that would is a bug in the state machine, not a plan
        raise AssertionError(f"the DryRun step decided writes: {decision.writes}")
    plan = decision.status.plan
    evacuation = next((e for e in status.evacuations if e.region == region), None)
    if plan is not None and region not in plan.regions:
        plan = None
    warm = {spec.region: sum(dc.warm for dc in observations.dark_clusters)}
    warm |= {peer: capacity.warm for peer, capacity in observations.capacity.items() if peer in domain}
    verdicts = {r: Verdict(observations.verdicts.get(r, Verdict.UNKNOWN)) for r in domain}
    stored = status.plan if status.plan is not None and region in status.plan.regions else None
    return PlanNow(region=region, here=spec.region, mode=Mode(spec.mode), plan=plan, evacuation=evacuation,
                   verdicts=verdicts, warm=warm, stored=stored)
