"""DryRun, Manual and bad routes, on one region with the operator at work (the peer played by the exporter).

The region under test is ``east``; its peer ``west`` has no cluster here. What ``west``'s
operator would export to the shared Prometheus (its dark capacity, its served share) the
test's exporter serves instead, with the same names and labels (the exporter's own job and
instance labels are dropped, so the series look exactly like an operator's). The operator
is the session's, in-process, watching the test namespaces. The two-region tests, with an
operator process per region, are in ``test_two_regions*.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from regionshift.local.cluster import LocalCluster
from tests.support.cluster import Kube, eventually, namespace_in
from tests.support.prometheus_server import Metric, PrometheusServer
from tests.support.synthetic_day import DAY, SyntheticDay
from tests.support.region_traffic import (
    DNS_GROUP,
    GATEWAY_GROUP,
    PARTICIPANT_LABELS,
    dns_endpoint,
    http_route,
    ingress,
    install_traffic,
)
from tests.support.traffic import traffic_crds  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("running_operator")]

GROUP, VERSION = "regionshift.io", "v1alpha1"
REGIONS = {"east": 1000.0, "west": 800.0}
HISTORY_DAYS = 3
RUN = SyntheticDay(start=time.time(), levels=REGIONS)
WEST_GATEWAY = "192.0.2.10:8443"
"""West's gateway as its peer Services list it: a documentation address (TEST-NET-1) that nothing
connects to; the API server refuses loopback addresses in EndpointSlices."""


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    """Three days of each region's signal, for the three scenarios of this module."""
    end = time.time() // 60 * 60
    times = [end - HISTORY_DAYS * DAY + 60.0 * i for i in range(int(HISTORY_DAYS * DAY / 60) + 1)]
    history = {Metric.of(f"sps_{scenario}", region=region): [(t, RUN.signal(region, t)) for t in times]
               for scenario in ("dryrun", "manual", "broken", "nosavior") for region in REGIONS}
    with PrometheusServer(history=history) as server:
        yield server


@pytest.fixture
def shop(kube_cluster: LocalCluster, traffic_crds: list[str]) -> Iterator[Kube]:
    """A namespace watched by the session operator with the user's objects of one region (tests.support.region_traffic)."""
    with namespace_in(kube_cluster) as kube:
        install_traffic(kube, region="east", replicas=2)
        yield kube


def region_failover(prometheus: PrometheusServer, scenario: str, *, name: str = "shop", mode: str,
                    traffic: list[dict[str, Any]] | None = None,
                    selector: dict[str, str] = dict(PARTICIPANT_LABELS)) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "RegionFailover", "metadata": {"name": name},
        "spec": {
            "region": "east",
            "peers": [{"name": "west", "gatewayAddress": WEST_GATEWAY}],
            "signal": {"prometheusUrl": prometheus.url, "query": f'sps_{scenario}{{region="{{region}}"}}',
                       "stepSeconds": 1, "historyDays": HISTORY_DAYS - 1, "historyStepSeconds": 60},
            "detection": {"consecutiveSamples": 3, "staleAfterSeconds": 5, "rolloutGuardSeconds": 0,
                          "dwellSeconds": 0},
            "selector": {"matchLabels": selector},
            "darkCapacity": {"minReplicas": 2, "maxReplicas": 2,
                             "replicasQuery": 'absent_replicas{deployment="{deployment}"}'},
            "traffic": traffic if traffic is not None else [
                {"kind": "GatewayAPI", "routes": ["web"]}, {"kind": "IngressNginx", "routes": ["web"]},
                {"kind": "ExternalDNS", "routes": ["web"]}],
            "mode": mode,
            "failback": {"stepPercent": 50, "stepIntervalSeconds": 2, "ratioThreshold": 0.5, "cooldownSeconds": 0,
                         "backoffSeconds": 5},
        },
    }


def live(prometheus: PrometheusServer, scenario: str, **factors: float) -> None:
    """Each region's live signal: its healthy value times a factor (default 1)."""
    now = time.time()
    for region in REGIONS:
        prometheus.exporter.set(f"sps_{scenario}", {"region": region},
                                RUN.signal(region, now) * factors.get(region, 1.0))
    prometheus.exporter.wait_for_scrapes(2)


