"""The evacuation state machine, driven through a small simulated world.

Every tick feeds the status back through its wire form (what a restarted operator reads),
and checks that calling the step again with its own output and the same observations
returns the same status and no actions at all (idempotence, no new writes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from regionshift.api.models import (
    Actor,
    Gate,
    Phase,
    RegionFailoverSpec,
    RegionFailoverStatus,
    Role,
    TrafficProviderKind,
    Verdict,
)
from regionshift.decide.evacuation import (
    CloseGates,
    DarkClusterObservation,
    Decision,
    FailbackSignal,
    Observations,
    OpenGates,
    PostEvent,
    Recommend,
    RegionCapacity,
    RouteReport,
    SetWeights,
    Tuning,
    step,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
GW, DNS = TrafficProviderKind.GATEWAY_API, TrafficProviderKind.EXTERNAL_DNS
H, U, HB, UNK = Verdict.HEALTHY, Verdict.UNHEALTHY, Verdict.HELD_BACK, Verdict.UNKNOWN
WEB_RECORDED = {"east": 100, "west": 0, "central": 0}


def make_spec(**overrides: Any) -> RegionFailoverSpec:
    body: dict[str, Any] = {
        "region": "east",
        "peers": [{"name": "west"}, {"name": "central"}],
        "signal": {"prometheusUrl": "http://prometheus:9090", "query": 'x{region="{region}"}'},
        "selector": {"matchLabels": {"regionshift.io/participate": "true"}},
        "traffic": [{"kind": "GatewayAPI", "routes": ["web"]}, {"kind": "ExternalDNS", "routes": ["dns"]}],
        "mode": "Automatic",
        "failback": {"stepPercent": 50, "stepIntervalSeconds": 60, "ratioThreshold": 0.9},
    }
    body.update(overrides)
    return RegionFailoverSpec.model_validate(body)


@dataclass
class World:
    """The regions as the east operator sees them; carries actions out at once."""

    verdicts: dict[str, Verdict] = field(default_factory=lambda: {"east": H, "west": H, "central": H})
    dark: dict[str, list[Any]] = field(default_factory=lambda: {"api": [Gate.CLOSED, 4, 0], "web": [Gate.CLOSED, 2, 0]})
    capacity: dict[str, RegionCapacity] = field(default_factory=lambda: {
        "west": RegionCapacity(warm=10, ready=0), "central": RegionCapacity(warm=30, ready=0)})
    routes: dict[tuple[TrafficProviderKind, str], dict[str, int]] = field(default_factory=lambda: {
        (GW, "web"): dict(WEB_RECORDED), (DNS, "dns"): {"east": 100}})
    verified: bool = True
    ready: dict[str, bool] = field(default_factory=lambda: {"east": True, "west": True, "central": True})
    signal: dict[str, FailbackSignal] = field(default_factory=dict)
    served_share: dict[str, float] = field(default_factory=dict)
    slow_pods: bool = False
    drop_writes: bool = False
    own_gates: dict[str, Gate] = field(default_factory=dict)
    """Each DarkCluster's own status.evacuationGate (the gate in force is ``dark[name][0]``)."""

    def observations(self) -> Observations:
        return Observations(
            verdicts=dict(self.verdicts),
            dark_clusters=[DarkClusterObservation(name=n, evacuation_gate=self.own_gates.get(n, Gate.CLOSED), warm=w,
                                                  ready=r)
                           for n, (g, w, r) in sorted(self.dark.items())],
            capacity=dict(self.capacity),
            deployments_ready=dict(self.ready),
            routes=[RouteReport(provider=k, route=r, weights=dict(w), verified=self.verified,
                                resolvable=frozenset({"west", "central"}) if k is GW else frozenset(),
                                owned=None if k is GW else frozenset({"east"}))
                    for (k, r), w in sorted(self.routes.items())],
            signal=dict(self.signal),
            served_share=dict(self.served_share),
        )

    def apply(self, actions: tuple[Any, ...]) -> None:
        for action in actions:
            if isinstance(action, OpenGates):
                for name in action.dark_clusters:
                    self.dark[name][0] = Gate.OPEN
                    self.dark[name][2] = 0 if self.slow_pods else self.dark[name][1]
            elif isinstance(action, CloseGates):
                for name in action.held:
                    self.own_gates[name] = Gate.CLOSED
                for name in action.dark_clusters:
                    if self.own_gates.get(name, Gate.CLOSED) is Gate.CLOSED:
                        self.dark[name][0], self.dark[name][2] = Gate.CLOSED, 0
            elif isinstance(action, SetWeights) and not self.drop_writes:
                self.routes[(action.provider, action.route)].update(action.as_dict())

    def savior_ready(self) -> None:
        self.capacity = {r: RegionCapacity(warm=c.warm, ready=c.warm) for r, c in self.capacity.items()}


