"""The drill's traffic simulator without a cluster: the demand curve, the flow, the parsers."""

from __future__ import annotations

import numpy as np
import pytest

from regionshift.adapters.traffic.peers import PEER_LABEL
from regionshift.local.simulator import (
    DemandCurve,
    RegionView,
    TrafficSimulator,
    dns_weights_of,
    flow,
    ready_endpoints_of,
    route_weights_of,
)

START = 1_000_000.0
REGIONS = ("east", "west")


def curve(**kw: float) -> DemandCurve:
    return DemandCurve(**{"peak_sps": 100.0, "start": START, **kw})


# --- demand -------------------------------------------------------------------------


@pytest.mark.parametrize("start_local_hour", [2.0, 8.0, 14.0, 20.0])  # trough side, rising, peak side, peak
def test_the_curve_peaks_at_its_peak_hour_whatever_the_phase_at_the_start(start_local_hour: float) -> None:
    c = curve(start_local_hour=start_local_hour, peak_hour=20.0, trough_fraction=0.25)
    to_peak = ((20.0 - start_local_hour) % 24) * 3600
    assert c.local_hour(START) == pytest.approx(start_local_hour)
    assert c.expected(START + to_peak) == pytest.approx(100.0)
    assert c.expected(START + to_peak + 12 * 3600) == pytest.approx(25.0)


def test_a_compressed_day_runs_its_whole_shape_in_day_seconds() -> None:
    c = curve(start_local_hour=20.0, day_seconds=600.0)
    assert c.expected(START + 300.0) == pytest.approx(c.trough_fraction * 100.0)
    assert c.expected(START + 600.0) == pytest.approx(100.0)


def test_noise_is_over_dispersed_beyond_poisson_and_keeps_the_mean() -> None:
    rng = np.random.default_rng(1)
    c = curve(start_local_hour=20.0, dispersion=0.1, burst_probability=0.0)
    samples = np.array([c.sample(START, seconds=1.0, rng=rng) for _ in range(20_000)])
    assert samples.mean() == pytest.approx(100.0, rel=0.02)
    # Poisson alone would give a variance of 100; gamma-Poisson with CV 0.1 adds 100² × 0.01.
    assert samples.var() == pytest.approx(100.0 + 100.0, rel=0.1)


def test_bursts_lift_some_ticks_by_the_burst_size() -> None:
    rng = np.random.default_rng(2)
    c = curve(start_local_hour=20.0, peak_sps=10_000.0, dispersion=0.0, burst_probability=0.05, burst_size=0.5)
    samples = np.array([c.sample(START, seconds=1.0, rng=rng) for _ in range(4_000)])
    burst_share = np.mean(samples > 13_000)
    assert 0.03 < burst_share < 0.07


# --- flow ---------------------------------------------------------------------------


def steady(ready: int = 10) -> dict[str, RegionView]:
    return {r: RegionView(ready_endpoints={"web": ready}) for r in REGIONS}


def test_in_steady_state_each_region_serves_its_own_users() -> None:
    result = flow(demand={"east": 100.0, "west": 50.0}, views=steady(), services=["web"], pod_capacity_sps=20.0)
    assert result.served == {"east": 100.0, "west": 50.0}
    assert result.arriving == {"east": 100.0, "west": 50.0}
    assert result.lost == 0.0


def test_a_region_serves_no_more_than_its_ready_endpoints_carry() -> None:
    result = flow(demand={"east": 100.0, "west": 50.0}, views=steady(ready=3), services=["web"], pod_capacity_sps=20.0)
    assert result.served == {"east": 60.0, "west": 50.0}
    assert result.lost == pytest.approx(40.0)


def test_an_impaired_region_loses_its_share_of_capacity() -> None:
    result = flow(demand={"east": 100.0, "west": 50.0}, views=steady(), services=["web"], pod_capacity_sps=20.0,
                  impaired={"west": 0.8})
    assert result.served["west"] == pytest.approx(40.0)  # 10 pods x 20 x 0.2
    result = flow(demand={"east": 100.0, "west": 50.0}, views=steady(ready=2), services=["web"], pod_capacity_sps=20.0,
                  impaired={"west": 1.0})
    assert result.served["west"] == 0.0 and result.lost == pytest.approx(100.0 - 40.0 + 50.0)


def test_an_evacuated_region_sends_its_users_to_the_savior_through_its_route_and_dns() -> None:
    views = {
        "east": RegionView(ready_endpoints={"web": 10}),
        "west": RegionView(ready_endpoints={"web": 0}, route_weights={"web": {"west": 0, "east": 100}},
                           dns_weights={"web": 0}),
    }
    result = flow(demand={"east": 100.0, "west": 50.0}, views=views, services=["web"], pod_capacity_sps=20.0)
    assert result.served == {"east": 150.0, "west": 0.0}
    assert result.arriving == {"east": 150.0, "west": 0.0}  # DNS at 0: west's users resolve to east


def test_the_route_alone_forwards_what_still_reaches_the_region() -> None:
    views = {
        "east": RegionView(ready_endpoints={"web": 10}),
        "west": RegionView(ready_endpoints={"web": 10}, route_weights={"web": {"west": 50, "east": 50}}),
    }
    result = flow(demand={"east": 100.0, "west": 50.0}, views=views, services=["web"], pod_capacity_sps=20.0)
    assert result.arriving == {"east": 100.0, "west": 50.0}
    assert result.served == {"east": 125.0, "west": 25.0}