def play_west(prometheus: PrometheusServer, name: str, *, warm: int, ready: int, served_share: float) -> None:
    """What west's operator would export to the shared Prometheus."""
    exporter = prometheus.exporter
    exporter.set("regionshift_region_dark_replicas", {"regionfailover": name, "region": "west", "state": "warm"}, warm)
    exporter.set("regionshift_region_dark_replicas", {"regionfailover": name, "region": "west", "state": "ready"}, ready)
    exporter.set("regionshift_region_deployments_ready", {"regionfailover": name, "region": "west"}, 1)
    exporter.set("regionshift_region_served_share", {"regionfailover": name, "region": "west"}, served_share)
    exporter.wait_for_scrapes(2)


def status(kube: Kube, name: str = "shop") -> dict[str, Any]:
    return kube.get_custom("regionfailovers", name).get("status") or {}


def verdict(kube: Kube, region: str, name: str = "shop") -> str | None:
    return next((r.get("verdict") for r in status(kube, name).get("regions") or [] if r["name"] == region), None)


def condition(kube: Kube, type_: str, name: str = "shop") -> dict[str, Any]:
    return next((c for c in status(kube, name).get("conditions") or [] if c["type"] == type_), {})


def dark_clusters(kube: Kube) -> list[dict[str, Any]]:
    return kube.custom.list_namespaced_custom_object(GROUP, VERSION, kube.namespace, "darkclusters")["items"]  # type: ignore[no-any-return]


def warm(kube: Kube) -> bool:
    items = dark_clusters(kube)
    return bool(items) and all((dc.get("status") or {}).get("warmReplicas") == 2 for dc in items)


def serving_dark_pods(kube: Kube) -> list[str]:
    """Dark pods carrying the target's serving labels (ungated)."""
    return [p["metadata"]["name"] for p in kube.pods("regionshift.io/dark-cluster")
            if (p["metadata"].get("labels") or {}).get("app") == "web"]


def versions(kube: Kube) -> dict[str, str]:
    """resourceVersions of the user's routing objects (any write changes them)."""
    net = client.NetworkingV1Api(kube.api)
    return {
        "httproute": kube.custom.get_namespaced_custom_object(GATEWAY_GROUP, "v1", kube.namespace,
                                                              "httproutes", "web")["metadata"]["resourceVersion"],
        "ingress": net.read_namespaced_ingress("web", kube.namespace).metadata.resource_version,
        "dnsendpoint": kube.custom.get_namespaced_custom_object(DNS_GROUP, "v1alpha1", kube.namespace,
                                                                "dnsendpoints", "web")["metadata"]["resourceVersion"],
    }


def ingresses(kube: Kube) -> list[str]:
    return sorted(i.metadata.name for i in client.NetworkingV1Api(kube.api).list_namespaced_ingress(kube.namespace).items)


def services(kube: Kube) -> list[str]:
    return sorted(s.metadata.name for s in kube.core.list_namespaced_service(kube.namespace).items)


def test_dry_run_publishes_the_plan_and_writes_nothing_else(shop: Kube, prometheus: PrometheusServer) -> None:
    play_west(prometheus, "shop", warm=4, ready=0, served_share=1)
    live(prometheus, "dryrun")
    shop.create_custom(region_failover(prometheus, "dryrun", mode="DryRun"))
    eventually(lambda: warm(shop), timeout_seconds=90, what="warm dark clusters")
    eventually(lambda: verdict(shop, "east") == "Healthy", timeout_seconds=60, what="east Healthy")
    before = versions(shop), ingresses(shop), services(shop)

    live(prometheus, "dryrun", east=0.1)
    plan = eventually(lambda: status(shop).get("plan"), timeout_seconds=60, what="a plan in status")
    assert plan["regions"] == ["east"]
    planned = {(w["provider"], w["route"]): (w["fromWeights"], w["toWeights"]) for w in plan["weights"]}
    assert planned[("GatewayAPI", "web")][1]["east"] == 0 and planned[("GatewayAPI", "web")][1]["west"] > 0
    assert planned[("IngressNginx", "web")][1]["east"] == 0
    assert "DryRun, nothing written" in eventually(
        lambda: next((e.message for e in shop.events("shop") if e.reason == "EvacuationPlanned"), None),
        timeout_seconds=30, what="an EvacuationPlanned Event")
    time.sleep(3)  # a few more runs of the operator, each of which could have written
    assert status(shop).get("phase") == "Steady" and not status(shop).get("evacuations")
    assert (versions(shop), ingresses(shop), services(shop)) == before
    assert all("evacuationGate" not in (dc.get("status") or {}) for dc in dark_clusters(shop))
    assert "evacuationGate" not in status(shop)
    assert serving_dark_pods(shop) == []


