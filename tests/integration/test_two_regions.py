"""Two local regions, an operator process in each, one shared Prometheus: the ground of issue 7's tests.

This smoke test proves the infrastructure the two-region tests stand on
(:mod:`tests.support.regions`, :mod:`tests.support.shared_signal`,
:mod:`tests.support.region_traffic`, :mod:`tests.support.region_failover`): both regions
run, each with the user's traffic objects and a RegionFailover in DryRun mode; each
region's operator runs as its own ``regionshift run`` process watching its namespace; the
shared Prometheus serves both the signal every operator reads and the metrics every
operator exports (told apart by ``instance`` and ``operator_region``); and each operator
reaches its verdicts on both regions from that one signal, on its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from regionshift.adapters.history_store import configmap_name
from regionshift.adapters.kube import EVACUATION_FIELD_MANAGER
from regionshift.adapters.traffic import provider_for
from regionshift.adapters.traffic.gatewayapi import GatewayAPIProvider
from regionshift.adapters.traffic.ingress_nginx import CANARY_WEIGHT
from regionshift.decide.darkcapacity import shadow_name
from tests.support.audit import Write, writes
from tests.support.cluster import eventually
from tests.support.prometheus_server import PrometheusServer
from tests.support.region_traffic import APP, DNS_WEIGHT, ROUTE_WEIGHT, install_traffic
from tests.support.regions import (  # noqa: F401 - fixtures
    OPERATOR_REGION_LABEL,
    TwoRegions,
    region_clusters,
    second_region_cluster,
    two_regions,
)
from tests.support.shared_signal import LiveSignal, SignalScenario, shared_prometheus
from tests.support.synthetic_day import SyntheticDay
from tests.support.traffic import traffic_crds  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

DARK_CAPACITY_MANAGERS = frozenset({"regionshift-darkcluster", "regionshift-sizing"})
"""The field managers that keep dark capacity warm, in every mode (not actions of an evacuation)."""


def dark_capacity_upkeep(write: Write) -> bool:
    """A write that keeps dark capacity warm, which every mode does: never a gate, a route or a user's object.

    The shadow Deployment (``web-dark``), the DarkCluster's status from its own writers without
    an evacuation gate, and the forecast's ConfigMap cache.
    """
    if write.resource == "deployments":
        return write.name == shadow_name(APP)
    if write.resource == "darkclusters/status":
        status = (write.body or {}).get("status") or {}
        return write.field_manager in DARK_CAPACITY_MANAGERS and "evacuationGate" not in status
    if write.resource == "configmaps":
        return write.name == configmap_name("domain")
    return False

SMOKE = SignalScenario(name="smoke", run=SyntheticDay(start=time.time(), levels={"east": 1000.0, "west": 800.0}))


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    """The shared Prometheus: the smoke scenario's eight days of history, and every operator once added."""
    with shared_prometheus([SMOKE]) as server:
        yield server


def healthy_verdict_series(prometheus: PrometheusServer) -> set[tuple[str, str, str, str]]:
    """(operator_region, instance, namespace, region) of every scraped Healthy verdict."""
    return {
        (s["metric"].get(OPERATOR_REGION_LABEL, ""), s["metric"]["instance"], s["metric"]["namespace"],
         s["metric"]["region"])
        for s in prometheus.query('regionshift_region_verdict{regionshift_region_verdict="Healthy"} == 1')
    }