class Run:
    """One RegionFailover of region east ticking through time."""

    def __init__(self, spec: RegionFailoverSpec | None = None, world: World | None = None,
                 status: RegionFailoverStatus | None = None, now: datetime = T0) -> None:
        self.spec = spec or make_spec()
        self.world = world or World()
        self.status = status or RegionFailoverStatus(phase=Phase.STEADY)
        self.now = now
        self.last: Decision | None = None

    def tick(self, seconds: float = 1.0) -> Decision:
        self.now += timedelta(seconds=seconds)
        obs = self.world.observations()
        decision = step(spec=self.spec, status=self.status, observations=obs, now=self.now)
        again = step(spec=self.spec, status=decision.status, observations=obs, now=self.now)
        assert again.status.wire() == decision.status.wire(), "not idempotent: the status moved again"
        assert again.actions == (), f"not idempotent: {again.actions}"
        self.world.apply(decision.actions)
        # A restart: the next step knows only what the status says, as the API server stores it.
        self.status = RegionFailoverStatus.model_validate(decision.status.wire())
        self.last = decision
        return decision

    def until(self, phase: Phase, *, seconds: float = 1.0, limit: int = 50) -> Decision:
        for _ in range(limit):
            decision = self.tick(seconds)
            if decision.status.phase == phase:
                return decision
        raise AssertionError(f"never reached {phase}: {self.status.phase}, {self.evac()}")

    def evac(self, region: str = "east") -> Any:
        return next((e for e in self.status.evacuations if e.region == region), None)

    def weights(self, route: str = "web") -> dict[str, int]:
        key = (GW, route) if route == "web" else (DNS, route)
        return self.world.routes[key]


def events(decision: Decision) -> list[str]:
    return [a.reason for a in decision.actions if isinstance(a, PostEvent)]


def writes(decision: Decision) -> list[str]:
    return [type(a).__name__ for a in decision.writes]


# ---------------------------------------------------------------------------- the full cycles


def evacuate_east(run: Run) -> None:
    run.world.verdicts["east"] = U
    d = run.tick()
    assert run.status.phase == Phase.EVACUATING and "Evacuating" in events(d)
    assert d.writes == () and run.evac().waiting_for == "a savior with Ready dark capacity"
    run.world.savior_ready()
    d = run.tick()
    assert writes(d) == ["SetWeights"], "proxy routes first"
    assert run.weights() == {"east": 0, "west": 250, "central": 750}, "split by Ready dark capacity"
    assert run.weights("dns") == {"east": 100}, "DNS waits until the proxy holds"
    d = run.tick()
    assert writes(d) == ["SetWeights"] and run.weights("dns") == {"east": 0}
    run.until(Phase.EVACUATED)


def test_evacuated_region_full_cycle_restores_the_recorded_weights_exactly() -> None:
    run = Run()
    evacuate_east(run)
    evac = run.evac()
    assert evac.timeline.ungated_at and evac.timeline.shifted_at and evac.timeline.settled_at
    assert evac.timeline.settled_after_seconds == 3.0
    assert run.status.roles == {"east": Role.EVACUATED, "west": Role.SAVIOR, "central": Role.SAVIOR}
    web = next(w for w in run.status.weights if w.route == "web")
    assert web.recorded == WEB_RECORDED and web.holds

    run.world.verdicts["east"] = UNK  # an evacuated region serves nothing: detection cannot judge it
    run.tick(100)
    assert run.status.phase == Phase.EVACUATED and "cool-down" in run.evac().waiting_for
    d = run.tick(300)
    assert run.status.phase == Phase.FAILING_BACK and "FailbackStarted" in events(d)
    assert run.weights() == WEB_RECORDED, "with DNS in play the proxy route comes back at the first step"
    run.tick()
    assert run.weights("dns") == {"east": 50}, "then DNS steps by stepPercent"
    run.tick()
    assert run.evac().step_held_at is not None
    run.world.signal["east"] = FailbackSignal(served=45.0, forecast=100.0)  # 0.9 × 100 × 0.5: just enough
    d = run.tick(60)
    assert "FailbackStep" in events(d) and run.evac().share == 1.0
    assert run.weights("dns") == {"east": 100}
    d = run.until(Phase.STEADY)
    assert "FailbackDone" in events(d)
    assert run.weights() == WEB_RECORDED and run.weights("dns") == {"east": 100}
    assert all(w.recorded is None and w.desired is None for w in run.status.weights)
    assert run.status.evacuations == [] and run.status.roles is None
    last = run.status.last_evacuation
    assert last and last.failback_done_at and last.failback_started_after_seconds is not None
    assert [(t.from_phase, t.to_phase, t.actor) for t in run.status.history] == [
        ("Steady", "Evacuating", "Verdict"), ("Evacuating", "Evacuated", "Verdict"),
        ("Evacuated", "FailingBack", "Failback"), ("FailingBack", "Steady", "Failback")]


