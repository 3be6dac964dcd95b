"""The evacuation state machine: one pure step from (spec, status, observations, now) to (status, actions).

Every region's operator runs :func:`step` for its own RegionFailover on the same global
verdicts and decides on its own (no central brain, no writes to another region's cluster).
The handler gathers the observations, calls :func:`step`, carries the actions out, then
writes the returned status. All state lives in that status, so a restarted operator resumes
in any phase from the status alone; calling :func:`step` again with its own output and the
same observations returns the same status and no new writes.

Phases of one region's evacuation (``status.evacuations[]``; ``status.phase`` is the most
urgent of them: Evacuating, then FailingBack, then Evacuated; Steady when there is none)::

    Steady ──decide──▶ Evacuating ──every route holds──▶ Evacuated ──failback──▶ FailingBack ──last step holds──▶ Steady
                                                            ▲                          │
                                                            └──── abort (+ backoff) ───┘

* **Evacuating**: decided, by an Unhealthy verdict (Automatic mode) or by ``spec.evacuate``.
  First the saviors' dark capacity is ungated (``ungatedAt``), then the proxy routes
  (Gateway API, ingress-nginx) shift (``shiftedAt``), then DNS once every proxy route holds.
  One started by a verdict that has ungated nothing, while no savior has warm dark capacity,
  ends back in Steady once the region is Healthy again (``EvacuationCancelled``).
* **Evacuated**: every route holds the evacuation's weights (``settledAt``).
* **FailingBack**: after ``cooldown_seconds`` (at once when the region leaves
  ``spec.evacuate``), and once the region's own Deployments are Ready, the region gets back
  ``failback.stepPercent`` of its share per step; every ``stepIntervalSeconds`` after a step
  holds, it goes on only while it serves at least ``failback.ratioThreshold`` × forecast ×
  share, otherwise it aborts back to Evacuated with the reason and a backoff that doubles
  with each abort. The last step restores the recorded weights exactly; once they hold, the
  evacuation ends and the dark pods are re-gated (a savior waits, besides, until the region
  it saved reports that it serves its whole share again, so that no traffic is left on the
  dark pods it closes). Where the domain has DNS routes for the
  region, the steps move its DNS weight and its proxy routes come back at the first step
  (traffic must reach the region for it to serve it); otherwise the proxy routes step.

Roles (``status.roles``), as this region sees them while an evacuation is under way: the
**evacuated** region (it points its own proxy routes at the saviors while its API answers,
and lowers its own DNS record); each **savior** (a region not evacuated, not Unhealthy, with
Ready dark capacity: it ungates its dark pods and takes a share of the evacuated region's
weight in proportion to that capacity); **serving** for the rest. A region learns the
others' dark capacity, Deployment readiness and served signal only from observations (the
shared Prometheus), never by writing to their clusters.

Triggers and precedence: ``spec.evacuate`` is the button and wins over the verdicts: a
region listed there is evacuated in Manual and Automatic mode whatever its verdict, and
never fails back while listed; taking it out starts its failback at once. In Automatic mode
an Unhealthy verdict evacuates too; HeldBack and Unknown never do. In Manual mode an
Unhealthy verdict becomes ``status.recommendation`` (with the plan) and an Event, and waits
for ``spec.evacuate``. In DryRun mode nothing changes phase and nothing is written: the plan
(which DarkClusters it would ungate, which weights on which route from what to what) goes
into ``status.plan`` and an Event; an evacuation left over from another mode stays frozen.
An evacuation a verdict started in Automatic mode goes on, failback included, after a
switch to Manual mode.

No flapping: a verdict never starts an evacuation within ``dwell_seconds`` of the region's
last transition (the button does), an automatic failback waits ``cooldown_seconds`` after
settling, and an aborted failback waits a doubling backoff. A region is never evacuated
when no other region would be left serving.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from regionshift.api.models import (
    Actor,
    EvacuationPlan,
    EvacuationTimeline,
    Gate,
    Mode,
    Phase,
    PlannedWeights,
    Recommendation,
    RegionEvacuation,
    RegionFailoverSpec,
    RegionFailoverStatus,
    Role,
    RouteWeights,
    TrafficProviderKind,
    Transition,
    Verdict,
)
from regionshift.decide.summary import evacuated_regions
from regionshift.decide.weights import (
    Layer,
    WeightInvariantError,
    check_invariants,
    failback_share,
    layer_of,
    target_weights,
    unplaced,
)

__all__ = [
    "Action",
    "CloseGates",
    "DarkClusterObservation",
    "Decision",
    "FailbackSignal",
    "Observations",
    "OpenGates",
    "PostEvent",
    "Recommend",
    "RegionCapacity",
    "RouteReport",
    "SetWeights",
    "Tuning",
    "step",
]


# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True, kw_only=True)
class Tuning:
    """Timings of the state machine that the spec does not (yet) carry."""

    dwell_seconds: float = 60.0
    """No verdict-driven evacuation of a region within this long of its last transition."""
    cooldown_seconds: float = 300.0
    """An automatic failback starts no sooner than this after the evacuation settled."""
    backoff_seconds: float = 300.0
    """Wait after the first aborted failback; doubles with every further abort."""
    backoff_max_seconds: float = 3600.0
    """The backoff never grows beyond this."""
    retry_seconds: float = 30.0
    """A write whose effect is not observed after this long is made again."""
    history_limit: int = 20
    """Transitions kept in status.history (the schema allows at most 20)."""


@dataclass(frozen=True, kw_only=True)
class DarkClusterObservation:
    """One DarkCluster of this region."""

    name: str
    evacuation_gate: Gate
    """The gate evacuations hold on it (not its spec.gate, which its owner may hold open)."""
    warm: int
    """Dark pods running with all containers ready, gated or not."""
    ready: int
    """Dark pods Ready: ungated and taking traffic."""


@dataclass(frozen=True, kw_only=True)
class RegionCapacity:
    """Another region's dark capacity, as it exports it to the shared Prometheus."""

    warm: int
    ready: int