def test_manual_mode_recommends_then_saves_the_peer_on_spec_evacuate_and_fails_back(
    shop: Kube, prometheus: PrometheusServer,
) -> None:
    play_west(prometheus, "shop", warm=4, ready=0, served_share=1)
    live(prometheus, "manual")
    shop.create_custom(region_failover(prometheus, "manual", mode="Manual"))
    eventually(lambda: warm(shop), timeout_seconds=90, what="warm dark clusters")
    eventually(lambda: verdict(shop, "west") == "Healthy", timeout_seconds=60, what="west Healthy")

    live(prometheus, "manual", west=0.1)
    recommendation = eventually(lambda: status(shop).get("recommendation"), timeout_seconds=60,
                                what="a recommendation")
    assert recommendation["regions"] == ["west"]
    eventually(lambda: any(e.reason == "EvacuationRecommended" for e in shop.events("shop")), timeout_seconds=30,
               what="an EvacuationRecommended Event")
    assert status(shop).get("phase") == "Steady" and serving_dark_pods(shop) == []

    play_west(prometheus, "shop", warm=4, ready=0, served_share=0)
    shop.patch_custom("regionfailovers", "shop", {"spec": {"evacuate": ["west"]}})
    eventually(lambda: len(serving_dark_pods(shop)) == 2, timeout_seconds=60, what="east's dark pods ungated")
    assert status(shop).get("evacuationGate") == "Open"  # the evacuation's gate lives on the RegionFailover
    assert all(dc["spec"].get("gate", "Closed") == "Closed" for dc in dark_clusters(shop))  # the spec stays the user's
    evacuated = eventually(lambda: status(shop) if status(shop).get("phase") == "Evacuated" else None,
                           timeout_seconds=60, what="phase Evacuated")
    assert evacuated["roles"] == {"east": "Savior", "west": "Evacuated"}
    assert [e["actor"] for e in evacuated["evacuations"]] == ["SpecEvacuate"]

    live(prometheus, "manual")  # west healed
    shop.patch_custom("regionfailovers", "shop", {"spec": {"evacuate": []}})
    eventually(lambda: status(shop).get("phase") == "FailingBack" or status(shop).get("lastEvacuation"),
               timeout_seconds=60, what="the failback to start")
    time.sleep(2)
    assert len(serving_dark_pods(shop)) == 2  # west has not said it serves its whole share: east keeps serving
    play_west(prometheus, "shop", warm=4, ready=0, served_share=1)
    eventually(lambda: serving_dark_pods(shop) == [], timeout_seconds=90, what="east's dark pods gated again")
    final = eventually(lambda: status(shop) if status(shop).get("phase") == "Steady" else None, timeout_seconds=60,
                       what="phase Steady")
    timeline = final["lastEvacuation"]
    assert timeline["region"] == "west" and timeline["failbackDoneAt"] and timeline["decidedAt"]
    transitions = [(t["region"], t["fromPhase"], t["toPhase"]) for t in final["history"]]
    assert ("west", "Steady", "Evacuating") in transitions and ("west", "FailingBack", "Steady") in transitions