def test_an_evacuated_region_records_its_weights_at_the_decision_before_any_savior_is_ready() -> None:
    run = Run()
    run.world.verdicts["east"] = U
    d = run.tick()
    assert d.writes == () and run.evac().waiting_for == "a savior with Ready dark capacity"
    recorded = {w.route: w.recorded for w in run.status.weights}
    assert recorded == {"web": WEB_RECORDED, "dns": {"east": 100}}, "the record's write need not wait for the shift"
    run.world.savior_ready()
    run.tick()
    assert {w.route: w.recorded for w in run.status.weights} == recorded, "the first change keeps the record"


def test_the_savior_gate_is_one_write_of_its_own_status_and_a_restart_does_not_repeat_it() -> None:
    run = Run(world=World(slow_pods=True))
    run.world.verdicts["west"] = U
    d = run.tick()
    assert writes(d) == ["OpenGates"] and run.status.evacuation_gate == Gate.OPEN
    assert run.world.own_gates == {}, "no DarkCluster is written: the RegionFailover's gate opens them"
    for _ in range(3):  # restarts and runs while the dark pods start: status alone says the gate is open
        assert run.tick(40).writes == ()
    assert "dark pods to be ungated and Ready" in run.evac("west").waiting_for


def test_a_dark_cluster_holding_its_own_evacuation_gate_open_is_closed_with_the_region_failovers() -> None:
    run = Run(world=World())
    run.world.own_gates["web"] = Gate.OPEN  # an older regionshift kept the gate on the DarkCluster
    run.world.verdicts["west"] = U
    run.until(Phase.EVACUATED)
    run.world.verdicts["west"] = UNK
    run.world.signal["west"] = FailbackSignal(served=100.0, forecast=100.0)
    run.world.served_share["west"] = 1.0
    run.until(Phase.STEADY, seconds=100)
    run.tick()
    assert run.status.evacuation_gate == Gate.CLOSED
    assert run.world.own_gates == {"web": Gate.CLOSED} and all(dc[0] == Gate.CLOSED for dc in run.world.dark.values())


def test_a_dark_cluster_gate_that_will_not_close_is_closed_again_after_the_retry_time() -> None:
    run = Run(world=World())
    run.world.own_gates["web"] = Gate.OPEN
    run.status = RegionFailoverStatus(phase=Phase.STEADY, evacuation_gate=Gate.CLOSED,
                                      evacuation_gate_written_at="2026-01-01T00:00:00Z")
    original = run.world.apply
    run.world.apply = lambda actions: None  # type: ignore[method-assign]  # the write is lost
    d = run.tick()
    assert [(type(a), a.held) for a in d.writes] == [(CloseGates, ("web",))]
    assert run.tick(5).writes == (), "not again within retry_seconds"
    assert [type(a) for a in run.tick(30).writes] == [CloseGates]
    run.world.apply = original  # type: ignore[method-assign]


def test_savior_ungates_first_raises_nothing_it_does_not_own_and_regates_after_failback() -> None:
    run = Run(world=World(slow_pods=True))
    run.world.verdicts["west"] = U
    d = run.tick()
    assert d.writes == (OpenGates(region="east", dark_clusters=("api", "web"), reason="saving west"),)
    assert "Ungating" in events(d)
    run.tick()
    assert "dark pods to be ungated and Ready" in run.evac("west").waiting_for, "weights wait for Ready pods"
    for dc in run.world.dark.values():
        dc[2] = dc[1]
    run.until(Phase.EVACUATED)
    assert run.status.roles["east"] == Role.SAVIOR and run.status.savior_capacity == {"east": 6}
    assert run.weights() == WEB_RECORDED, "west carries no weight on east's route: nothing to move"
    run.world.verdicts["west"] = UNK
    run.world.signal["west"] = FailbackSignal(served=50.0, forecast=100.0)
    run.until(Phase.FAILING_BACK, seconds=100)
    run.tick(61)
    run.world.signal["west"] = FailbackSignal(served=0.0, forecast=100.0)  # west has not moved yet
    run.tick(61)
    assert run.status.phase == Phase.FAILING_BACK and run.evac("west").share == 0.5, "a savior never aborts a peer's step"
    assert run.evac("west").waiting_for == "west to report that it serves 50% of its share (it reports nothing)"
    run.world.served_share["west"] = 0.5  # west's own operator took its step and reports it
    run.tick()
    assert run.evac("west").share == 1.0
    run.tick()
    assert run.evac("west").waiting_for == "west to report that it serves its whole share again (it reports 0.5)"
    assert all(dc[0] == Gate.OPEN for dc in run.world.dark.values()), "dark pods serve until west's traffic left"
    run.world.served_share["west"] = 1.0
    d = run.tick()
    assert [type(a) for a in d.writes] == [CloseGates], "re-gated once the recorded weights hold"
    assert all(dc[0] == Gate.CLOSED for dc in run.world.dark.values())
    assert run.status.evacuation_gate == Gate.CLOSED


