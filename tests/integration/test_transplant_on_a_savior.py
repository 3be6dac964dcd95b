"""Transplant on one region with the operator at work (the peer played by the exporter).

``east`` saves ``west`` (``spec.evacuate`` in Manual mode); once the evacuation has settled
for ``darkCapacity.transplantAfterSeconds``, east's dark capacity moves into its main
Deployment. A background thread counts the ready endpoints of the user's Service every
0.1 s from the moment the dark pods serve until the transplant starts returning: the count
never drops. After the failback the main Deployment is back at its recorded replicas (or its
autoscaler at its recorded minReplicas) and the dark capacity is warm, gated, again.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from regionshift.local.cluster import LocalCluster
from tests.integration.test_evacuation_modes import (  # noqa: F401 - shop and traffic_crds are fixtures
    HISTORY_DAYS,
    REGIONS,
    RUN,
    dark_clusters,
    live,
    play_west,
    region_failover,
    serving_dark_pods,
    shop,
    status,
    traffic_crds,
    warm,
)
from tests.support.audit import writes
from tests.support.cluster import Kube, eventually, namespace_in
from tests.support.operator_process import OperatorProcess
from tests.support.region_traffic import install_traffic
from tests.support.prometheus_server import Metric, PrometheusServer
from tests.support.synthetic_day import DAY

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("running_operator")]

SCENARIOS = ("transplant", "transplanthpa", "transplantcrash")


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    end = time.time() // 60 * 60
    times = [end - HISTORY_DAYS * DAY + 60.0 * i for i in range(int(HISTORY_DAYS * DAY / 60) + 1)]
    history = {Metric.of(f"sps_{scenario}", region=region): [(t, RUN.signal(region, t)) for t in times]
               for scenario in SCENARIOS for region in REGIONS}
    with PrometheusServer(history=history) as server:
        yield server


class EndpointCounter:
    """Counts the Service's ready endpoints every 0.1 s until the transplant returns (or :meth:`stop`)."""

    def __init__(self, kube: Kube, service: str, *, name: str = "shop") -> None:
        self.kube, self.service, self.name = kube, service, name
        self.counts: list[int] = []
        self.steps: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="endpoint-counter", daemon=True)

    def __enter__(self) -> EndpointCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        seen = False
        while not self._stop.is_set():
            try:
                # the status first: a main Deployment is lowered only in a run after the one that recorded Returning
                transplants = status(self.kube, self.name).get("transplants") or []
                steps = ",".join(t["step"] for t in transplants)
                seen = seen or bool(transplants)
                if (seen and not transplants) or "Returning" in steps:
                    return
                self.counts.append(len(self.kube.ready_endpoint_pods(self.service)))
                self.steps.append(steps)
            except Exception as exc:  # noqa: BLE001 - a hiccup of the API server is not a dropped endpoint
                self.errors.append(repr(exc))
            self._stop.wait(0.1)


def transplants(kube: Kube) -> list[dict[str, Any]]:
    return status(kube).get("transplants") or []


def replicas(kube: Kube, name: str) -> int:
    return int(((kube.deployment(name) or {}).get("spec") or {}).get("replicas") or 0)


def dark_pods(kube: Kube) -> list[str]:
    return [p["metadata"]["name"] for p in kube.pods("regionshift.io/dark-cluster")
            if not p["metadata"].get("deletionTimestamp")]


def with_transplant(rf: dict[str, Any], after_seconds: int) -> dict[str, Any]:
    rf["spec"]["darkCapacity"]["transplantAfterSeconds"] = after_seconds
    return rf


def evacuate_west(shop: Kube, prometheus: PrometheusServer, scenario: str, *, after_seconds: int) -> None:
    play_west(prometheus, "shop", warm=4, ready=0, served_share=1)
    live(prometheus, scenario)
    shop.create_custom(with_transplant(region_failover(prometheus, scenario, mode="Manual"), after_seconds))
    eventually(lambda: warm(shop), timeout_seconds=90, what="warm dark clusters")
    eventually(lambda: len(shop.ready_endpoint_pods("web")) == 2, timeout_seconds=60, what="web's own pods serve")
    play_west(prometheus, "shop", warm=4, ready=0, served_share=0)
    shop.patch_custom("regionfailovers", "shop", {"spec": {"evacuate": ["west"]}})
    eventually(lambda: len(serving_dark_pods(shop)) == 2, timeout_seconds=60, what="east's dark pods ungated")
    eventually(lambda: len(shop.ready_endpoint_pods("web")) == 4, timeout_seconds=60,
               what="main and dark pods serve")


