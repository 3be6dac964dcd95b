"""The drill's traffic simulator reading two real local regions.

What the simulator serves follows the live objects: the Ready endpoints the endpoints
controller puts in each Service's EndpointSlices, the HTTPRoute's backendRef weights and the
region's own DNSEndpoint weight, and the simulator's ``/metrics`` answers it on loopback.
The weights are written here the way regionshift's providers write them (a peer backendRef
``web-<peer>``, ``aws/weight`` as a string), so the test needs no operator.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from regionshift.local.drill import SIMULATED_FAULT, set_cluster_fault
from regionshift.local.simulator import DemandCurve, RegionReader, TrafficSimulator
from tests.support.cluster import Kube, eventually
from tests.support.region_traffic import APP, DNS_GROUP, GATEWAY_GROUP, PORT, install_traffic
from tests.support.regions import TwoRegions, region_clusters, second_region_cluster, two_regions  # noqa: F401
from tests.support.traffic import traffic_crds, traffic_kube  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

POD_CAPACITY = 100.0
"""Stream starts per second one Ready pod serves."""


def quiet_curve(peak: float) -> DemandCurve:
    """A flat demand (no noise, the peak for hours), so served figures are exact."""
    return DemandCurve(peak_sps=peak, start=time.time(), start_local_hour=20.0, trough_fraction=1.0,
                       dispersion=0.0, burst_probability=0.0, counting_noise=False)


def test_served_traffic_follows_ready_pods_route_weights_and_dns(two_regions: TwoRegions) -> None:
    east, west = two_regions["east"], two_regions["west"]
    install_traffic(east.kube, region="east", replicas=3)
    install_traffic(west.kube, region="west", replicas=2)
    readers = {
        r.name: RegionReader(api=r.kube.api, namespace=r.namespace, region=r.name,
                             peers=[p for p in two_regions.names if p != r.name], services=[APP]).read
        for r in (east, west)
    }
    curves = {"east": quiet_curve(200.0), "west": quiet_curve(150.0)}
    with TrafficSimulator(curves=curves, readers=readers, services=[APP], pod_capacity_sps=POD_CAPACITY,
                          tick_seconds=0.5) as sim:
        def served() -> dict[str, float]:
            assert sim.last is not None
            return {r: round(v, 6) for r, v in sim.last.served.items()}

        def state() -> str:
            return f"served {sim.last and sim.last.served}, views {sim.views}, read errors {sim.read_errors}"

        # Steady: every region serves its own users; east's demand fits 3 pods, west's 2.
        eventually(lambda: served() == {"east": 200.0, "west": 150.0}, timeout_seconds=60,
                   what="each region serving its own users once the pods are Ready", state=state)
        with urllib.request.urlopen(f"http://127.0.0.1:{sim.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert 'regionshift_drill_served_sps{region="west"} 150.0' in text

        # A fault through the cluster: west's pods go away, and so does what west serves.
        west.kube.apps.patch_namespaced_deployment_scale(APP, west.namespace, {"spec": {"replicas": 0}})
        eventually(lambda: served() == {"east": 200.0, "west": 0.0}, timeout_seconds=60,
                   what="west serving nothing without Ready pods", state=state)

        # West's route points at east and its DNS weight drops: east serves both, up to its 3 pods.
        west.kube.custom.patch_namespaced_custom_object(
            GATEWAY_GROUP, "v1", west.namespace, "httproutes", APP,
            {"spec": {"rules": [{"backendRefs": [{"name": APP, "port": PORT, "weight": 0},
                                                 {"name": f"{APP}-east", "port": PORT, "weight": 100}]}]}})
        eventually(lambda: served() == {"east": 300.0, "west": 0.0}, timeout_seconds=30,
                   what="west's users reaching east's 3 pods through west's route", state=state)
        assert sim.last is not None and sim.last.lost == pytest.approx(50.0)

        # East's capacity grows (as ungated dark pods would add it): nothing is lost any more.
        east.kube.apps.patch_namespaced_deployment_scale(APP, east.namespace, {"spec": {"replicas": 4}})
        eventually(lambda: served() == {"east": 350.0, "west": 0.0}, timeout_seconds=60,
                   what="east's fourth pod carrying the rest", state=state)

        # DNS: west's record at 0 sends its users to east directly.
        west.kube.custom.patch_namespaced_custom_object(
            DNS_GROUP, "v1alpha1", west.namespace, "dnsendpoints", APP,
            [{"op": "replace", "path": "/spec/endpoints/0/providerSpecific/0/value", "value": "0"}],
            _content_type="application/json-patch+json")
        eventually(lambda: sim.last is not None and round(sim.last.arriving["west"], 6) == 0.0,
                   timeout_seconds=30, what="west's users resolving to east", state=state)
        assert served() == {"east": 350.0, "west": 0.0}
        assert not sim.read_errors


def test_a_cluster_fault_turns_the_regions_pods_not_ready_through_kwok_and_what_it_serves_falls(
    traffic_kube: Kube,
) -> None:
    """The drill's ``--fault cluster``: pods stay Running but turn not Ready, then heal, through kwok's stages."""
    kube = traffic_kube
    install_traffic(kube, region="west", replicas=3)
    reader = RegionReader(api=kube.api, namespace=kube.namespace, region="west", peers=[], services=[APP]).read
    with TrafficSimulator(curves={"west": quiet_curve(200.0)}, readers={"west": reader}, services=[APP],
                          pod_capacity_sps=POD_CAPACITY, tick_seconds=0.5) as sim:
        def served() -> float:
            assert sim.last is not None
            return round(sim.last.served["west"], 6)

        def pods() -> list[tuple[str, str, str]]:
            found = kube.core.list_namespaced_pod(kube.namespace).items
            return [(p.status.phase, next((c.status for c in p.status.conditions or [] if c.type == "Ready"), "-"),
                     next((c.reason or "" for c in p.status.conditions or [] if c.type == "ContainersReady"), "-"))
                    for p in found]

        def state() -> str:
            return f"served {sim.last and sim.last.served}, pods {pods()}, views {sim.views}"

        eventually(lambda: served() == 200.0, timeout_seconds=60, what="west serving its users", state=state)

        assert set_cluster_fault(kube.api, namespace=kube.namespace, fail=True) == 3
        eventually(lambda: pods() == [("Running", "False", "SimulatedFault")] * 3, timeout_seconds=60,
                   what="every pod Running but not Ready", state=state)
        eventually(lambda: served() == 0.0, timeout_seconds=60,
                   what="west serving nothing once its endpoints are not ready", state=state)
        assert sim.views["west"].ready_endpoints == {APP: 0}
        found = kube.core.list_namespaced_pod(kube.namespace).items
        assert all(SIMULATED_FAULT in (p.metadata.annotations or {}) for p in found)

        assert set_cluster_fault(kube.api, namespace=kube.namespace, fail=False) == 3
        eventually(lambda: pods() == [("Running", "True", "")] * 3, timeout_seconds=60,
                   what="every pod Ready again", state=state)
        eventually(lambda: served() == 200.0, timeout_seconds=60, what="west serving again", state=state)
        # Healing twice patches nothing: no pod carries the annotation any more.
        assert set_cluster_fault(kube.api, namespace=kube.namespace, fail=False) == 0