def test_every_dns_record_at_zero_answers_them_all_alike() -> None:
    views = {r: RegionView(ready_endpoints={"web": 10}, dns_weights={"web": 0}) for r in REGIONS}
    result = flow(demand={"east": 100.0, "west": 50.0}, views=views, services=["web"], pod_capacity_sps=20.0)
    assert result.arriving == {"east": 75.0, "west": 75.0}


def test_a_route_whose_weights_are_all_zero_serves_nothing() -> None:
    views = {**steady(), "west": RegionView(ready_endpoints={"web": 10}, route_weights={"web": {"west": 0, "east": 0}})}
    result = flow(demand={"east": 100.0, "west": 50.0}, views=views, services=["web"], pod_capacity_sps=20.0)
    assert result.served == {"east": 100.0, "west": 0.0}
    assert result.lost == pytest.approx(50.0)


def test_demand_spreads_evenly_over_services_each_limited_by_its_own_pods() -> None:
    views = {r: RegionView(ready_endpoints={"a": 10, "b": 1}) for r in REGIONS}
    result = flow(demand={"east": 100.0, "west": 100.0}, views=views, services=["a", "b"], pod_capacity_sps=20.0)
    assert result.served == {"east": 70.0, "west": 70.0}  # a: 50 served, b: 20 of 50


# --- parsing what a cluster answers ---------------------------------------------------


def endpoint_slice(service: str, ready: list[bool | None], *, peer: str | None = None) -> dict:
    labels = {"kubernetes.io/service-name": service, **({PEER_LABEL: peer} if peer else {})}
    endpoints = [{"conditions": {} if r is None else {"ready": r}} for r in ready]
    return {"metadata": {"labels": labels}, "endpoints": endpoints}


def test_ready_endpoints_count_ready_or_unknown_and_skip_peer_slices_and_other_services() -> None:
    slices = [
        endpoint_slice("web", [True, False, None]),
        endpoint_slice("web", [True]),
        endpoint_slice("web-east", [True], peer="east"),
        endpoint_slice("other", [True, True]),
    ]
    assert ready_endpoints_of(slices, services=["web", "api"]) == {"web": 3, "api": 0}


def test_route_weights_map_backend_refs_to_regions_and_leave_out_what_cannot_be_parsed() -> None:
    def route(name: str, refs: list[dict]) -> dict:
        return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"rules": [{"backendRefs": refs}]}}

    routes = [
        route("web", [{"name": "web", "port": 80, "weight": 0}, {"name": "web-east", "port": 80, "weight": 100}]),
        route("api", [{"name": "somewhere-else", "port": 80}]),
        route("unlisted", [{"name": "unlisted", "port": 80}]),
    ]
    got = route_weights_of(routes, region="west", peers=["east"], services=["web", "api"])
    assert got == {"web": {"west": 0, "east": 100}}


def test_dns_weights_are_this_regions_own_record() -> None:
    def record(name: str, weights: dict[str, str]) -> dict:
        return {"metadata": {"name": name, "namespace": "ns"},
                "spec": {"endpoints": [{"dnsName": "x.test", "setIdentifier": r,
                                        "providerSpecific": [{"name": "aws/weight", "value": w}]}
                                       for r, w in weights.items()]}}

    records = [record("web", {"west": "0", "east": "100"}), record("api", {"west": "many"})]
    assert dns_weights_of(records, region="west", services=["web", "api"]) == {"web": 0}


# --- the ticking simulator, with an injected clock and stand-in readers ------------------


def test_a_tick_exports_what_flowed_and_a_region_that_stops_answering_keeps_its_last_view() -> None:
    now = [START]
    answers = {"east": RegionView(ready_endpoints={"web": 10}), "west": RegionView(ready_endpoints={"web": 10})}
    failing: set[str] = set()

    def reader(region: str):
        def read() -> RegionView:
            if region in failing:
                raise ConnectionError("region down")
            return answers[region]
        return read

    quiet = {r: curve(start_local_hour=20.0, dispersion=0.0, burst_probability=0.0, peak_sps=1000.0,
                      trough_fraction=1.0, counting_noise=False) for r in REGIONS}
    sim = TrafficSimulator(curves=quiet, readers={r: reader(r) for r in REGIONS}, services=["web"],
                           pod_capacity_sps=200.0, clock=lambda: now[0])
    first = sim.tick()
    assert first.served == {"east": 1000.0, "west": 1000.0}
    sample = sim.registry.get_sample_value
    assert sample("regionshift_drill_served_sps", {"region": "east"}) == first.served["east"]
    assert sample("regionshift_drill_expected_sps", {"region": "west"}) == pytest.approx(1000.0)

    failing.add("west")
    sim.impair("west", 1.0)
    now[0] += 2.0
    second = sim.tick()
    assert "west" in sim.read_errors and second.served["west"] == 0.0
    assert sample("regionshift_drill_ready_endpoints", {"region": "west"}) == 10  # the last view it had
    total = sample("regionshift_drill_served_total", {"region": "east"})
    assert total == pytest.approx(first.served["east"] * 1.0 + second.served["east"] * 2.0)