@dataclass(frozen=True, kw_only=True)
class RouteReport:
    """What a traffic provider reports for one route."""

    provider: TrafficProviderKind
    route: str
    weights: Mapping[str, int] | None
    """Weight per region it sees; None when the route could not be read."""
    verified: bool
    """True when the provider verified that these weights hold (accepted by the data plane)."""
    resolvable: frozenset[str] = frozenset()
    """Peer regions whose backend resolves on this route (the local one always does)."""
    owned: frozenset[str] | None = None
    """Regions whose weight this operator writes; None for all (a DNS route: only its own record)."""
    error: str | None = None
    """Why the route could not be read, when it could not."""


@dataclass(frozen=True, kw_only=True)
class FailbackSignal:
    """A region's signal during its failback: what it serves and its forecast at full share."""

    served: float | None
    forecast: float | None


@dataclass(frozen=True, kw_only=True)
class Observations:
    """Everything :func:`step` needs to know about the world, gathered by the handler."""

    verdicts: Mapping[str, Verdict]
    """Each region's verdict from detection (missing: Unknown)."""
    dark_clusters: Sequence[DarkClusterObservation] = ()
    """This region's DarkClusters."""
    capacity: Mapping[str, RegionCapacity] = field(default_factory=dict)
    """The other regions' dark capacity (missing: unknown, counted as none)."""
    deployments_ready: Mapping[str, bool] = field(default_factory=dict)
    """Whether each region's main Deployments are Ready (this one's from its cluster)."""
    routes: Sequence[RouteReport] = ()
    """One report per route of spec.traffic."""
    signal: Mapping[str, FailbackSignal] = field(default_factory=dict)
    """Served signal and forecast of the regions failing back."""
    served_share: Mapping[str, float] = field(default_factory=dict)
    """The share of its own traffic each other region's operator says it serves (1 in Steady),
    as exported to the shared Prometheus: a savior re-gates only once the region it saved
    reports 1 again, so its dark pods keep serving until that region's traffic has left them."""


# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True, kw_only=True)
class OpenGates:
    """Open this RegionFailover's evacuation gate (``status.evacuationGate``, one write), and so its DarkClusters.

    Carried out ahead of the rest of the run: the DarkClusters' controller opens every dark
    pod of ``dark_clusters`` on it (their gate in force combines it with each one's
    ``spec.gate``), so no DarkCluster is written.
    """

    region: str
    dark_clusters: tuple[str, ...]
    """The DarkClusters it opens (all of this RegionFailover's)."""
    reason: str


@dataclass(frozen=True, kw_only=True)
class CloseGates:
    """Close this RegionFailover's evacuation gate, and the own evacuation gate of ``held`` (writes)."""

    region: str
    dark_clusters: tuple[str, ...]
    """The DarkClusters it closes (all of this RegionFailover's)."""
    reason: str
    held: tuple[str, ...] = ()
    """DarkClusters whose own ``status.evacuationGate`` is Open (written on the DarkCluster by
    hand or by a regionshift that kept the gate there): closed with one write each."""


@dataclass(frozen=True, kw_only=True)
class SetWeights:
    """Set these weights on one route (a write); ``previous`` is what the provider reported."""

    provider: TrafficProviderKind
    route: str
    weights: tuple[tuple[str, int], ...]
    previous: tuple[tuple[str, int], ...]
    reason: str

    def as_dict(self) -> dict[str, int]:
        """The weights as a mapping, region to weight."""
        return dict(self.weights)


@dataclass(frozen=True, kw_only=True)
class PostEvent:
    """Post an Event on the RegionFailover."""

    type: str
    """Normal or Warning."""
    reason: str
    message: str


@dataclass(frozen=True, kw_only=True)
class Recommend:
    """Manual mode: these regions should be evacuated; nothing is written but status and an Event."""

    regions: tuple[str, ...]
    message: str


Action = OpenGates | CloseGates | SetWeights | PostEvent | Recommend
WRITES = (OpenGates, CloseGates, SetWeights)


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The next status and the actions to carry out, in order, before writing it."""

    status: RegionFailoverStatus
    actions: tuple[Action, ...]

    @property
    def writes(self) -> tuple[Action, ...]:
        """The actions that change something outside the RegionFailover's status and Events."""
        return tuple(a for a in self.actions if isinstance(a, WRITES))


# ---------------------------------------------------------------------------- helpers


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _since(text: str | None, now: datetime) -> float:
    moment = _parse(text)
    return float("inf") if moment is None else (now - moment).total_seconds()


def _pairs(weights: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(weights.items()))


def _same(a: Mapping[str, int], b: Mapping[str, int], keys: Iterable[str] | None = None) -> bool:
    return all(a.get(k, 0) == b.get(k, 0) for k in (keys if keys is not None else set(a) | set(b)))


def _arrows(before: Mapping[str, int] | None, after: Mapping[str, int]) -> str:
    before = before or {}
    return ", ".join(f"{r} {before.get(r, 0)}→{w}" for r, w in sorted(after.items()) if before.get(r, 0) != w) or "no change"


HISTORY_MAX = 20
"""status.history never holds more (the schema's maxItems)."""

_URGENCY = [Phase.EVACUATING, Phase.FAILING_BACK, Phase.EVACUATED]