def fail_back(shop: Kube, prometheus: PrometheusServer, scenario: str) -> None:
    live(prometheus, scenario)  # west healed
    shop.patch_custom("regionfailovers", "shop", {"spec": {"evacuate": []}})
    play_west(prometheus, "shop", warm=4, ready=0, served_share=1)
    eventually(lambda: status(shop).get("phase") == "Steady", timeout_seconds=90, what="phase Steady")


def test_transplant_moves_the_dark_capacity_into_main_without_dropping_a_ready_pod_and_returns_it(
    shop: Kube, prometheus: PrometheusServer,
) -> None:
    evacuate_west(shop, prometheus, "transplant", after_seconds=2)
    with EndpointCounter(shop, "web") as counter:
        done = eventually(lambda: [t for t in transplants(shop) if t["step"] == "Transplanted"] or None,
                          timeout_seconds=90, what="the transplant done")
        assert done[0] | {"since": ""} == {"deployment": "web", "darkCluster": "web", "step": "Transplanted",
                                           "recordedReplicas": 2, "raisedTo": 4, "movedReplicas": 2, "since": ""}
        eventually(lambda: dark_pods(shop) == [], timeout_seconds=60, what="the dark pods gone")
        eventually(lambda: len(shop.ready_endpoint_pods("web")) == 4, timeout_seconds=30, what="4 main pods serve")
        assert replicas(shop, "web") == 4
        dc = dark_clusters(shop)[0]
        assert dc["status"]["transplantedReplicas"] == 2 and dc["status"]["desiredReplicas"] == 0
        assert dc["spec"].get("replicas", {}).get("fixedReplicas") is None  # the spec stays the owner's
        message = eventually(lambda: next((e.message for e in shop.events("shop") if e.reason == "Transplanted"), None),
                             timeout_seconds=30, what="a Transplanted Event")
        assert message == "transplant web: main 2→4, dark 2→0"
        assert status(shop)["roles"]["east"] == "Savior"  # the moved replicas still count as its capacity
        time.sleep(1)
    assert not counter.errors, counter.errors[:3]
    assert counter.counts and min(counter.counts) >= 4, (min(counter.counts), counter.counts)
    assert {"Raising", "Transplanted"} <= set(counter.steps)

    fail_back(shop, prometheus, "transplant")
    eventually(lambda: transplants(shop) == [], timeout_seconds=120, what="the transplant returned")
    assert replicas(shop, "web") == 2
    eventually(lambda: warm(shop), timeout_seconds=60, what="the dark capacity warm again")
    assert serving_dark_pods(shop) == []
    dc = dark_clusters(shop)[0]["status"]
    assert int(dc.get("transplantedReplicas") or 0) == 0 and dc["desiredReplicas"] == 2
    assert any(e.reason == "TransplantReturned" and "main 4→2" in e.message for e in shop.events("shop"))


HPA = {
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
             "minReplicas": 2, "maxReplicas": 3,
             "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                           "target": {"type": "Utilization",
                                                                      "averageUtilization": 80}}}]},
}


def test_transplant_raises_the_autoscalers_min_replicas_never_above_its_max(
    shop: Kube, prometheus: PrometheusServer,
) -> None:
    """An HPA (maxReplicas 3) targets web: one of the two dark replicas fits and moves; the other keeps serving."""
    client.AutoscalingV2Api(shop.api).create_namespaced_horizontal_pod_autoscaler(shop.namespace, HPA)
    evacuate_west(shop, prometheus, "transplanthpa", after_seconds=2)
    with EndpointCounter(shop, "web") as counter:
        done = eventually(lambda: [t for t in transplants(shop) if t["step"] == "Transplanted"] or None,
                          timeout_seconds=120, what="the transplant done")
        assert (done[0]["autoscaler"], done[0]["recordedReplicas"], done[0]["raisedTo"], done[0]["movedReplicas"]) == (
            "web", 2, 3, 1)
        hpa = client.AutoscalingV2Api(shop.api).read_namespaced_horizontal_pod_autoscaler("web", shop.namespace)
        assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (3, 3)
        eventually(lambda: len(dark_pods(shop)) == 1, timeout_seconds=60, what="one dark pod left")
        eventually(lambda: len(shop.ready_endpoint_pods("web")) == 4, timeout_seconds=30, what="3 main + 1 dark")
        time.sleep(1)
    assert not counter.errors, counter.errors[:3]
    assert counter.counts and min(counter.counts) >= 4, (min(counter.counts), counter.counts)

    fail_back(shop, prometheus, "transplanthpa")
    eventually(lambda: transplants(shop) == [], timeout_seconds=120, what="the transplant returned")
    hpa = client.AutoscalingV2Api(shop.api).read_namespaced_horizontal_pod_autoscaler("web", shop.namespace)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 3)  # the autoscaler decides the rest
    eventually(lambda: warm(shop), timeout_seconds=60, what="the dark capacity warm again")


