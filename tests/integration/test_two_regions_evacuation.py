"""Two regions evacuate and fail back on their own: one operator process per region, one shared Prometheus.

``west``'s signal drops in the shared Prometheus. Each region's operator judges it
Unhealthy on its own (Automatic mode) and acts on its own cluster only: ``east``, the
savior, opens the evacuation gate of its DarkClusters; once its dark pods are Ready it says
so through its exported ``regionshift_region_dark_replicas``, and ``west`` points its
HTTPRoute and its canary Ingress at ``east``, then lowers its own DNS record to 0. When
``west``'s signal heals, ``west`` fails back step by step, restores its recorded weights
exactly, reports that it serves its whole share again, and only then does ``east`` close its
gates. Mid-evacuation, every query of the Grafana dashboard must find data in the shared
Prometheus (:mod:`tests.support.dashboard`). The crash test does the same with each
operator killed (SIGKILL, at a failpoint) at every step where a crash could leave work half
done, and reads the audit log of both regions: every write made once, none missing, none
repeated.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.audit import Write, writes
from tests.support.cluster import eventually
from tests.support.dashboard import check_dashboard_finds_data
from tests.support.prometheus_server import PrometheusServer
from tests.support.region_traffic import DNS_WEIGHT, ROUTE_WEIGHT, RegionTraffic, deployment, http_route
from tests.support.regions import (  # noqa: F401 - fixtures
    Region,
    TwoRegions,
    region_clusters,
    second_region_cluster,
    two_regions,
)
from tests.support.shared_signal import LiveSignal, SignalScenario, shared_prometheus
from tests.support.synthetic_day import SyntheticDay
from tests.support.traffic import traffic_crds  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

RUN = SyntheticDay(start=time.time(), levels={"east": 1000.0, "west": 800.0})
EVACUATE = SignalScenario(name="evacuate", run=RUN)
CRASH = SignalScenario(name="crash", run=RUN, deployments=("web", "api"))
FAST = {"detection": {"dwellSeconds": 0}, "failback": {"cooldownSeconds": 2, "backoffSeconds": 5}}
CANARY = "web-regionshift"
RUN_FOR_EVACUATION = 120.0
"""Generous: detection needs 3 samples a second apart, the dark pods start under kwok, Prometheus scrapes every second."""


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    with shared_prometheus([EVACUATE, CRASH]) as server:
        yield server


def dark_clusters(region: Region) -> list[dict[str, Any]]:
    return region.kube.custom.list_namespaced_custom_object(  # type: ignore[no-any-return]
        "regionshift.io", "v1alpha1", region.namespace, "darkclusters")["items"]


def dark_pods_serving(region: Region) -> tuple[int, int]:
    """(dark pods Ready and carrying the serving labels, dark pods in all) of the region."""
    pods = [p for p in region.kube.pods("regionshift.io/dark-cluster") if not p["metadata"].get("deletionTimestamp")]
    serving = [p for p in pods if "app" in (p["metadata"].get("labels") or {}) and any(
        c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])]
    return len(serving), len(pods)


def warm(region: Region, count: int) -> bool:
    items = dark_clusters(region)
    return len(items) == count and all((dc.get("status") or {}).get("warmReplicas", 0) >= 2 for dc in items)


def state(two_regions: TwoRegions) -> str:
    """What each region's evacuation waits for, for a failure message."""
    out = []
    for region in two_regions:
        status = region.failover_status()
        out.append(f"{region.name}: phase {status.get('phase')}, verdicts {region.verdicts()}, evacuations "
                   f"{[(e['region'], e['phase'], e.get('share'), e.get('waitingFor')) for e in status.get('evacuations') or []]}"
                   f", weights {[(w['provider'], w.get('current'), w.get('desired'), w.get('holds')) for w in status.get('weights') or []]}")
    return "; ".join(out)