# ---------------------------------------------------------------------------- triggers and modes


@pytest.mark.parametrize(
    ("mode", "verdict", "evacuate", "phase", "write_kinds", "event"),
    [
        ("Automatic", U, [], Phase.EVACUATING, ["OpenGates"], "Evacuating"),
        ("Automatic", HB, [], Phase.STEADY, [], None),
        ("Automatic", UNK, [], Phase.STEADY, [], None),
        ("Manual", U, [], Phase.STEADY, [], "EvacuationRecommended"),
        ("Manual", H, ["west"], Phase.EVACUATING, ["OpenGates"], "Evacuating"),
        ("Manual", HB, ["west"], Phase.EVACUATING, ["OpenGates"], "Evacuating"),
        ("DryRun", U, [], Phase.STEADY, [], "EvacuationPlanned"),
        ("DryRun", H, ["west"], Phase.STEADY, [], "EvacuationPlanned"),
    ],
)
def test_triggers_and_modes(mode: str, verdict: Verdict, evacuate: list[str], phase: Phase,
                            write_kinds: list[str], event: str | None) -> None:
    run = Run(spec=make_spec(mode=mode, evacuate=evacuate))
    run.world.verdicts["west"] = verdict
    d = run.tick()
    assert run.status.phase == phase and writes(d) == write_kinds
    assert (event in events(d)) if event else events(d) == []


def test_dry_run_publishes_the_whole_plan_and_writes_nothing() -> None:
    run = Run(spec=make_spec(mode="DryRun"))
    run.world.verdicts["east"] = U
    d = run.tick()
    assert d.writes == () and run.status.phase == Phase.STEADY and run.status.evacuations == []
    plan = run.status.plan
    assert plan and plan.regions == ["east"] and plan.ungate == []
    assert [(p.route, p.from_weights, p.to_weights) for p in plan.weights] == [
        ("web", WEB_RECORDED, {"east": 0, "west": 250, "central": 750}), ("dns", {"east": 100}, {"east": 0})]
    assert "GatewayAPI web: central 0→750, east 100→0, west 0→250; ExternalDNS dns: east 100→0" in plan.message
    assert run.tick().actions == (), "the same plan is not announced twice"
    run.world.verdicts["east"], run.world.verdicts["west"] = H, U
    d = run.tick()
    assert run.status.plan.regions == ["west"] and run.status.plan.ungate == ["api", "web"]
    assert events(d) == ["EvacuationPlanned"] and d.writes == ()


def test_switching_to_dry_run_freezes_an_evacuation_under_way() -> None:
    run = Run()
    run.world.verdicts["east"] = U
    run.world.savior_ready()
    run.tick()
    frozen = run.status.wire()
    run.spec = make_spec(mode="DryRun")
    d = run.tick(600)
    assert d.actions == () and run.status.wire() == frozen, "nothing moves, nothing is written"
    run.spec = make_spec()
    run.until(Phase.EVACUATED)


def test_manual_recommends_then_the_button_evacuates() -> None:
    run = Run(spec=make_spec(mode="Manual"))
    run.world.verdicts["east"] = U
    d = run.tick()
    assert [a for a in d.actions if isinstance(a, Recommend)][0].regions == ("east",)
    assert run.status.recommendation.regions == ["east"] and run.status.plan.regions == ["east"]
    assert d.writes == ()
    run.tick(30)
    assert run.status.recommendation.since == "2026-11-01T12:00:01Z", "the recommendation keeps its time"
    run.spec = make_spec(mode="Manual", evacuate=["east"])
    run.tick()
    assert run.status.phase == Phase.EVACUATING and run.evac().actor == Actor.SPEC_EVACUATE
    assert run.status.recommendation is None and run.status.plan is None


def test_button_removed_starts_failback_at_once_and_button_wins_over_a_healthy_verdict() -> None:
    run = Run(spec=make_spec(mode="Manual", evacuate=["east"]))
    run.world.savior_ready()
    run.until(Phase.EVACUATED)
    run.tick(3600)
    assert run.status.phase == Phase.EVACUATED and run.evac().waiting_for == "removal from spec.evacuate"
    run.spec = make_spec(mode="Manual")
    d = run.tick()
    assert run.status.phase == Phase.FAILING_BACK, "no cool-down after the button is released"
    assert run.status.history[-1].actor == Actor.SPEC_EVACUATE and "removed from spec.evacuate" in run.status.history[-1].reason
    assert "FailbackStarted" in events(d)
    run.spec = make_spec(mode="Manual", evacuate=["east"])
    d = run.tick()
    assert run.status.phase == Phase.EVACUATED and "FailbackStopped" in events(d)
    assert run.evac().aborts == 0 and run.evac().backoff_until is None
    run.until(Phase.EVACUATED)
    assert run.weights("dns") == {"east": 0}