@dataclass(kw_only=True)
class _Ctx:
    spec: RegionFailoverSpec
    obs: Observations
    now: datetime
    tuning: Tuning

    @property
    def here(self) -> str:
        return self.spec.region

    @property
    def domain(self) -> list[str]:
        return [self.spec.region, *(p.name for p in self.spec.peers)]

    def verdict(self, region: str) -> Verdict:
        return Verdict(self.obs.verdicts.get(region, Verdict.UNKNOWN))

    def ready(self, region: str) -> int:
        if region == self.here:
            return sum(dc.ready for dc in self.obs.dark_clusters)
        cap = self.obs.capacity.get(region)
        return cap.ready if cap else 0

    def warm(self, region: str) -> int:
        if region == self.here:
            return sum(dc.warm for dc in self.obs.dark_clusters)
        cap = self.obs.capacity.get(region)
        return cap.warm if cap else 0

    @functools.cached_property
    def _reports(self) -> dict[tuple[TrafficProviderKind, str], RouteReport]:
        """The reports by (provider, route), the first of each: a lookup per route, not a scan (500 routes)."""
        out: dict[tuple[TrafficProviderKind, str], RouteReport] = {}
        for report in self.obs.routes:
            out.setdefault((TrafficProviderKind(report.provider), report.route), report)
        return out

    def report(self, provider: TrafficProviderKind | str, route: str) -> RouteReport | None:
        return self._reports.get((TrafficProviderKind(provider), route))

    def route_keys(self) -> list[tuple[TrafficProviderKind, str]]:
        keys = [(TrafficProviderKind(p.kind), r) for p in self.spec.traffic for r in p.routes]
        return sorted(keys, key=lambda k: (layer_of(k[0]) is Layer.DNS, k[0].value, k[1]))


@dataclass(kw_only=True)
class _Work:
    """The status being built, plus the actions decided so far."""

    ctx: _Ctx
    status: RegionFailoverStatus
    actions: list[Action] = field(default_factory=list)

    @property
    def evacs(self) -> dict[str, RegionEvacuation]:
        return {e.region: e for e in self.status.evacuations}

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.actions.append(PostEvent(type="Warning" if warning else "Normal", reason=reason, message=message))

    def transition(self, evac: RegionEvacuation, *, to: Phase, actor: Actor, reason: str, event: str,
                   warning: bool = False) -> None:
        now = _rfc3339(self.ctx.now)
        before = Phase(evac.phase) if evac.region in self.evacs else Phase.STEADY
        self.status.history = [
            *self.status.history,
            Transition(region=evac.region, from_phase=before, to_phase=to, reason=reason, actor=actor, at=now),
        ][-min(self.ctx.tuning.history_limit, HISTORY_MAX):]
        evac.phase, evac.actor, evac.reason, evac.last_transition_at = to, actor, reason, now
        self.event(event, f"{evac.region}: {before.value} → {to.value} by {actor.value}: {reason}", warning=warning)

    def milestone(self, evac: RegionEvacuation, name: str) -> None:
        timeline = evac.timeline
        setattr(timeline, f"{name}_at", _rfc3339(self.ctx.now))
        decided = _parse(timeline.decided_at)
        assert decided is not None
        setattr(timeline, f"{name}_after_seconds", round((self.ctx.now - decided).total_seconds(), 3))


# ---------------------------------------------------------------------------- the step


