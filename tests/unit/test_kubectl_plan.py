"""``kubectl regionshift plan``: the plan computed now by the operator's DryRun logic, without a cluster.

The plugin runs :func:`regionshift.decide.evacuation.step` in DryRun mode with
``spec.evacuate: [REGION]`` over the observations of the moment; these tests give it
observations by hand (a region ``east`` with two DarkClusters, peers ``west`` and
``central`` with warm capacity, an HTTPRoute and a DNS record) and check what it plans, that
it is what the operator's own DryRun would write into ``status.plan``, and the text.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from regionshift.api.models import (
    Gate,
    Phase,
    RegionFailoverSpec,
    RegionFailoverStatus,
    TrafficProviderKind,
    Verdict,
)
from regionshift.decide.evacuation import (
    DarkClusterObservation,
    Observations,
    RegionCapacity,
    RouteReport,
    step,
)
from regionshift.kubectl.live import dark_cluster_observations
from regionshift.kubectl.plan import PlanError, plan_now
from regionshift.kubectl.render import render_plan

NOW = dt.datetime(2026, 11, 29, 3, 0, 0, tzinfo=dt.timezone.utc)
GW, DNS = TrafficProviderKind.GATEWAY_API, TrafficProviderKind.EXTERNAL_DNS
H, U = Verdict.HEALTHY, Verdict.UNHEALTHY


def spec(**overrides: Any) -> RegionFailoverSpec:
    body: dict[str, Any] = {
        "region": "east",
        "peers": [{"name": "west"}, {"name": "central"}],
        "signal": {"prometheusUrl": "http://prometheus:9090", "query": 'x{region="{region}"}'},
        "selector": {"matchLabels": {"app": "web"}},
        "traffic": [{"kind": "GatewayAPI", "routes": ["web"]}, {"kind": "ExternalDNS", "routes": ["web"]}],
        "mode": "Manual",
        **overrides,
    }
    return RegionFailoverSpec.model_validate(body)


def observations(*, verdicts: dict[str, Verdict] | None = None, west: int = 10, central: int = 30,
                 gate: Gate = Gate.CLOSED) -> Observations:
    return Observations(
        verdicts=verdicts if verdicts is not None else {"east": H, "west": H, "central": H},
        dark_clusters=[DarkClusterObservation(name="api", evacuation_gate=gate, warm=4, ready=0),
                       DarkClusterObservation(name="web", evacuation_gate=gate, warm=2, ready=0)],
        capacity={"west": RegionCapacity(warm=west, ready=0), "central": RegionCapacity(warm=central, ready=0)},
        routes=[RouteReport(provider=GW, route="web", weights={"east": 100}, verified=True,
                            resolvable=frozenset({"west", "central"})),
                RouteReport(provider=DNS, route="web", weights={"east": 100}, verified=True,
                            owned=frozenset({"east"}))],
    )


def rf(the_spec: RegionFailoverSpec, status: RegionFailoverStatus | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "streaming", "namespace": "shop", "uid": "u1"},
            "spec": the_spec.wire(), "status": (status or RegionFailoverStatus()).wire()}


def test_evacuating_a_peer_ungates_this_regions_dark_capacity_and_leaves_its_own_routes() -> None:
    computed = plan_now(spec=spec(), status=RegionFailoverStatus(phase=Phase.STEADY), region="west",
                        observations=observations(), now=NOW)
    assert computed.plan is not None
    assert computed.plan.regions == ["west"]
    assert computed.plan.ungate == ["api", "web"]
    assert computed.plan.weights == []  # east's own routes carry none of west's weight
    assert computed.warm == {"east": 6, "west": 10, "central": 30}


def test_evacuating_this_region_moves_its_weight_to_the_saviors_in_proportion_to_their_warm_capacity() -> None:
    computed = plan_now(spec=spec(), status=RegionFailoverStatus(), region="east", observations=observations(),
                        now=NOW)
    assert computed.plan is not None and computed.plan.ungate == []  # this region is the one going dark
    planned = {(w.provider, w.route): w.to_weights for w in computed.plan.weights}
    proxy = planned[(GW.value, "web")]
    assert proxy["east"] == 0 and proxy["central"] == 3 * proxy["west"] > 0
    assert planned[(DNS.value, "web")] == {"east": 0}  # a savior serves elsewhere: east's own record may go to 0


def test_the_plan_is_what_the_operators_dry_run_writes_into_status_plan() -> None:
    seen = observations()
    for region in ("east", "west"):
        operator = step(spec=spec(mode="DryRun", evacuate=[region]), status=RegionFailoverStatus(),
                        observations=seen, now=NOW)
        assert operator.writes == ()
        computed = plan_now(spec=spec(mode="Automatic"), status=RegionFailoverStatus(), region=region,
                            observations=seen, now=NOW)
        assert computed.plan == operator.status.plan


def test_a_plan_the_operator_wrote_is_compared_with_the_one_computed_now() -> None:
    written = step(spec=spec(mode="DryRun", evacuate=["east"]), status=RegionFailoverStatus(),
                   observations=observations(), now=NOW).status
    same = plan_now(spec=spec(mode="DryRun", evacuate=["east"]), status=written, region="east",
                    observations=observations(), now=NOW)
    assert same.matches_stored is True
    moved = plan_now(spec=spec(mode="DryRun", evacuate=["east"]), status=written, region="east",
                     observations=observations(central=0), now=NOW)
    assert moved.matches_stored is False
    assert "differs" in render_plan(rf=rf(spec()), computed=moved)


def test_regions_unhealthy_now_are_planned_with_the_region_asked_for() -> None:
    computed = plan_now(spec=spec(), status=RegionFailoverStatus(), region="east",
                        observations=observations(verdicts={"east": H, "west": U, "central": H}), now=NOW)
    assert computed.plan is not None and computed.plan.regions == ["east", "west"] and computed.together == ["west"]
    proxy = next(w.to_weights for w in computed.plan.weights if w.provider == GW.value)
    assert proxy.get("west", 0) == 0 and proxy["central"] > 0  # an Unhealthy region saves nobody
    assert "planned together with west" in render_plan(rf=rf(spec()), computed=computed)


def test_without_warm_capacity_anywhere_the_plan_says_the_weights_stay() -> None:
    computed = plan_now(spec=spec(), status=RegionFailoverStatus(), region="east",
                        observations=observations(west=0, central=0), now=NOW)
    assert computed.plan is not None
    assert "no savior has warm dark capacity" in computed.plan.message


def test_a_region_evacuated_already_has_nothing_more_to_plan() -> None:
    evacuated = RegionFailoverStatus.model_validate({"phase": "Evacuated", "evacuations": [{
        "region": "west", "phase": "Evacuated", "actor": "SpecEvacuate", "reason": "listed in spec.evacuate",
        "share": 0.0, "lastTransitionAt": "2026-11-29T02:50:00Z",
        "timeline": {"region": "west", "actor": "SpecEvacuate", "decidedAt": "2026-11-29T02:50:00Z"}}]})
    computed = plan_now(spec=spec(evacuate=["west"]), status=evacuated, region="west",
                        observations=observations(gate=Gate.OPEN), now=NOW)
    assert computed.plan is None and computed.evacuation is not None
    assert "west is Evacuated here already" in render_plan(rf=rf(spec(), evacuated), computed=computed)


def test_a_region_outside_the_domain_is_refused() -> None:
    with pytest.raises(PlanError, match="not a region"):
        plan_now(spec=spec(), status=RegionFailoverStatus(), region="mars", observations=observations(), now=NOW)


def test_the_text_shows_the_plan_what_it_was_computed_from_and_what_could_not_be_read() -> None:
    computed = plan_now(spec=spec(mode="Automatic"), status=RegionFailoverStatus(), region="east",
                        observations=observations(), now=NOW)
    text = render_plan(rf=rf(spec(mode="Automatic")), computed=computed, prometheus_url="http://prometheus:9090",
                       problems=["route unreadable: RouteNotFound: web"])
    lines = text.splitlines()
    assert lines[0] == "RegionFailover shop/streaming  region east  mode Automatic: evacuating east now"
    assert "  ungate here: nothing" in lines
    rows = {line.split()[1]: line.split() for line in lines if line.startswith("  web")}
    assert rows["GatewayAPI"][2] == "east=100" and rows["GatewayAPI"][3] == "central=750"
    assert "  verdicts: east Healthy, west Healthy, central Healthy" in lines
    assert any(line.startswith("  warm dark replicas: east 6 (here), west 10, central 30") for line in lines)
    assert "  ! route unreadable: RouteNotFound: web" in lines
    assert "Nothing was written." in text and "kubectl regionshift evacuate east" in text
    assert all(len(line) <= 120 for line in lines if not line.startswith("  evacuating"))


def test_dark_clusters_are_those_of_the_region_failover_with_transplanted_replicas_counted() -> None:
    def dc(name: str, uid: str, **status: Any) -> dict[str, Any]:
        return {"metadata": {"name": name, "ownerReferences": [{"uid": uid}]}, "status": status}

    seen = dark_cluster_observations([
        dc("web", "u1", warmReplicas=2, readyReplicas=0, evacuationGate="Open"),
        dc("other", "u2", warmReplicas=9),
        dc("api", "u1", warmReplicas=1, readyReplicas=1, transplantedReplicas=2, desiredReplicas=3),
    ], uid="u1")
    assert [(d.name, d.evacuation_gate, d.warm, d.ready) for d in seen] == [
        ("api", Gate.CLOSED.value, 3, 3), ("web", Gate.OPEN.value, 2, 0)]