def route_holds(region: Region, provider: str, *, after_drift: bool = False) -> bool:
    """The region's status says the provider's route holds its weights (and, with ``after_drift``, that a drift was seen)."""
    return any(w["provider"] == provider and w.get("holds") and (w.get("driftedAt") or not after_drift)
               for w in region.failover_status().get("weights") or [])


def apply_as_gitops(region: Region, manifest: dict[str, Any]) -> None:
    """Server-side apply of the user's manifest, forced, as Argo CD or Flux sync it."""
    region.kube.custom.patch_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", region.namespace, "httproutes", manifest["metadata"]["name"], manifest,
        field_manager="gitops-controller", force=True, _content_type="application/apply-patch+yaml")


def phase(region: Region) -> str | None:
    return region.failover_status().get("phase")


def wait_steady_and_warm(two_regions: TwoRegions, dark_cluster_count: int) -> None:
    for region in two_regions:
        eventually(lambda: warm(region, dark_cluster_count), timeout_seconds=120, what=f"{region.name} warm")
        eventually(lambda: region.verdicts() == {"east": "Healthy", "west": "Healthy"}, timeout_seconds=90,
                   what=f"{region.name} judging both Healthy")
        eventually(lambda: phase(region) == "Steady", timeout_seconds=30, what=f"{region.name} Steady")


def evacuated(west: RegionTraffic) -> bool:
    canary = west.ingress(CANARY)
    return (west.route_weights().get("web") == 0 and west.route_weights().get("web-east", 0) > 0
            and canary is not None
            and canary["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/canary-weight") == "100"
            and west.dns_weight() == "0")


def restored(west: RegionTraffic, before: dict[str, Any]) -> bool:
    return (west.http_route()["spec"] == before["route"] and west.dns_endpoint()["spec"] == before["dns"]
            and west.ingress(CANARY) is None)