def step(
    *,
    spec: RegionFailoverSpec,
    status: RegionFailoverStatus,
    observations: Observations,
    now: datetime,
    tuning: Tuning | None = None,
) -> Decision:
    """Decide the next status of the evacuations and the actions that carry it out.

    Pure: no clock (``now`` is timezone-aware and injected), no I/O. The handler carries the
    actions out in order, then writes the status (so a crash in between repeats the same
    writes, never different ones).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ctx = _Ctx(spec=spec, obs=observations, now=now, tuning=tuning or Tuning())
    work = _Work(ctx=ctx, status=status.model_copy(deep=True))
    mode = Mode(spec.mode)
    if mode is Mode.DRY_RUN:
        _dry_run(work)
        _summarise(work, before=status)
    else:
        _observe_routes(work)
        for _ in range(32):  # transitions feed each other (e.g. no routes at all): run to a fixed point
            started = _triggers(work, automatic=mode is Mode.AUTOMATIC)
            if not (_advance(work) or started):
                break
        targets = _targets(work)
        _reconcile_routes(work, targets)
        _reconcile_gates(work, targets)
        if mode is Mode.MANUAL:
            _recommend(work)
        else:
            work.status.recommendation = None
            work.status.plan = None
        _summarise(work, before=status)
    return Decision(status=work.status, actions=tuple(work.actions))


# ---------------------------------------------------------------------------- triggers


def _last_transition(status: RegionFailoverStatus, region: str) -> str | None:
    times = [t.at for t in status.history if t.region == region]
    return times[-1] if times else None


def _observe_routes(work: _Work) -> None:
    """One entry per route of spec.traffic in status.weights, with what its provider reports now."""
    ctx, status = work.ctx, work.status
    kept = {(TrafficProviderKind(w.provider), w.route): w for w in status.weights}
    routes = []
    for provider, route in ctx.route_keys():
        state = kept.get((provider, route)) or RouteWeights(provider=provider, route=route)
        report = ctx.report(provider, route)
        if report is not None and report.weights is not None:
            state.current = dict(report.weights)
        routes.append(state)
    status.weights = routes


def _triggers(work: _Work, *, automatic: bool) -> bool:
    """Start the evacuations the button or the verdicts ask for; the button also holds and releases.

    True when an evacuation started or changed phase.
    """
    moved = False
    ctx, status = work.ctx, work.status
    button = set(ctx.spec.evacuate)
    deferred: dict[str, str] = {}
    for evac in [e for e in status.evacuations if e.region not in ctx.domain]:
        work.transition(evac, to=Phase.STEADY, actor=Actor.SPEC_EVACUATE,
                        reason="no longer a region of the domain (removed from spec.peers)", event="EvacuationDropped")
        status.evacuations = [e for e in status.evacuations if e.region != evac.region]
        moved = True
    for region in ctx.domain:
        evac = work.evacs.get(region)
        if evac is not None:
            if region in button and evac.phase == Phase.FAILING_BACK:
                _back_to_evacuated(work, evac, actor=Actor.SPEC_EVACUATE, reason="listed in spec.evacuate again")
                moved = True
            continue
        by_button = region in button
        by_verdict = automatic and ctx.verdict(region) is Verdict.UNHEALTHY
        if not (by_button or by_verdict):
            continue
        others = [r for r in ctx.domain if r != region and r not in work.evacs and ctx.verdict(r) is not Verdict.UNHEALTHY]
        if not others:
            deferred[region] = "no other region would be left serving"
            continue
        last = _last_transition(status, region)
        if not by_button and _since(last, ctx.now) < ctx.tuning.dwell_seconds:
            until = _parse(last) + timedelta(seconds=ctx.tuning.dwell_seconds)  # type: ignore[operator]
            deferred[region] = f"dwell after its last transition at {last}: not before {_rfc3339(until)}"
            continue
        actor = Actor.SPEC_EVACUATE if by_button else Actor.VERDICT
        reason = "listed in spec.evacuate" if by_button else "verdict Unhealthy"
        now = _rfc3339(ctx.now)
        evac = RegionEvacuation(
            region=region, phase=Phase.EVACUATING, actor=actor, reason=reason, share=1.0, last_transition_at=now,
            timeline=EvacuationTimeline(region=region, actor=actor, reason=reason, decided_at=now),
        )
        work.transition(evac, to=Phase.EVACUATING, actor=actor, reason=reason, event="Evacuating")
        status.evacuations = sorted([*status.evacuations, evac], key=lambda e: e.region)
        moved = True
    for region, why in sorted(deferred.items()):
        if (status.deferred or {}).get(region) != why:
            work.event("EvacuationDeferred", f"{region} is not evacuated yet: {why}", warning=True)
    status.deferred = deferred or None
    return moved


def _recommend(work: _Work) -> None:
    """Manual mode: an Unhealthy verdict is a recommendation (status, plan, Event) awaiting spec.evacuate."""
    ctx, status = work.ctx, work.status
    regions = [r for r in ctx.domain if ctx.verdict(r) is Verdict.UNHEALTHY and r not in work.evacs
               and r not in ctx.spec.evacuate]
    if not regions:
        status.recommendation, status.plan = None, None
        return
    old = status.recommendation
    plan = _plan(work, regions)
    reason = "verdict Unhealthy: add " + ", ".join(regions) + " to spec.evacuate to evacuate"
    if old is None or old.regions != regions:
        status.recommendation = Recommendation(regions=regions, reason=reason, since=_rfc3339(ctx.now))
        message = f"recommend evacuating {', '.join(regions)} ({reason}); {plan.message}"
        work.actions.append(Recommend(regions=tuple(regions), message=message))
        work.event("EvacuationRecommended", message, warning=True)
    status.plan = plan


def _dry_run(work: _Work) -> None:
    """DryRun: publish the plan for what the button and the verdicts ask; change and write nothing else."""
    ctx, status = work.ctx, work.status
    regions = [r for r in ctx.domain if (ctx.verdict(r) is Verdict.UNHEALTHY or r in ctx.spec.evacuate)
               and r not in work.evacs]
    status.recommendation = None
    if not regions:
        status.plan = None
        return
    plan = _plan(work, regions)
    if status.plan != plan:
        work.event("EvacuationPlanned", f"DryRun, nothing written: {plan.message}")
    status.plan = plan


def _plan(work: _Work, regions: list[str]) -> EvacuationPlan:
    """What evacuating ``regions`` would do here, with the saviors' warm capacity."""
    ctx = work.ctx
    out = set(regions) | set(work.evacs)
    shares = {r: 0.0 for r in out}
    capacity = {r: ctx.warm(r) for r in ctx.domain if r not in out and ctx.verdict(r) is not Verdict.UNHEALTHY}
    ungate = []
    if ctx.here not in out and any(r != ctx.here for r in regions) and work.status.evacuation_gate != Gate.OPEN:
        ungate = [dc.name for dc in ctx.obs.dark_clusters if dc.evacuation_gate != Gate.OPEN]
    changes, problems = [], []
    current = {(TrafficProviderKind(w.provider), w.route): w for w in work.status.weights}
    for provider, route in ctx.route_keys():
        report = ctx.report(provider, route)
        if report is None or report.weights is None:
            problems.append(f"{provider.value} {route} unreadable")
            continue
        kept = current.get((provider, route))
        base = (kept.recorded if kept and kept.recorded else None) or dict(report.weights)
        layer = layer_of(provider)
        to = target_weights(recorded=base, shares=shares, capacity=capacity,
                            resolvable=report.resolvable | {ctx.here}, layer=layer)
        try:
            check_invariants(route=f"{provider.value} {route}", weights=to, layer=layer, local=ctx.here,
                             resolvable=report.resolvable | {ctx.here},
                             serving_elsewhere=any(r not in to and r not in out for r in ctx.domain))
        except WeightInvariantError as exc:
            problems.append(str(exc))
        if not _same(report.weights, to):
            changes.append(PlannedWeights(provider=provider, route=route, from_weights=dict(report.weights),
                                          to_weights=to))
    parts = [f"evacuating {', '.join(regions)} would ungate {len(ungate)} DarkCluster(s) here"
             f" and change {len(changes)} route(s)"]
    parts += [f"{TrafficProviderKind(c.provider).value} {c.route}: {_arrows(c.from_weights, c.to_weights)}"
              for c in changes]
    if not any(capacity.values()):
        problems.append("no savior has warm dark capacity: the weights would stay where they are")
    message = "; ".join(parts + problems)
    return EvacuationPlan(regions=regions, ungate=ungate, weights=changes, message=message)