# ---------------------------------------------------------------------------- hard cases


def test_two_regions_failing_at_once() -> None:
    run = Run()
    run.world.verdicts.update(east=U, west=U)
    run.world.savior_ready()
    d = run.tick()
    assert sorted(e.region for e in run.status.evacuations) == ["east", "west"]
    assert events(d).count("Evacuating") == 2
    run.until(Phase.EVACUATED)
    assert run.weights() == {"east": 0, "west": 0, "central": 1000}
    assert run.status.roles == {"east": Role.EVACUATED, "west": Role.EVACUATED, "central": Role.SAVIOR}


def test_two_peers_failing_at_once_make_this_region_the_only_savior() -> None:
    run = Run()
    run.world.routes[(GW, "web")] = {"east": 80, "west": 10, "central": 10}  # east spills a little over
    run.world.verdicts.update(west=U, central=U)
    d = run.tick()
    assert writes(d) == ["OpenGates"], "ungated once for both"
    run.until(Phase.EVACUATED)
    assert run.weights() == {"east": 1000, "west": 0, "central": 0}
    assert run.status.roles == {"east": Role.SAVIOR, "west": Role.EVACUATED, "central": Role.EVACUATED}
    run.world.verdicts.update(west=UNK, central=UNK)
    run.world.served_share.update(west=1.0, central=1.0)
    run.world.signal.update(west=FailbackSignal(served=60.0, forecast=100.0),
                            central=FailbackSignal(served=60.0, forecast=100.0))
    run.until(Phase.STEADY, seconds=61, limit=30)
    assert run.weights() == {"east": 80, "west": 10, "central": 10}
    assert all(dc[0] == Gate.CLOSED for dc in run.world.dark.values())


def test_the_last_serving_region_is_never_evacuated() -> None:
    run = Run()
    run.world.verdicts.update(east=U, west=U, central=U)
    d = run.tick()
    assert run.status.evacuations == [] and d.writes == ()
    assert set(run.status.deferred) == {"east", "west", "central"}
    assert events(d).count("EvacuationDeferred") == 3


def test_a_savior_failing_mid_evacuation_loses_its_share() -> None:
    run = Run()
    run.world.verdicts["east"] = U
    run.world.savior_ready()
    run.world.verified = False  # the gateway has not accepted the shift yet
    run.tick()
    assert run.weights() == {"east": 0, "west": 250, "central": 750}
    run.world.verdicts["central"] = U
    d = run.tick()
    assert run.evac("central") is not None, "the failing savior is evacuated in turn"
    assert run.weights() == {"east": 0, "west": 1000, "central": 0}
    assert "WeightsChanged" in events(d)
    run.world.verified = True
    run.until(Phase.EVACUATED)
    assert run.status.roles["central"] == Role.EVACUATED and run.status.savior_capacity == {"west": 10}


def test_a_savior_failing_in_manual_mode_gets_no_share_but_is_only_recommended() -> None:
    run = Run(spec=make_spec(mode="Manual", evacuate=["east"]))
    run.world.savior_ready()
    run.world.verdicts["central"] = U
    d = run.tick()
    assert run.weights() == {"east": 0, "west": 1000, "central": 0}
    assert run.status.recommendation.regions == ["central"] and "EvacuationRecommended" in events(d)


def test_the_evacuated_region_healing_mid_evacuation_finishes_then_waits_for_the_cool_down() -> None:
    run = Run()
    run.world.verdicts["east"] = U
    run.tick()
    run.world.verdicts["east"] = H
    run.world.savior_ready()
    run.until(Phase.EVACUATED)
    run.tick(200)
    assert run.status.phase == Phase.EVACUATED
    run.tick(100)
    assert run.status.phase == Phase.FAILING_BACK


def test_an_evacuation_with_no_warm_savior_ends_when_the_region_is_healthy_again() -> None:
    # Dark capacity off everywhere (the drill's baseline): the evacuation can move nothing.
    run = Run()
    run.world.capacity = {"west": RegionCapacity(warm=0, ready=0), "central": RegionCapacity(warm=0, ready=0)}
    run.world.verdicts["east"] = U
    run.tick()
    run.tick(5)
    assert run.status.phase == Phase.EVACUATING
    assert run.status.evacuations[0].waiting_for == "a savior with Ready dark capacity"
    run.world.verdicts["east"] = UNK
    run.tick(5)
    assert run.status.phase == Phase.EVACUATING, "only a Healthy verdict ends it"
    run.world.verdicts["east"] = H
    d = run.tick(5)
    assert run.status.phase == Phase.STEADY and run.status.evacuations == []
    assert "EvacuationCancelled" in events(d)
    assert run.status.history[-1].to_phase == Phase.STEADY and run.status.history[-1].actor == Actor.VERDICT
    assert run.status.last_evacuation is not None and run.status.last_evacuation.ungated_at is None
    assert run.weights() == dict(WEB_RECORDED), "no route moved"


