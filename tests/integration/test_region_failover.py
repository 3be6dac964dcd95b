"""Detection and sizing of a RegionFailover against a real Prometheus and the real control plane.

A Prometheus server (Debian's package) starts with two weeks of backfilled history for
every scenario's metric and scrapes a live exporter every second; the operator runs
in-process against the session's local region. Each test sets the live signal and waits
for the RegionFailover's status to say what the operator concluded.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from regionshift.controllers import regionfailover as failover
from regionshift.local.cluster import free_port
from tests.support.cluster import Kube, eventually
from tests.support.prometheus_server import Metric, PrometheusServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("running_operator")]

REGIONS = {"east": 1000.0, "west": 800.0, "central": 600.0}
SCENARIOS = ("regional", "global", "rollout", "gap", "sizing", "fallback")
DAY = 86_400.0


def signal(region: str, t: float) -> float:
    """The healthy signal: a daily wave around each region's level."""
    return REGIONS[region] * (1.0 + 0.3 * math.sin(2 * math.pi * t / DAY))


def replicas_for(traffic: float) -> float:
    """The history of the participating Deployment: its autoscaler's replicas for a traffic."""
    return float(round(2 + traffic / 100.0))


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    end = time.time() // 60 * 60
    times = [end - 14 * DAY + 60.0 * i for i in range(int(14 * DAY / 60) + 1)]
    history: dict[Metric, list[tuple[float, float]]] = {}
    for scenario in SCENARIOS:
        for region in REGIONS:
            history[Metric.of(f"sps_{scenario}", region=region)] = [(t, signal(region, t)) for t in times]
    history[Metric.of("replicas_sizing", deployment="api")] = [(t, replicas_for(signal("east", t))) for t in times]
    with PrometheusServer(history=history) as server:
        yield server


def live(prometheus: PrometheusServer, scenario: str, **factors: float) -> None:
    """Set each region's live signal to its healthy value times a factor (default 1)."""
    now = time.time()
    for region in REGIONS:
        prometheus.exporter.set(f"sps_{scenario}", {"region": region}, signal(region, now) * factors.get(region, 1.0))
    prometheus.exporter.wait_for_scrapes(2)


def region_failover(prometheus_url: str, scenario: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "regionshift.io/v1alpha1",
        "kind": "RegionFailover",
        "metadata": {"name": "domain"},
        "spec": {
            "region": "east",
            "peers": [{"name": "west"}, {"name": "central"}],
            "signal": {"prometheusUrl": prometheus_url, "query": f'sps_{scenario}{{region="{{region}}"}}',
                       "stepSeconds": 1, "historyDays": 14, "historyStepSeconds": 60, "refitIntervalSeconds": 3600},
            "detection": {"ratioThreshold": 0.7, "consecutiveSamples": 3, "minimumExpected": 1.0,
                          "globalDropFraction": 0.5, "rolloutGuardSeconds": 600, "staleAfterSeconds": 5},
            "selector": {"matchLabels": {"tier": "web"}},
            "mode": "DryRun",
        },
    }
    body["spec"].update(spec)
    return body