# ---------------------------------------------------------------------------- progress


def _back_to_evacuated(work: _Work, evac: RegionEvacuation, *, actor: Actor, reason: str,
                       backoff: bool = False) -> None:
    """Stop a failback: the region is evacuated again (after an abort, with a doubling backoff)."""
    ctx = work.ctx
    evac.share, evac.failback_step, evac.step_held_at = 0.0, 0, None
    if backoff:
        evac.aborts += 1
        wait = min(ctx.tuning.backoff_max_seconds, ctx.tuning.backoff_seconds * 2 ** (evac.aborts - 1))
        evac.backoff_until = _rfc3339(ctx.now + timedelta(seconds=wait))
        reason = f"{reason}; next attempt after {wait:.0f} s"
    work.transition(evac, to=Phase.EVACUATED, actor=actor, reason=reason,
                    event="FailbackAborted" if backoff else "FailbackStopped", warning=backoff)


def _eligible(work: _Work) -> list[str]:
    """Regions that may take traffic from an evacuated one: not evacuated, not Unhealthy."""
    ctx = work.ctx
    return [r for r in ctx.domain if r not in work.evacs and ctx.verdict(r) is not Verdict.UNHEALTHY]


def _refresh_capacity(work: _Work) -> None:
    """Savior capacity for the split; kept while saviors and their capacity stay put (no churn)."""
    ctx, status = work.ctx, work.status
    if not status.evacuations:
        status.savior_capacity = None
        return
    fresh = {r: ctx.ready(r) for r in _eligible(work) if ctx.ready(r) > 0}
    old = status.savior_capacity or {}
    moved = set(fresh) != set(old) or any(abs(fresh[r] - old[r]) > 0.2 * old[r] for r in fresh)
    if moved:
        status.savior_capacity = dict(sorted(fresh.items())) or None


def _healed_with_nothing_to_move(work: _Work, evac: RegionEvacuation) -> bool:
    """End an evacuation that moved nothing and can move nothing, once its region is Healthy again.

    An evacuation a verdict started waits for a savior's Ready dark capacity before any route
    moves; when no savior has warm dark capacity at all (dark capacity switched off, or every
    other region's gone), it would wait forever, still Evacuating after the region recovered
    (the drill's baseline run found it). Such an evacuation ends, back to Steady, as soon as
    the region's verdict is Healthy; the dwell then keeps a new verdict from starting another
    at once. The button's evacuations, and any that has ungated, go on as before.
    """
    ctx = work.ctx
    if Actor(evac.timeline.actor) is not Actor.VERDICT or evac.region in ctx.spec.evacuate:
        return False
    if ctx.verdict(evac.region) is not Verdict.HEALTHY or any(ctx.warm(r) > 0 for r in _eligible(work)):
        return False
    work.transition(evac, to=Phase.STEADY, actor=Actor.VERDICT,
                    reason="Healthy again before any traffic moved; no savior has warm dark capacity",
                    event="EvacuationCancelled")
    work.status.last_evacuation = evac.timeline
    work.status.evacuations = [e for e in work.status.evacuations if e.region != evac.region]
    return True


def _dns_carries(work: _Work, region: str) -> bool:
    """Whether one of this region's DNS routes carries a weight for ``region``."""
    for route in work.status.weights:
        if layer_of(route.provider) is Layer.DNS and (route.recorded or route.current or {}).get(region, 0) > 0:
            return True
    return False


def _shares(work: _Work, layer: Layer) -> dict[str, float]:
    shares = {}
    for evac in work.status.evacuations:
        share = evac.share
        if evac.phase == Phase.FAILING_BACK and layer is Layer.PROXY and _dns_carries(work, evac.region):
            share = 1.0  # DNS steps the share; the region's proxy routes take back what reaches it
        shares[evac.region] = share
    return shares


@dataclass(frozen=True, kw_only=True)
class _Target:
    provider: TrafficProviderKind
    route: str
    weights: dict[str, int] | None
    holds: bool
    report: RouteReport | None
    stuck: tuple[str, ...] = ()
    """Regions whose weight should move on this route but no savior can take it."""


def _targets(work: _Work) -> list[_Target]:
    """Each route's target weights for the evacuations as they stand, and whether they hold."""
    ctx, status = work.ctx, work.status
    _refresh_capacity(work)
    kept = {(TrafficProviderKind(w.provider), w.route): w for w in status.weights}
    out = []
    for provider, route in ctx.route_keys():
        report = ctx.report(provider, route)
        state = kept.get((provider, route))
        current = dict(report.weights) if report and report.weights is not None else (state.current if state else None)
        base = (state.recorded if state and state.recorded else None) or current
        if base is None:
            out.append(_Target(provider=provider, route=route, weights=None, holds=False, report=report))
            continue
        layer = layer_of(provider)
        shares = _shares(work, layer)
        weights = target_weights(recorded=base, shares=shares, capacity=status.savior_capacity or {},
                                 resolvable=(report.resolvable if report else frozenset()) | {ctx.here}, layer=layer)
        stuck = tuple(unplaced(recorded=base, shares=shares, capacity=status.savior_capacity or {},
                               resolvable=(report.resolvable if report else frozenset()) | {ctx.here}, layer=layer))
        holds = bool(report and report.weights is not None and report.verified
                     and _same(report.weights, weights, report.owned))
        out.append(_Target(provider=provider, route=route, weights=weights, holds=holds and not stuck,
                           report=report, stuck=stuck))
    return out