def test_a_stuck_evacuation_by_the_button_or_with_a_warm_savior_goes_on_though_healthy() -> None:
    run = Run(spec=make_spec(evacuate=["east"]))
    run.world.capacity = {"west": RegionCapacity(warm=0, ready=0), "central": RegionCapacity(warm=0, ready=0)}
    run.tick()
    run.tick(5)
    assert run.status.phase == Phase.EVACUATING, "the button's evacuation waits for capacity"
    run = Run()
    run.world.verdicts["east"] = U
    run.tick()
    run.world.verdicts["east"] = H
    run.tick(5)
    assert run.status.phase == Phase.EVACUATING, "a savior has warm capacity: it ungates and the evacuation goes on"


def test_a_verdict_flipping_back_within_the_dwell_does_not_flap() -> None:
    run = Run()
    evacuate_east(run)
    run.world.verdicts["east"] = H
    run.world.signal["east"] = FailbackSignal(served=100.0, forecast=100.0)
    run.until(Phase.STEADY, seconds=61, limit=20)
    done_at = run.now
    run.world.verdicts["east"] = U
    d = run.tick(10)
    assert run.status.phase == Phase.STEADY and "EvacuationDeferred" in events(d)
    assert run.status.deferred["east"].startswith("dwell after its last transition")
    assert run.tick(10).actions == (), "deferred once, not announced again"
    run.world.verdicts["east"] = H
    run.tick(10)
    assert run.status.deferred is None
    run.world.verdicts["east"] = U
    run.now = done_at + timedelta(seconds=59)
    run.tick(2)
    assert run.status.phase == Phase.EVACUATING


def test_aborted_failback_backs_off_and_doubles() -> None:
    run = Run()
    evacuate_east(run)
    run.world.verdicts["east"] = UNK
    run.world.signal["east"] = FailbackSignal(served=10.0, forecast=100.0)
    run.until(Phase.FAILING_BACK, seconds=301)
    run.tick()
    run.tick()
    d = run.tick(60)
    assert run.status.phase == Phase.EVACUATED and "FailbackAborted" in events(d)
    evac = run.evac()
    assert evac.aborts == 1 and "served 10 < 0.9 × forecast 100 × share 0.5" in evac.reason
    assert (datetime.fromisoformat(evac.backoff_until) - run.now).total_seconds() == 300
    run.tick()
    assert run.weights("dns") == {"east": 0}, "back to the evacuation's weights"
    run.tick(200)
    assert run.status.phase == Phase.EVACUATED and "backoff" in run.evac().waiting_for
    run.until(Phase.FAILING_BACK, seconds=50)
    run.tick()
    run.tick()
    run.tick(60)
    assert run.status.phase == Phase.EVACUATED and run.evac().aborts == 2
    assert (datetime.fromisoformat(run.evac().backoff_until) - run.now).total_seconds() == 600
    assert run.status.history[-1].actor == Actor.FAILBACK


def test_failback_waits_for_the_regions_own_deployments() -> None:
    run = Run()
    evacuate_east(run)
    run.world.verdicts["east"] = UNK
    run.world.ready["east"] = False
    run.tick(400)
    assert run.status.phase == Phase.EVACUATED and run.evac().waiting_for == "the Deployments of east to be Ready"
    run.world.ready["east"] = True
    run.tick()
    assert run.status.phase == Phase.FAILING_BACK


def test_failback_starts_after_the_cool_down_though_the_evacuated_regions_own_verdict_stays_unhealthy() -> None:
    # Its traffic is on the saviors, so its signal stays near 0 and detection keeps saying
    # Unhealthy however healthy it is again (the drill found a failback waiting forever):
    # the first failback step is the probe, not the verdict.
    run = Run()
    evacuate_east(run)
    assert run.world.verdicts["east"] is U
    run.tick(100)
    assert run.status.phase == Phase.EVACUATED and "cool-down" in run.evac().waiting_for
    d = run.tick(300)
    assert run.status.phase == Phase.FAILING_BACK and "FailbackStarted" in events(d)
    run.tick()
    run.tick()
    run.world.signal["east"] = FailbackSignal(served=10.0, forecast=100.0)  # still broken: 10 < 0.9 × 100 × 0.5
    d = run.tick(60)
    assert run.status.phase == Phase.EVACUATED and "FailbackAborted" in events(d)