def test_a_region_whose_signal_drops_is_evacuated_onto_the_saviors_dark_capacity_and_fails_back(
    two_regions: TwoRegions, prometheus: PrometheusServer,
) -> None:
    east, west = two_regions["east"], two_regions["west"]
    with LiveSignal(prometheus=prometheus, scenario=EVACUATE) as live:
        traffic = two_regions.install_domain(prometheus=prometheus, scenario=EVACUATE, mode="Automatic",
                                             detection={"dwellSeconds": 60}, failback=FAST["failback"])
        two_regions.start_operators(prometheus=prometheus)
        wait_steady_and_warm(two_regions, 1)
        before = {"route": traffic["west"].http_route()["spec"], "dns": traffic["west"].dns_endpoint()["spec"]}
        assert dark_pods_serving(east)[0] == 0

        live.scale(west=0.1)
        eventually(lambda: evacuated(traffic["west"]), timeout_seconds=RUN_FOR_EVACUATION,
                   what="west's routes pointing at east and its DNS weight 0")
        ready, total = dark_pods_serving(east)
        assert ready == total >= 2, "every dark pod of the savior Ready and serving"
        assert east.failover_status().get("evacuationGate") == "Open", "the savior's gate, on its RegionFailover"
        eventually(lambda: all((dc.get("status") or {}).get("effectiveGate") == "Open" for dc in dark_clusters(east)),
                   timeout_seconds=60, what="east's DarkClusters reporting the gate in force Open")
        assert not any("evacuationGate" in (dc.get("status") or {}) for dc in dark_clusters(east)), \
            "no DarkCluster written by the evacuation"
        for region in two_regions:
            eventually(lambda: phase(region) == "Evacuated", timeout_seconds=30, what=f"{region.name} Evacuated")
        west_status = west.failover_status()
        timeline = west_status["evacuations"][0]["timeline"]
        assert timeline["actor"] == "Verdict" and timeline["shiftedAt"] and timeline["settledAt"]
        assert west_status["roles"] == {"east": "Savior", "west": "Evacuated"}
        assert east.failover_status()["roles"] == {"east": "Savior", "west": "Evacuated"}
        assert traffic["east"].route_weights() == {"web": ROUTE_WEIGHT}  # the savior's own routes are its own
        reasons = {e.reason for e in west.kube.events("domain")}
        assert {"Evacuating", "Evacuated", "WeightsChanged"} <= reasons, reasons
        # The Grafana dashboard: every one of its queries finds data in this Prometheus, which scrapes both operators.
        began = time.monotonic()
        ran = check_dashboard_finds_data(prometheus, namespaces=[region.namespace for region in two_regions],
                                         regionfailovers=["domain"])
        print(f"dashboard: all {ran} queries found data mid-evacuation ({time.monotonic() - began:.1f} s)", flush=True)

        # A GitOps tool re-applies the user's manifest: drift, set again; twice within the dwell: Conflict.
        apply_as_gitops(west, http_route())
        eventually(lambda: any(e.reason == "DriftDetected" for e in west.kube.events("domain")), timeout_seconds=30,
                   what="a DriftDetected Event")
        eventually(lambda: evacuated(traffic["west"]), timeout_seconds=30, what="the weights set again")
        eventually(lambda: route_holds(west, "GatewayAPI", after_drift=True), timeout_seconds=30,
                   what="west seeing its weights hold again after the drift")
        apply_as_gitops(west, http_route())
        conflict = eventually(lambda: next((c for c in west.failover_status().get("conditions") or []
                                            if c["type"] == "RoutesReady" and c["reason"] == "Conflict"), None),
                              timeout_seconds=30, what="RoutesReady=False, Conflict", state=lambda: state(two_regions))
        assert "GatewayAPI web" in conflict["message"]
        time.sleep(3)  # regionshift stops fighting: the GitOps tool's weights stay
        assert traffic["west"].route_weights() == {"web": ROUTE_WEIGHT}

        live.healthy()
        eventually(lambda: restored(traffic["west"], before), timeout_seconds=RUN_FOR_EVACUATION,
                   what="west's recorded weights restored exactly", state=lambda: state(two_regions))
        eventually(lambda: dark_pods_serving(east)[0] == 0, timeout_seconds=90, what="east's dark pods gated again")
        for region in two_regions:
            eventually(lambda: phase(region) == "Steady", timeout_seconds=60, what=f"{region.name} Steady again")
        last = west.failover_status()["lastEvacuation"]
        assert last["region"] == "west" and last["failbackStartedAt"] and last["failbackDoneAt"]
        assert traffic["west"].dns_weight() == str(DNS_WEIGHT)
        assert east.failover_status().get("evacuationGate") == "Closed"
        eventually(lambda: all((dc.get("status") or {}).get("effectiveGate") == "Closed"
                               for dc in dark_clusters(east)),
                   timeout_seconds=60, what="east's DarkClusters reporting the gate in force Closed")
        assert dark_pods_serving(east)[1] >= 2  # warm again, gated


def restart_after_failpoint(region: Region, prometheus: PrometheusServer, *, next_failpoint: str | None,
                            two_regions: TwoRegions) -> None:
    """Wait until the operator killed itself at its failpoint, then start the next one."""
    eventually(lambda: not region.operator.running(), timeout_seconds=RUN_FOR_EVACUATION,
               what=f"{region.name}'s operator to reach its failpoint", state=lambda: state(two_regions))
    assert "failpoint" in region.operator.log_text()
    region.kill_operator()  # reaps it and stops its scrape
    environment = {"REGIONSHIFT_FAILPOINTS": next_failpoint} if next_failpoint else None
    region.start_operator(prometheus=prometheus, environment=environment)


EVACUATION_RESOURCES = frozenset({"httproutes", "ingresses", "dnsendpoints", "services", "endpointslices",
                                  "darkclusters/status"})
"""What the evacuation writes besides the RegionFailover's status and Events."""