def _wait(evac: RegionEvacuation, targets: list[_Target], *, layer: Layer | None = None) -> str:
    waiting = [t for t in targets if not t.holds and (layer is None or layer_of(t.provider) is layer)]
    stuck = [t for t in waiting if t.stuck]
    if stuck:
        return "; ".join(
            f"no savior can take the weight of {', '.join(t.stuck)} on {t.provider.value} {t.route}"
            " (none has Ready dark capacity and a backend that resolves)" for t in stuck
        )
    names = ", ".join(
        f"{t.provider.value} {t.route}" + (f" ({t.report.error})" if t.report and t.report.error else "")
        for t in waiting
    )
    return f"routes to hold their weights: {names}"


def _advance(work: _Work) -> bool:
    """Move every evacuation on by at most one transition or milestone; True when something moved."""
    moved = False
    targets = _targets(work)
    proxy_hold = all(t.holds for t in targets if layer_of(t.provider) is Layer.PROXY)
    all_hold = all(t.holds for t in targets)
    for evac in list(work.status.evacuations):
        evac.waiting_for = None
        if evac.phase == Phase.EVACUATING:
            moved |= _evacuating(work, evac, proxy_hold=proxy_hold, all_hold=all_hold, targets=targets)
        elif evac.phase == Phase.EVACUATED:
            moved |= _evacuated(work, evac)
        elif evac.phase == Phase.FAILING_BACK:
            moved |= _failing_back(work, evac, all_hold=all_hold, targets=targets)
    return moved


def _evacuating(work: _Work, evac: RegionEvacuation, *, proxy_hold: bool, all_hold: bool,
                targets: list[_Target]) -> bool:
    """Ungate (a savior's own dark pods Ready, some savior's capacity known), then proxy, then DNS."""
    ctx = work.ctx
    if evac.timeline.ungated_at is None:
        if _healed_with_nothing_to_move(work, evac):
            return True
        own = ctx.obs.dark_clusters if ctx.here not in work.evacs else ()
        opened = work.status.evacuation_gate == Gate.OPEN
        closed = [dc.name for dc in own if not (opened or dc.evacuation_gate == Gate.OPEN) or dc.ready < dc.warm]
        if closed:
            evac.waiting_for = "this region's dark pods to be ungated and Ready: " + ", ".join(closed)
            return False
        if not work.status.savior_capacity:
            evac.waiting_for = "a savior with Ready dark capacity"
            return False
        work.milestone(evac, "ungated")
        evac.share = 0.0
        capacity = work.status.savior_capacity or {}
        work.event("Ungated", f"{evac.region}: savior dark capacity Ready"
                   f" ({', '.join(f'{r} {c}' for r, c in capacity.items())}); shifting proxy routes")
        return True
    if evac.timeline.shifted_at is None:
        if not proxy_hold:
            evac.waiting_for = _wait(evac, targets, layer=Layer.PROXY)
            return False
        work.milestone(evac, "shifted")
        work.event("Shifted", f"{evac.region}: every proxy route holds; shifting DNS")
        return True
    if not all_hold:
        evac.waiting_for = _wait(evac, targets)
        return False
    work.milestone(evac, "settled")
    work.transition(evac, to=Phase.EVACUATED, actor=Actor(evac.timeline.actor),
                    reason="every route holds the evacuation's weights", event="Evacuated")
    return True


def _evacuated(work: _Work, evac: RegionEvacuation) -> bool:
    """Start a failback: released by the button at once, else after the cool-down; Deployments Ready."""
    ctx = work.ctx
    if evac.region in ctx.spec.evacuate:
        evac.waiting_for = "removal from spec.evacuate"
        return False
    if _since(evac.backoff_until, ctx.now) < 0:
        evac.waiting_for = f"the backoff after an aborted failback, until {evac.backoff_until}"
        return False
    released = Actor.SPEC_EVACUATE in (Actor(evac.actor), Actor(evac.timeline.actor))
    if not released:
        settled = evac.timeline.settled_at or evac.last_transition_at
        if _since(settled, ctx.now) < ctx.tuning.cooldown_seconds or _since(
            evac.last_transition_at, ctx.now
        ) < ctx.tuning.dwell_seconds:
            evac.waiting_for = f"the cool-down of {ctx.tuning.cooldown_seconds:.0f} s before failback"
            return False
        # No verdict is asked for: an evacuated region serves (almost) nothing, so its signal
        # stays far under its forecast however healthy it is again. The failback's first step
        # is the probe that judges it (and aborts, with a backoff, if it still fails).
    ready = ctx.obs.deployments_ready.get(evac.region)
    if ready is not True:
        evac.waiting_for = f"the Deployments of {evac.region} to be Ready" + (" (unknown)" if ready is None else "")
        return False
    evac.failback_step = 1
    evac.share = failback_share(step=1, step_percent=ctx.spec.failback.step_percent)
    evac.step_held_at = None
    work.milestone(evac, "failback_started")
    actor = Actor.SPEC_EVACUATE if released else Actor.FAILBACK
    reason = ("removed from spec.evacuate" if released else "cool-down over") + f"; step 1 at {evac.share:.0%}"
    work.transition(evac, to=Phase.FAILING_BACK, actor=actor, reason=reason, event="FailbackStarted")
    return True