def test_no_resolving_savior_keeps_the_weight_and_the_evacuation_waits_with_an_event() -> None:
    run = Run(spec=make_spec(traffic=[{"kind": "GatewayAPI", "routes": ["web"]}]))
    run.world.routes = {(GW, "web"): dict(WEB_RECORDED)}
    run.world.capacity = {"west": RegionCapacity(warm=5, ready=5)}
    plain = run.world.observations
    run.world.observations = lambda: replace(  # type: ignore[method-assign]
        plain(), routes=[replace(r, resolvable=frozenset()) for r in plain().routes])
    run.world.verdicts["east"] = U
    d = run.tick()
    assert d.writes == () and run.weights() == WEB_RECORDED, "a peer that does not resolve gets nothing"
    assert run.status.phase == Phase.EVACUATING and "NoSavior" in events(d)
    assert run.evac().waiting_for.startswith("no savior can take the weight of east on GatewayAPI web")
    assert run.tick(5).actions == ()


def test_unsafe_weights_are_refused_with_an_event_and_never_written() -> None:
    run = Run(spec=make_spec(traffic=[{"kind": "GatewayAPI", "routes": ["web"]}]))
    run.world.routes = {(GW, "web"): {"east": 100, "west": 5, "central": 0}}
    plain = run.world.observations
    run.world.observations = lambda: replace(  # type: ignore[method-assign]
        plain(), routes=[replace(r, resolvable=frozenset({"central"})) for r in plain().routes])
    run.world.verdicts["east"] = U
    run.world.savior_ready()
    d = run.tick()
    assert d.writes == () and "WeightsRefused" in events(d)
    refused = [a.message for a in d.actions if isinstance(a, PostEvent) and a.reason == "WeightsRefused"][0]
    assert "west would get weight" in refused and "does not resolve" in refused
    assert run.tick(60).actions == (), "refused once, not again and again"


def test_drift_is_set_again_with_an_event() -> None:
    run = Run()
    evacuate_east(run)
    run.world.routes[(GW, "web")]["east"] = 100  # a GitOps sync re-applies the user's manifest
    d = run.tick()
    assert "DriftDetected" in events(d) and writes(d) == ["SetWeights"]
    assert run.weights()["east"] == 0


def test_a_foreign_writer_overwriting_twice_within_the_dwell_is_a_conflict_regionshift_stops_fighting() -> None:
    run = Run()
    evacuate_east(run)
    run.world.routes[(GW, "web")]["east"] = 100
    assert "DriftDetected" in events(run.tick(10))
    run.tick(10)  # regionshift sees its weights hold again
    run.world.routes[(GW, "web")]["east"] = 100  # the same writer again, within the dwell
    d = run.tick(10)
    assert "Conflict" in events(d) and d.writes == ()
    web = next(w for w in run.status.weights if w.route == "web")
    assert web.conflict and not web.holds
    assert run.tick(120).actions == (), "no more fighting, no repeated Event"
    run.world.routes[(GW, "web")]["east"] = 0  # the other writer learns to leave the weight alone
    run.tick()
    assert not next(w for w in run.status.weights if w.route == "web").conflict


def test_a_write_that_does_not_land_is_retried_after_the_retry_time() -> None:
    run = Run()
    run.world.verdicts["east"] = U
    run.world.savior_ready()
    run.world.drop_writes = True
    assert writes(run.tick()) == ["SetWeights"]
    assert run.tick(10).writes == (), "no new write before the retry time"
    d = run.tick(30)
    assert writes(d) == ["SetWeights"] and "WeightsChanged" not in events(d), "the same write again, once"
    run.world.drop_writes = False
    run.tick(30)
    run.until(Phase.EVACUATED)


def test_an_unreadable_route_holds_the_evacuation_back() -> None:
    run = Run()
    plain = run.world.observations
    run.world.observations = lambda: replace(  # type: ignore[method-assign]
        plain(), routes=[replace(r, weights=None, error="HTTPRoute web not found") if r.route == "web" else r
                         for r in plain().routes])
    run.world.verdicts["east"] = U
    run.world.savior_ready()
    d = run.tick()
    assert d.writes == () and run.status.phase == Phase.EVACUATING
    assert run.evac().waiting_for == "routes to hold their weights: GatewayAPI web (HTTPRoute web not found)"


def test_an_evacuation_of_a_region_removed_from_the_peers_ends() -> None:
    run = Run()
    run.world.verdicts["west"] = U
    run.tick()
    run.spec = make_spec(peers=[{"name": "central"}])
    d = run.tick()
    assert run.status.evacuations == [] and "EvacuationDropped" in events(d)