def test_an_operator_killed_in_the_middle_of_a_transplant_resumes_from_the_record_and_writes_each_step_once(
    kube_cluster: LocalCluster, traffic_crds: list[str], prometheus: PrometheusServer, tmp_path: Path,
) -> None:
    """The operator (its own process, audited) SIGKILLs itself right after raising web: the record came first."""
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    # Its own namespace prefix: the session operator (t-*) does not watch it.
    with namespace_in(kube_cluster, prefix="x") as kube:
        install_traffic(kube, region="east", replicas=2)

        def operator(number: int, environment: dict[str, str] | None = None) -> OperatorProcess:
            return OperatorProcess(kubeconfig=kube_cluster.operator_kubeconfig, namespaces=[kube.namespace],
                                   log_path=tmp_path / f"operator-{number}.log", environment=environment).start()

        first = operator(1, {"REGIONSHIFT_FAILPOINTS": "mid-transplant"})
        second: OperatorProcess | None = None
        try:
            play_west(prometheus, "shop", warm=4, ready=0, served_share=1)
            live(prometheus, "transplantcrash")
            kube.create_custom(with_transplant(region_failover(prometheus, "transplantcrash", mode="Manual",
                                                               traffic=[{"kind": "GatewayAPI", "routes": ["web"]}]),
                                               2))
            eventually(lambda: warm(kube), timeout_seconds=90, what="warm dark clusters")
            play_west(prometheus, "shop", warm=4, ready=0, served_share=0)
            kube.patch_custom("regionfailovers", "shop", {"spec": {"evacuate": ["west"]}})
            eventually(lambda: len(kube.ready_endpoint_pods("web")) == 4, timeout_seconds=60,
                       what="main and dark pods serve")
            with EndpointCounter(kube, "web") as counter:
                eventually(lambda: not first.running(), timeout_seconds=90, what="the operator at its failpoint")
                # killed by itself (its "failpoint" log line may be lost in the logging queue)
                assert first.kill() == -signal.SIGKILL
                assert [t["step"] for t in transplants(kube)] == ["Raising"]  # written before the raise
                assert replicas(kube, "web") == 4
                second = operator(2)
                eventually(lambda: [t["step"] for t in transplants(kube)] == ["Transplanted"], timeout_seconds=90,
                           what="the restarted operator finishes the transplant")
                eventually(lambda: dark_pods(kube) == [], timeout_seconds=60, what="the dark pods gone")
                time.sleep(1)
            assert counter.counts and min(counter.counts) >= 4, (min(counter.counts), counter.counts)

            fail_back(kube, prometheus, "transplantcrash")
            eventually(lambda: transplants(kube) == [], timeout_seconds=120, what="the transplant returned")
            assert replicas(kube, "web") == 2
        finally:
            for process in (first, second):
                if process is not None and process.running():
                    process.kill()
            print(first.log_tail(80))

        log = [w for w in writes(kube_cluster.audit_log, namespace=kube.namespace, since=since) if w.succeeded]
        scales = [op["value"] for w in log if w.resource == "deployments" and w.name == "web"
                  and isinstance(w.body, list) for op in w.body if op.get("path") == "/spec/replicas"]
        assert scales == [4, 2], scales  # raised once (not again after the restart), lowered once
        moved = [w.body["status"]["transplantedReplicas"] for w in log
                 if w.resource == "darkclusters/status" and w.field_manager == "regionshift-transplant"]
        assert moved == [2, 0], moved