def _failing_back(work: _Work, evac: RegionEvacuation, *, all_hold: bool, targets: list[_Target]) -> bool:
    """One failback step: wait until it holds, then for stepIntervalSeconds, then judge the signal."""
    ctx, policy = work.ctx, work.ctx.spec.failback
    moved = False
    if evac.step_held_at is None:
        if not all_hold:
            evac.waiting_for = _wait(evac, targets)
            return False
        evac.step_held_at, moved = _rfc3339(ctx.now), True
    if evac.share >= 1.0:
        reported = ctx.obs.served_share.get(evac.region)
        if evac.region != ctx.here and (reported is None or reported < 1.0):
            evac.waiting_for = (f"{evac.region} to report that it serves its whole share again"
                                f" (it reports {'nothing' if reported is None else f'{reported:g}'})")
            return moved
        _done(work, evac)
        return True
    if moved:
        return True
    if evac.region != ctx.here:
        # A savior does not judge a peer's failback: the peer's own operator does, and reports
        # the share it serves. Judging it here too raced the peer (a savior aborted a step the
        # peer had not yet taken, found by the drill); the savior follows the report instead.
        reported = ctx.obs.served_share.get(evac.region)
        if reported is None or reported < evac.share:
            evac.waiting_for = (f"{evac.region} to report that it serves {evac.share:.0%} of its share"
                                f" (it reports {'nothing' if reported is None else f'{reported:g}'})")
            return False
        _next_step(work, evac, why=f"{evac.region} reports serving {reported:g} of its share")
        return True
    held_for = _since(evac.step_held_at, ctx.now)
    if held_for < policy.step_interval_seconds:
        evac.waiting_for = f"step {evac.failback_step} at {evac.share:.0%} to hold for {policy.step_interval_seconds} s"
        return False
    signal = ctx.obs.signal.get(evac.region)
    if signal is None or signal.served is None or signal.forecast is None:
        evac.waiting_for = f"the served signal of {evac.region}"
        return False
    expected = signal.forecast * evac.share
    if signal.served < policy.ratio_threshold * expected:
        _back_to_evacuated(
            work, evac, actor=Actor.FAILBACK, backoff=True,
            reason=f"step {evac.failback_step} at {evac.share:.0%}: served {signal.served:g} < "
                   f"{policy.ratio_threshold:g} × forecast {signal.forecast:g} × share {evac.share:g}",
        )
        return True
    _next_step(work, evac, why=f"{evac.region}: served {signal.served:g} of {expected:g} expected")
    return True


def _next_step(work: _Work, evac: RegionEvacuation, *, why: str) -> None:
    """The step held: the next share, with an Event saying why."""
    evac.failback_step += 1
    evac.share = failback_share(step=evac.failback_step, step_percent=work.ctx.spec.failback.step_percent)
    evac.step_held_at = None
    work.event("FailbackStep", f"{why}; step {evac.failback_step} at {evac.share:.0%}")


def _done(work: _Work, evac: RegionEvacuation) -> None:
    work.milestone(evac, "failback_done")
    work.transition(evac, to=Phase.STEADY, actor=Actor.FAILBACK,
                    reason="the recorded weights are restored and hold", event="FailbackDone")
    work.status.last_evacuation = evac.timeline
    work.status.evacuations = [e for e in work.status.evacuations if e.region != evac.region]


# ---------------------------------------------------------------------------- writes


def _reason(work: _Work) -> str:
    parts = []
    for evac in work.status.evacuations:
        if evac.phase == Phase.FAILING_BACK:
            parts.append(f"failing back {evac.region} (step {evac.failback_step}, {evac.share:.0%})")
        else:
            parts.append(f"evacuating {evac.region} by {Actor(evac.timeline.actor).value}")
    return "; ".join(parts) or "restoring the recorded weights"