@pytest.mark.parametrize("seed", range(12))
def test_random_walks_never_break_an_invariant_and_always_come_home(seed: int) -> None:
    import random

    rng = random.Random(seed)
    run = Run()
    for _ in range(150):
        region = rng.choice(["east", "west", "central"])
        run.world.verdicts[region] = rng.choice([H, H, U, HB, UNK])
        if rng.random() < 0.1:
            run.spec = make_spec(evacuate=rng.choice([[], ["east"], ["west"], ["east", "central"]]),
                                 mode=rng.choice(["Automatic", "Automatic", "Manual", "DryRun"]))
        if rng.random() < 0.3:
            run.world.capacity = {r: RegionCapacity(warm=10, ready=rng.choice([0, 5, 10])) for r in ("west", "central")}
        run.world.verified = rng.random() < 0.8
        run.world.drop_writes = rng.random() < 0.1
        run.world.ready = {r: rng.random() < 0.8 for r in ("east", "west", "central")}
        run.world.signal = {r: FailbackSignal(served=rng.choice([20.0, 100.0]), forecast=100.0)
                            for r in ("east", "west", "central")}
        run.world.served_share = {r: rng.choice([0.0, 0.5, 1.0]) for r in ("west", "central")}
        d = run.tick(rng.choice([1, 5, 30, 120]))
        for action in d.writes:
            if isinstance(action, SetWeights) and action.provider is GW:
                assert any(w for _, w in action.weights), f"every weight 0: {action}"
        assert len(run.status.history) <= 20
        assert any(r not in {e.region for e in run.status.evacuations} for r in ("east", "west", "central"))
    run.spec = make_spec()
    run.world = World(dark=run.world.dark, routes=run.world.routes)
    run.world.savior_ready()
    run.world.signal = {r: FailbackSignal(served=100.0, forecast=100.0) for r in ("east", "west", "central")}
    run.world.served_share = {"west": 1.0, "central": 1.0}
    run.until(Phase.STEADY, seconds=120, limit=80)
    for _ in range(3):
        run.tick(120)
    assert run.status.phase == Phase.STEADY and run.status.evacuations == []
    assert run.weights() == WEB_RECORDED and run.weights("dns") == {"east": 100}
    assert all(dc[0] == Gate.CLOSED for dc in run.world.dark.values())


# ---------------------------------------------------------------------------- restarts


def snapshots() -> list[tuple[str, RegionFailoverStatus, World, datetime]]:
    """The status and the world at every phase of a full cycle, each a place to restart from."""
    run = Run()
    taken: list[tuple[str, RegionFailoverStatus, World, datetime]] = []

    def take(name: str) -> None:
        taken.append((name, RegionFailoverStatus.model_validate(run.status.wire()), copy.deepcopy(run.world), run.now))

    take("Steady before")
    run.world.verdicts["east"] = U
    run.tick()
    take("Evacuating, decided")
    run.world.savior_ready()
    run.tick()
    take("Evacuating, proxy shifted")
    run.tick()
    take("Evacuating, DNS shifted")
    run.until(Phase.EVACUATED)
    take("Evacuated")
    run.world.verdicts["east"] = UNK
    run.world.signal["east"] = FailbackSignal(served=100.0, forecast=100.0)
    run.until(Phase.FAILING_BACK, seconds=301)
    take("FailingBack, step 1 decided")
    run.tick()
    take("FailingBack, proxy restored")
    run.tick()
    run.tick()
    take("FailingBack, step 1 held")
    run.tick(60)
    take("FailingBack, last step")
    run.until(Phase.STEADY)
    take("Steady after")
    return taken


@pytest.mark.parametrize("index", range(10))
def test_restart_in_every_phase_resumes_from_the_status_alone(index: int) -> None:
    name, status, world, now = snapshots()[index]
    run = Run(status=status, world=world, now=now)
    run.world.verdicts["east"] = UNK if name != "Steady before" else H
    run.world.signal["east"] = FailbackSignal(served=100.0, forecast=100.0)
    if name != "Steady before":
        run.world.savior_ready()
        run.until(Phase.STEADY, seconds=61, limit=40)
    else:
        run.tick()
    assert run.status.phase == Phase.STEADY and run.status.evacuations == []
    assert run.weights() == WEB_RECORDED and run.weights("dns") == {"east": 100}
    assert all(w.recorded is None for w in run.status.weights)


def test_history_is_bounded() -> None:
    run = Run(spec=make_spec(mode="Manual", evacuate=["east"]))
    run.world.savior_ready()
    for _ in range(12):
        run.spec = make_spec(mode="Manual", evacuate=["east"])
        run.until(Phase.EVACUATED)
        run.spec = make_spec(mode="Manual")
        run.until(Phase.FAILING_BACK)
        run.tick()
    assert len(run.status.history) == Tuning().history_limit


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        step(spec=make_spec(), status=RegionFailoverStatus(), observations=World().observations(),
             now=datetime(2026, 1, 1))