def participant(name: str, *, replicas: int) -> dict[str, Any]:
    """A Deployment the RegionFailover's selector (tier: web) picks up."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"tier": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1"}]}}}}


def dark_status(kube: Kube) -> dict[str, Any]:
    """Status of the one DarkCluster the RegionFailover created ({} until it exists)."""
    items = kube.custom.list_namespaced_custom_object("regionshift.io", "v1alpha1", kube.namespace, "darkclusters")
    return (items["items"][0].get("status") or {}) if items["items"] else {}


def regions(kube: Kube) -> dict[str, dict[str, Any]]:
    status = kube.get_custom("regionfailovers", "domain").get("status") or {}
    return {item["name"]: item for item in status.get("regions") or []}


def verdicts(kube: Kube) -> dict[str, str]:
    return {name: item.get("verdict") for name, item in regions(kube).items()}


def condition(kube: Kube, type_: str) -> dict[str, Any]:
    status = kube.get_custom("regionfailovers", "domain").get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


ALL_HEALTHY = {"east": "Healthy", "west": "Healthy", "central": "Healthy"}


def test_regional_drop_turns_the_region_unhealthy(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "regional")
    kube.apply(region_failover(prometheus.url, "regional"))
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=60, what="every region healthy")
    assert abs(regions(kube)["west"]["ratio"] - 1.0) < 0.1

    dropped = time.time()
    live(prometheus, "regional", west=0.3)
    eventually(lambda: verdicts(kube) == {**ALL_HEALTHY, "west": "Unhealthy"}, timeout_seconds=20,
               what="west unhealthy, the others healthy")
    west = regions(kube)["west"]
    assert west["ratio"] < 0.4
    unhealthy_since = dt.datetime.fromisoformat(west["unhealthySince"].replace("Z", "+00:00")).timestamp()
    assert dropped - 2 <= unhealthy_since <= time.time()
    assert kube.get_custom("regionfailovers", "domain")["status"]["unhealthy"] == ["west"]
    eventually(lambda: any(e.reason == "RegionUnhealthy" and "west" in e.message for e in kube.events("domain")),
               what="an Event for the changed verdict")


def test_global_drop_is_held_back(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "global")
    kube.apply(region_failover(prometheus.url, "global"))
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=60, what="every region healthy")
    live(prometheus, "global", east=0.3, west=0.3, central=0.3)
    eventually(lambda: set(verdicts(kube).values()) == {"HeldBack"}, timeout_seconds=20, what="all held back")
    assert {item["heldBackBy"] for item in regions(kube).values()} == {"GlobalDrop"}


def test_drop_right_after_a_rollout_is_held_back(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "rollout")
    kube.apply(region_failover(prometheus.url, "rollout"))
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=60, what="every region healthy")
    kube.apply(participant("web", replicas=1))
    eventually(lambda: kube.apps.list_namespaced_replica_set(kube.namespace).items, what="the rollout's ReplicaSet")
    live(prometheus, "rollout", east=0.3)
    eventually(lambda: verdicts(kube).get("east") == "HeldBack", timeout_seconds=20, what="east held back")
    assert regions(kube)["east"]["heldBackBy"] == "RecentRollout"


def test_data_gap_is_never_an_evacuation(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "gap")
    kube.apply(region_failover(prometheus.url, "gap"))
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=60, what="every region healthy")
    prometheus.exporter.remove("sps_gap", {"region": "west"})
    prometheus.exporter.wait_for_scrapes(2)
    eventually(lambda: verdicts(kube).get("west") == "Unknown", timeout_seconds=20, what="west unknown")
    assert regions(kube)["west"]["heldBackBy"] in ("NoData", "StaleData")
    assert verdicts(kube)["east"] == "Healthy"


def test_dark_cluster_size_follows_the_traffic(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "sizing")
    kube.apply(participant("api", replicas=12))
    kube.apply(region_failover(
        prometheus.url, "sizing",
        signal={"prometheusUrl": prometheus.url, "query": 'sps_sizing{region="{region}"}', "stepSeconds": 1,
                "historyDays": 14, "historyStepSeconds": 60, "refitIntervalSeconds": 10},
        darkCapacity={"headroomRatio": 1.0, "minReplicas": 0, "maxReplicas": 100, "horizonSeconds": 3600,
                      "replicasQuery": 'replicas_sizing{deployment="{deployment}"}'},
    ))

    def sized() -> dict[str, Any] | None:
        status = dark_status(kube)
        return status if status.get("forecastReplicas") is not None and status.get("modelFit") else None

    first = eventually(sized, timeout_seconds=60, what="the DarkCluster sized from history")
    fit = first["modelFit"]
    assert fit["rSquared"] > 0.9 and fit["samples"] > 1000
    assert abs(fit["slopeReplicasPerUnit"] - 0.01) < 0.002
    assert first["forecastReplicas"] > 0
    eventually(lambda: kube.deployment("api-dark")["spec"]["replicas"] == first["forecastReplicas"]
               == sized()["desiredReplicas"], what="the shadow runs the forecast size")

    live(prometheus, "sizing", west=3.0)  # the largest peer's traffic triples
    later = eventually(lambda: (s := sized()) and s["forecastReplicas"] > first["forecastReplicas"] and s,
                       timeout_seconds=60, what="more dark replicas for more peer traffic")
    eventually(lambda: kube.deployment("api-dark")["spec"]["replicas"] == later["forecastReplicas"],
               what="the shadow follows the new size")


def test_prometheus_down_pauses_detection_and_sizing_goes_on_from_the_cache(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "fallback")
    kube.apply(participant("api", replicas=12))
    good = {"prometheusUrl": prometheus.url, "query": 'sps_fallback{region="{region}"}', "stepSeconds": 1,
            "historyDays": 14, "historyStepSeconds": 60, "refitIntervalSeconds": 10}
    kube.apply(region_failover(prometheus.url, "fallback", signal=good, darkCapacity={
        "replicasQuery": 'replicas_sizing{deployment="{deployment}"}'}))
    eventually(lambda: condition(kube, "Sizing").get("reason") == "Sized", timeout_seconds=60, what="sized once")
    eventually(lambda: kube.core.read_namespaced_config_map("domain-history", kube.namespace).binary_data,
               what="history cached in a ConfigMap")

    dead = f"http://127.0.0.1:{free_port()}"
    kube.patch_custom("regionfailovers", "domain", {"spec": {"signal": {"prometheusUrl": dead}}})
    uid = kube.get_custom("regionfailovers", "domain")["metadata"]["uid"]
    failover.forget(uid=uid)  # as after an operator restart: nothing in memory, only the ConfigMap
    eventually(lambda: condition(kube, "Detecting").get("reason") == "PrometheusUnavailable", timeout_seconds=30,
               what="detection paused")
    assert condition(kube, "Detecting")["status"] == "False"
    assert set(verdicts(kube).values()) == {"Unknown"}
    eventually(lambda: "cache saved" in condition(kube, "Sizing").get("message", ""), timeout_seconds=30,
               what="sizing from the cached history")
    assert condition(kube, "Sizing")["status"] == "True"

    kube.patch_custom("regionfailovers", "domain", {"spec": {"signal": {"prometheusUrl": prometheus.url}}})
    eventually(lambda: condition(kube, "Detecting").get("status") == "True", timeout_seconds=30, what="recovered")
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=30, what="healthy again")


def test_a_rejected_query_is_reported_and_other_domains_keep_working(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "regional")
    broken = region_failover(prometheus.url, "regional")
    broken["metadata"]["name"] = "broken"
    broken["spec"]["signal"]["query"] = 'sum(sps_regional{region="{region}"}'  # unclosed parenthesis
    kube.apply(broken)
    kube.apply(region_failover(prometheus.url, "regional"))

    def detecting(name: str) -> dict[str, Any]:
        status = kube.get_custom("regionfailovers", name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == "Detecting"), {})

    eventually(lambda: detecting("broken").get("reason") == "QueryRejected", timeout_seconds=30,
               what="the bad query reported in a condition")
    assert detecting("broken")["status"] == "False"
    assert "parse error" in detecting("broken")["message"]
    eventually(lambda: any(e.reason == "DetectionPaused" and e.type == "Warning" for e in kube.events("broken")),
               what="a Warning Event for the paused detection")
    assert kube.get_custom("regionfailovers", "broken")["spec"]["signal"]["query"] == broken["spec"]["signal"]["query"]
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=60, what="the other domain keeps working")


def test_deleting_the_region_failover_collects_its_dark_clusters_shadows_and_cache(
    kube: Kube, prometheus: PrometheusServer
) -> None:
    live(prometheus, "sizing")
    kube.apply(participant("api", replicas=12))
    kube.apply(region_failover(prometheus.url, "sizing", darkCapacity={
        "replicasQuery": 'replicas_sizing{deployment="{deployment}"}'}))
    eventually(lambda: kube.deployment("api-dark"), timeout_seconds=60, what="DarkCluster and shadow created")
    eventually(lambda: kube.core.list_namespaced_config_map(kube.namespace, label_selector=
                                                            "regionshift.io/regionfailover=domain").items,
               what="history cache written")
    dc = kube.get_custom("darkclusters", "api")
    assert dc["metadata"]["ownerReferences"][0]["kind"] == "RegionFailover"

    kube.delete_custom("regionfailovers", "domain")
    # kube-controller-manager's garbage collector removes each generation of dependents.
    eventually(lambda: not kube.custom.list_namespaced_custom_object(
        "regionshift.io", "v1alpha1", kube.namespace, "darkclusters")["items"], timeout_seconds=60, what="DarkCluster gone")
    eventually(lambda: kube.deployment("api-dark") is None, timeout_seconds=60, what="shadow gone")
    eventually(lambda: not kube.core.list_namespaced_config_map(
        kube.namespace, label_selector="regionshift.io/regionfailover=domain").items, timeout_seconds=60, what="cache gone")
    assert kube.deployment("api") is not None


def test_a_peer_drop_is_held_back_while_this_savior_is_not_warm(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "sizing")
    slow = participant("api", replicas=12)
    slow["spec"]["template"]["metadata"]["annotations"] = {"regionshift.io/simulated-start": "300s"}
    kube.apply(slow)
    kube.apply(region_failover(prometheus.url, "sizing", darkCapacity={
        "headroomRatio": 1.0, "replicasQuery": 'replicas_sizing{deployment="{deployment}"}'}))
    eventually(lambda: dark_status(kube).get("desiredReplicas", 0) > 0, timeout_seconds=60,
               what="dark capacity sized, its pods still starting")
    assert dark_status(kube)["warmReplicas"] == 0
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=60, what="every region healthy")

    live(prometheus, "sizing", west=0.3)
    eventually(lambda: verdicts(kube).get("west") == "HeldBack", timeout_seconds=20, what="west held back")
    assert regions(kube)["west"]["heldBackBy"] == "SaviorsNotWarm"