def repeated(log: list[Write]) -> list[Write]:
    """Writes that sent an object what the previous write to it had sent already (a write made twice)."""
    last: dict[tuple[str, str, str], Any] = {}
    out = []
    for write in log:
        if not write.succeeded or write.resource not in EVACUATION_RESOURCES:
            continue
        if write.resource == "darkclusters/status" and write.field_manager != "regionshift-evacuation":
            continue  # the DarkCluster controller's own bookkeeping, not an action of the evacuation
        if last.get(write.key()) == (write.verb, write.body):
            out.append(write)
        last[write.key()] = (write.verb, write.body)
    return out


def test_operators_killed_at_every_step_finish_the_evacuation_and_the_failback_each_write_once(
    two_regions: TwoRegions, prometheus: PrometheusServer,
) -> None:
    east, west = two_regions["east"], two_regions["west"]
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    with LiveSignal(prometheus=prometheus, scenario=CRASH) as live:
        traffic = two_regions.install_domain(prometheus=prometheus, scenario=CRASH, mode="Automatic", **FAST)
        for region in two_regions:
            region.kube.apply(deployment("api", replicas=CRASH.replicas_now(region.name)))
        east.start_operator(prometheus=prometheus, environment={"REGIONSHIFT_FAILPOINTS": "mid-ungate"})
        west.start_operator(prometheus=prometheus, environment={"REGIONSHIFT_FAILPOINTS": "after-decision"})
        for region in two_regions:
            region.wait_until_scraped()
        wait_steady_and_warm(two_regions, 2)
        before = {"route": traffic["west"].http_route()["spec"], "dns": traffic["west"].dns_endpoint()["spec"]}

        live.scale(west=0.1)
        restart_after_failpoint(east, prometheus, next_failpoint=None, two_regions=two_regions)  # killed right after opening its gate
        restart_after_failpoint(west, prometheus, next_failpoint="mid-shift", two_regions=two_regions)  # killed before its first route write
        restart_after_failpoint(west, prometheus, next_failpoint="mid-failback", two_regions=two_regions)  # killed between two route writes
        eventually(lambda: evacuated(traffic["west"]), timeout_seconds=RUN_FOR_EVACUATION,
                   what="the evacuation finished by the restarted operators")
        ready, total = dark_pods_serving(east)
        assert ready == total >= 4

        live.healthy()
        restart_after_failpoint(west, prometheus, next_failpoint=None, two_regions=two_regions)  # killed in the middle of a failback step
        eventually(lambda: restored(traffic["west"], before), timeout_seconds=RUN_FOR_EVACUATION,
                   what="the failback finished by the restarted operator")
        eventually(lambda: dark_pods_serving(east)[0] == 0, timeout_seconds=90, what="east's dark pods gated again")

    east_writes = writes(east.cluster.audit_log, namespace=east.namespace, since=since)
    west_writes = writes(west.cluster.audit_log, namespace=west.namespace, since=since)
    assert repeated(east_writes) == [] and repeated(west_writes) == []
    gates = [((w.body or {}).get("status") or {}).get("evacuationGate") for w in east_writes
             if w.resource == "regionfailovers/status" and w.field_manager == "regionshift-evacuation" and w.succeeded]
    moves = [gate for before, gate in zip([None, *gates], gates) if gate != before and gate is not None]
    assert moves == ["Open", "Closed"], gates  # the savior's gate opened once and closed once, on its RegionFailover
    assert not [w for w in east_writes if w.resource == "darkclusters/status"
                and w.field_manager == "regionshift-evacuation"], "no DarkCluster written by the evacuation"
    routes = [w for w in west_writes if w.resource in ("httproutes", "ingresses", "dnsendpoints") and w.succeeded]
    assert {(w.resource, w.name) for w in routes} >= {("httproutes", "web"), ("ingresses", CANARY),
                                                      ("dnsendpoints", "web")}
    assert not [w for w in east_writes if w.resource in ("httproutes", "ingresses", "dnsendpoints")
                and w.name in ("web", CANARY) and w.verb != "get"], "the savior's own routes are never written"