def _reconcile_routes(work: _Work, targets: list[_Target]) -> None:
    """Desired weights per route (DNS only once every proxy route holds), and the writes they need.

    The weights in force before the first change are recorded (in an evacuated region, from
    the decision on: all of its routes will change); once no evacuation is left and a route
    holds them again, the record is cleared. A write is made when the desired weights
    change, when something else changed them (DriftDetected), or again, unchanged, when its
    effect is not seen after ``retry_seconds``; never when the invariants refuse it.
    """
    ctx, status = work.ctx, work.status
    kept = {(TrafficProviderKind(w.provider), w.route): w for w in status.weights}
    proxy_hold = all(t.holds for t in targets if layer_of(t.provider) is Layer.PROXY)
    routes = []
    for target in targets:
        state = kept.get((target.provider, target.route)) or RouteWeights(provider=target.provider, route=target.route)
        state = state.model_copy(deep=True)
        routes.append(state)
        report, layer = target.report, layer_of(target.provider)
        reported = dict(report.weights) if report is not None and report.weights is not None else None
        if reported is not None:
            state.current = reported
        if target.weights is None:
            state.holds = False
            continue
        previous_desired, was_holding = state.desired, state.holds
        if layer is Layer.PROXY or proxy_hold:
            desired = target.weights
        else:
            desired = state.desired or state.current or target.weights
        owned = report.owned if report is not None else None
        state.holds = bool(reported is not None and report is not None and report.verified
                           and _same(reported, desired, owned))
        if state.holds or previous_desired != desired:
            state.conflict = False
        if not status.evacuations and state.recorded is not None and state.holds and _same(
            state.current or {}, state.recorded
        ):
            state.recorded = state.desired = state.written = state.written_at = state.drifted_at = None
            continue
        if state.recorded is None and state.current is not None and ctx.here in work.evacs:
            # This region is evacuated: every route of it will change. Recorded now, the record's
            # write (ahead of the actions, see the handler) is made while the saviors ungate,
            # not in the run that shifts the routes.
            state.recorded = dict(state.current)
        if state.current is not None and _same(state.current, desired, owned):
            state.desired = desired if state.recorded is not None else None
            continue
        if state.recorded is None and state.current is not None:
            state.recorded = dict(state.current)
        state.desired = desired
        if reported is None or report is None:
            continue  # cannot write what cannot be read; the evacuation waits on this route
        name = f"{target.provider.value} {target.route}"
        drift = was_holding and previous_desired == desired
        if drift:
            if _since(state.drifted_at, ctx.now) < ctx.tuning.dwell_seconds:
                state.conflict = True
                work.event("Conflict", f"{name}: something else set {_arrows(desired, reported)} again within"
                           f" {ctx.tuning.dwell_seconds:.0f} s; regionshift stops setting the same weights"
                           " (exclude them from the other writer, e.g. Argo CD ignoreDifferences)", warning=True)
            else:
                work.event("DriftDetected", f"{name}: something else set {_arrows(desired, reported)};"
                           " setting the weights again", warning=True)
            state.drifted_at = _rfc3339(ctx.now)
        if state.conflict and state.written == desired:
            continue
        if not (state.written != desired or drift or _since(state.written_at, ctx.now) >= ctx.tuning.retry_seconds):
            continue
        try:
            check_invariants(route=name, weights=desired, layer=layer, local=ctx.here,
                             resolvable=report.resolvable | {ctx.here},
                             serving_elsewhere=any(r not in desired and r not in work.evacs for r in ctx.domain))
        except WeightInvariantError as exc:
            if previous_desired != desired:
                work.event("WeightsRefused", str(exc), warning=True)
            continue
        keys = sorted(owned if owned is not None else desired.keys() | reported.keys())
        mine = {k: desired.get(k, 0) for k in keys}
        before = {k: reported.get(k, 0) for k in keys}
        reason = _reason(work)
        work.actions.append(SetWeights(provider=target.provider, route=target.route, weights=_pairs(mine),
                                       previous=_pairs(before), reason=reason))
        if state.written != desired or drift:
            work.event("WeightsChanged", f"weights {_arrows(before, mine)} on {name}: {reason}")
        state.written, state.written_at = dict(desired), _rfc3339(ctx.now)
    status.weights = routes


def _reconcile_gates(work: _Work, targets: list[_Target]) -> None:
    """Open this region's evacuation gate while it saves another region; close it once traffic has left.

    The gate is this RegionFailover's ``status.evacuationGate``: one write opens every
    DarkCluster it owns, whose controller combines it with each one's ``spec.gate`` (and its
    own ``status.evacuationGate``). Moving it is an action (:class:`OpenGates`,
    :class:`CloseGates`) that the handler carries out ahead of the rest of the run, so that
    the dark pods do not wait for the routes. A DarkCluster whose own evacuation gate is Open
    is closed with the RegionFailover's, and the close is made again after
    ``retry_seconds`` while it is observed Open.
    """
    ctx, status = work.ctx, work.status
    saving = [e.region for e in status.evacuations if e.region != ctx.here]
    if saving:
        want = Gate.OPEN
    elif all(t.holds for t in targets):
        want = Gate.CLOSED
    else:
        return  # traffic may still reach the dark pods: keep the gates as they are
    names = tuple(dc.name for dc in ctx.obs.dark_clusters)
    held = tuple(dc.name for dc in ctx.obs.dark_clusters if dc.evacuation_gate == Gate.OPEN) if want is Gate.CLOSED else ()
    changed = (status.evacuation_gate or Gate.CLOSED) != want
    if not changed and (not held or _since(status.evacuation_gate_written_at, ctx.now) < ctx.tuning.retry_seconds):
        return
    if want is Gate.OPEN:
        reason = "saving " + ", ".join(saving)
        work.actions.append(OpenGates(region=ctx.here, dark_clusters=names, reason=reason))
    else:
        reason = "no evacuation left and every route holds its recorded weights"
        work.actions.append(CloseGates(region=ctx.here, dark_clusters=names, reason=reason, held=held))
    if changed:
        verb = "ungating" if want is Gate.OPEN else "re-gating"
        work.event("Ungating" if want is Gate.OPEN else "Regating",
                   f"{verb} {len(names)} DarkCluster(s) of {ctx.here}: {reason}")
    status.evacuation_gate, status.evacuation_gate_written_at = want, _rfc3339(ctx.now)


def _summarise(work: _Work, *, before: RegionFailoverStatus) -> None:
    """The domain's phase, each region's role, and an Event when an evacuation gets stuck."""
    status, ctx = work.status, work.ctx
    waited = {e.region: e.waiting_for for e in before.evacuations}
    for evac in status.evacuations:
        if evac.waiting_for and evac.waiting_for.startswith("no savior") and waited.get(evac.region) != evac.waiting_for:
            work.event("NoSavior", f"{evac.region}: {evac.waiting_for}", warning=True)
    phases = {Phase(e.phase) for e in status.evacuations}
    status.phase = next((p for p in _URGENCY if p in phases), Phase.STEADY)
    status.evacuated_regions = evacuated_regions(status.evacuations)
    if not status.evacuations:
        status.roles = None
        return
    roles = {}
    for region in ctx.domain:
        if region in work.evacs:
            roles[region] = Role.EVACUATED
        elif (status.savior_capacity or {}).get(region, 0) > 0:
            roles[region] = Role.SAVIOR
        else:
            roles[region] = Role.SERVING
    status.roles = roles