def test_each_region_runs_its_own_operator_and_both_read_one_prometheus(
    two_regions: TwoRegions, prometheus: PrometheusServer
) -> None:
    with LiveSignal(prometheus=prometheus, scenario=SMOKE) as live:
        traffic = two_regions.install_domain(prometheus=prometheus, scenario=SMOKE)  # mode DryRun

        pickup = two_regions.start_operators(prometheus=prometheus)
        print(f"operators scraped {', '.join(f'{r} after {s:.1f} s' for r, s in pickup.items())}")

        both_healthy = {name: "Healthy" for name in two_regions.names}
        for region in two_regions:
            eventually(lambda: region.verdicts() == both_healthy, timeout_seconds=90,
                       what=f"{region.name}'s RegionFailover judging both regions Healthy")

        # Each operator's verdicts on both regions reach the shared Prometheus under its own instance.
        expected = {(region.name, region.metrics_address, region.namespace, judged)
                    for region in two_regions for judged in two_regions.names}
        eventually(lambda: expected <= healthy_verdict_series(prometheus), timeout_seconds=30,
                   what="both operators' verdicts scraped")
        memory = two_regions.resident_memory()
        print("memory (PSS) MiB: " + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in memory.items()))

        for region in two_regions:
            eventually(lambda: region.kube.get_custom("darkclusters", "web"), timeout_seconds=60,
                       what=f"{region.name}'s DarkCluster for web")
            assert traffic[region.name].missing() == []

        # A regional drop in the shared signal: each operator reaches the same verdict on its own.
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        live.scale(west=0.3)
        for region in two_regions:
            eventually(lambda: region.verdicts() == {"east": "Healthy", "west": "Unhealthy"}, timeout_seconds=30,
                       what=f"{region.name}'s operator judging west Unhealthy")

        # DryRun: the plan in status and an Event; the audit log shows no write but those and the upkeep of dark capacity.
        for region in two_regions:
            plan = eventually(lambda: region.failover_status().get("plan"), timeout_seconds=30,
                              what=f"{region.name}'s plan")
            assert plan["regions"] == ["west"]
        time.sleep(3)  # a few more evacuation runs, each of which could have written
        for region in two_regions:
            done = [w for w in writes(region.cluster.audit_log, namespace=region.namespace, since=since) if w.succeeded]
            # Keeping dark capacity warm goes on in DryRun (sizing the shadow Deployment, the
            # DarkCluster's counts, the forecast's ConfigMap cache); none of it is an evacuation.
            written = {w.resource for w in done if not dark_capacity_upkeep(w)}
            assert written <= {"regionfailovers/status", "events"}, [(w.resource, w.name, w.field_manager) for w in done]
            assert "regionfailovers/status" in written  # the log does record this operator's writes
            assert not any(w.field_manager == EVACUATION_FIELD_MANAGER and w.resource != "regionfailovers/status"
                           for w in done)
        for region in two_regions:
            assert region.operator.running()
            objects = traffic[region.name]
            # DryRun writes nothing but status and Events: the user's weights are as written, no canary.
            assert objects.route_weights() == {"web": ROUTE_WEIGHT}
            assert objects.dns_weight() == str(DNS_WEIGHT)
            assert objects.ingress("web-regionshift") is None

def test_the_traffic_objects_are_what_every_provider_expects(two_regions: TwoRegions) -> None:
    """Each provider reads, shifts and restores the user's objects exactly, peers at ``<region>.localhost``."""
    east, west = two_regions["east"], two_regions["west"]
    objects = install_traffic(east.kube, region="east", replicas=2)
    install_traffic(west.kube, region="west", replicas=2)
    gateways = {peer["name"]: peer["gatewayAddress"] for peer in two_regions.peers_of("east")}
    before = {"route": objects.http_route()["spec"], "dns": objects.dns_endpoint()["spec"]}

    gateway = provider_for("GatewayAPI", api=east.kube.api, namespace=east.namespace, region="east", peers=gateways)
    assert isinstance(gateway, GatewayAPIProvider)
    assert gateway.read(route="web").weights == {"east": ROUTE_WEIGHT}
    gateway.ensure_peer_services(route="web", gateways=gateways)
    recorded = gateway.read(route="web").weights
    gateway.apply(route="web", desired={"east": 0, "west": ROUTE_WEIGHT})
    assert objects.route_weights() == {"web": 0, "web-west": ROUTE_WEIGHT}
    gateway.restore(route="web", recorded=recorded)
    assert objects.http_route()["spec"] == before["route"]

    nginx = provider_for("IngressNginx", api=east.kube.api, namespace=east.namespace, region="east", peers=gateways)
    recorded = nginx.read(route="web").weights
    assert recorded == {"east": 100, "peers": 0}
    nginx.apply(route="web", desired={"east": 0, "west": 1})
    assert objects.ingress("web-regionshift")["metadata"]["annotations"][CANARY_WEIGHT] == "100"
    nginx.restore(route="web", recorded={"east": 1})
    assert objects.ingress("web-regionshift") is None

    dns = provider_for("ExternalDNS", api=east.kube.api, namespace=east.namespace, region="east", peers=gateways)
    assert dns.read(route="web").weights == {"east": DNS_WEIGHT}
    dns.apply(route="web", desired={"east": 0, "west": DNS_WEIGHT})
    assert objects.dns_weight() == "0"
    dns.restore(route="web", recorded={"east": DNS_WEIGHT})
    assert objects.dns_endpoint()["spec"] == before["dns"]