def test_bad_routes_become_a_condition_and_the_other_domain_keeps_working(
    shop: Kube, prometheus: PrometheusServer,
) -> None:
    play_west(prometheus, "broken", warm=4, ready=4, served_share=1)
    live(prometheus, "broken")
    foreign = ingress("someone-elses-canary")
    foreign["metadata"]["annotations"] = {"nginx.ingress.kubernetes.io/canary": "true",
                                          "nginx.ingress.kubernetes.io/canary-weight": "5"}
    client.NetworkingV1Api(shop.api).create_namespaced_ingress(shop.namespace, foreign)
    no_local = http_route("no-local")
    no_local["spec"]["rules"][0]["backendRefs"][0]["name"] = "static"  # nothing for this region's Service
    shop.custom.create_namespaced_custom_object(GATEWAY_GROUP, "v1", shop.namespace, "httproutes", no_local)
    shop.custom.create_namespaced_custom_object(DNS_GROUP, "v1alpha1", shop.namespace, "dnsendpoints",
                                                dns_endpoint("bad-weight", region="east", weight="heavy"))
    shop.create_custom(region_failover(prometheus, "broken", name="broken", mode="Manual",
                                       selector={"regionshift.io/participant": "none"}, traffic=[
        {"kind": "GatewayAPI", "routes": ["missing", "no-local"]}, {"kind": "IngressNginx", "routes": ["web"]},
        {"kind": "ExternalDNS", "routes": ["bad-weight"]}]))
    shop.create_custom(region_failover(prometheus, "broken", name="shop", mode="Manual"))
    shop.patch_custom("regionfailovers", "broken", {"spec": {"evacuate": ["east"]}})

    routes = eventually(lambda: condition(shop, "RoutesReady", "broken") or None, timeout_seconds=60,
                        what="RoutesReady on the broken domain")
    assert routes["status"] == "False" and routes["reason"] == "RouteNotFound"
    assert "missing" in routes["message"]
    assert "LocalBackendMissing" in routes["message"] and "no-local" in routes["message"]
    assert "WeightUnparsable" in routes["message"] and "heavy" in routes["message"]
    eventually(lambda: any(e.reason == "RoutesNotReady" for e in shop.events("broken")), timeout_seconds=30,
               what="a RoutesNotReady Event")
    evacuation = eventually(lambda: next(iter(status(shop, "broken").get("evacuations") or []), None),
                            timeout_seconds=30, what="the evacuation of east on the broken domain")
    assert evacuation["phase"] == "Evacuating" and "routes" in (evacuation.get("waitingFor") or "")
    actions = eventually(lambda: condition(shop, "ActionsApplied", "broken") if condition(
        shop, "ActionsApplied", "broken").get("status") == "False" else None, timeout_seconds=60,
        what="ActionsApplied=False on the broken domain")
    assert "ForeignCanary" in actions["message"] and "someone-elses-canary" in actions["message"]
    assert ingresses(shop) == ["someone-elses-canary", "web"]  # no canary of regionshift beside the foreign one

    fine = eventually(lambda: condition(shop, "RoutesReady") or None, timeout_seconds=60, what="the other domain")
    assert fine["status"] == "True", fine
    assert status(shop).get("phase") == "Steady"


def test_a_peer_without_warm_capacity_takes_no_traffic_and_the_evacuation_says_why(
    shop: Kube, prometheus: PrometheusServer,
) -> None:
    play_west(prometheus, "nosavior", warm=0, ready=0, served_share=1)
    live(prometheus, "nosavior")
    shop.create_custom(region_failover(prometheus, "nosavior", name="nosavior", mode="Manual"))
    eventually(lambda: warm(shop), timeout_seconds=90, what="warm dark clusters")
    before = versions(shop), ingresses(shop)
    shop.patch_custom("regionfailovers", "nosavior", {"spec": {"evacuate": ["east"]}})
    evacuation = eventually(lambda: next(iter(status(shop, "nosavior").get("evacuations") or []), None),
                            timeout_seconds=60, what="the evacuation of east")
    assert evacuation["phase"] == "Evacuating"
    waiting = eventually(lambda: next(iter(status(shop, "nosavior").get("evacuations") or []), {}).get("waitingFor"),
                         timeout_seconds=30, what="what the evacuation waits for")
    assert "savior" in waiting, waiting
    time.sleep(3)
    assert (versions(shop)["httproute"], ingresses(shop)) == (before[0]["httproute"], before[1])  # nothing moved
