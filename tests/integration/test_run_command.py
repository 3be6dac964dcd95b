"""`regionshift run` as its own process: reconciles, serves /metrics, stops on SIGTERM, logs quietly.

A routine conflict (two writers met on one object, the next try succeeds) is not an error:
the operator's log, which is what an on-call engineer greps, shows ERROR and tracebacks
only for what needs a human.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from regionshift.local.cluster import LocalCluster
from tests.support.cluster import Kube, eventually, namespace_in
from tests.support.manifests import APP, dark_cluster
from tests.support.operator_process import StartOperator, operator_process  # noqa: F401  (the fixture)
from tests.support.prometheus_server import Metric, PrometheusServer
from tests.support.synthetic_day import DAY, SyntheticDay

pytestmark = pytest.mark.integration

REGIONS = {"us-east": 1000.0, "us-west": 700.0, "eu-west": 400.0}

ALARMING = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) |Traceback \(most recent call last\)", re.MULTILINE)
"""A log line at ERROR or CRITICAL (the format of ``regionshift run``), or a traceback."""



def test_run_reconciles_serves_metrics_and_stops_on_sigterm(
    kube_cluster: LocalCluster, operator_process: StartOperator
) -> None:
    with namespace_in(kube_cluster, prefix="cmd") as kube:
        operator = operator_process(kubeconfig=kube_cluster.kubeconfig, namespaces=[kube.namespace])
        kube.apply(APP)
        kube.apply(dark_cluster(replicas=1))
        eventually(lambda: kube.deployment("api-dark"), timeout_seconds=60, what="shadow created by the process")
        text = eventually(lambda: 'regionshift_reconciliations_total{kind="DarkCluster",outcome="Reconciled"}'
                          in (m := operator.metrics()) and m, what="reconciliations counted")
        assert 'regionshift_shadow_writes_total{action="create"} 1.0' in text
        assert 'regionshift_dark_replicas{darkcluster="api"' in text
        assert operator.terminate() == 0, operator.log_tail()


RUN = SyntheticDay(start=time.time(), levels=REGIONS)


def signal(region: str, t: float) -> float:
    return RUN.signal(region, t)


@pytest.fixture(scope="module")
def churn_prometheus() -> Iterator[PrometheusServer]:
    """Two weeks of each region's signal and of the participant's replicas."""
    end = time.time() // 60 * 60
    times = [end - 14 * DAY + 60.0 * i for i in range(int(14 * DAY / 60) + 1)]
    history = {Metric.of("sps_churn", region=region): [(t, signal(region, t)) for t in times] for region in REGIONS}
    history[Metric.of("replicas_churn", deployment="web")] = [(t, float(round(2 + signal("us-east", t) / 100)))
                                                               for t in times]
    with PrometheusServer(history=history) as server:
        yield server


def live(prometheus: PrometheusServer, **factors: float) -> None:
    now = time.time()
    for region in REGIONS:
        prometheus.exporter.set("sps_churn", {"region": region}, signal(region, now) * factors.get(region, 1.0))


def region_failover(prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "regionshift.io/v1alpha1",
        "kind": "RegionFailover",
        "metadata": {"name": "domain"},
        "spec": {
            "region": "us-east",
            "peers": [{"name": "us-west"}, {"name": "eu-west"}],
            "signal": {"prometheusUrl": prometheus_url, "query": 'sps_churn{region="{region}"}',
                       "stepSeconds": 1, "historyDays": 14, "historyStepSeconds": 60, "refitIntervalSeconds": 3600},
            "detection": {"ratioThreshold": 0.7, "consecutiveSamples": 3, "minimumExpected": 1.0,
                          "globalDropFraction": 0.5, "rolloutGuardSeconds": 600, "staleAfterSeconds": 5},
            "selector": {"matchLabels": {"tier": "web"}},
            "darkCapacity": {"replicasQuery": 'replicas_churn{deployment="{deployment}"}'},
            "mode": "DryRun",
        },
    }


def participant(*, replicas: int, version: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"tier": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": f"registry.example/web:{version}"}]}}}}


def _set_image(kube: Kube, deployment: str, image: str) -> None:
    kube.apps.patch_namespaced_deployment(deployment, kube.namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": deployment, "image": image}]}}}})


def test_normal_churn_logs_no_error_and_no_traceback(
    kube_cluster: LocalCluster, operator_process: StartOperator, churn_prometheus: PrometheusServer
) -> None:
    live(churn_prometheus)
    churn_prometheus.exporter.wait_for_scrapes(2)
    with namespace_in(kube_cluster, prefix="cmd") as kube:
        operator = operator_process(kubeconfig=kube_cluster.kubeconfig, namespaces=[kube.namespace])
        kube.apply(APP)
        kube.apply(participant(replicas=2, version=1))
        kube.apply(dark_cluster(replicas=3))
        kube.apply(region_failover(churn_prometheus.url))
        eventually(lambda: (kube.get_custom("darkclusters", "api").get("status") or {}).get("warmReplicas") == 3,
                   timeout_seconds=60, what="the DarkCluster warm")
        eventually(lambda: len(kube.custom.list_namespaced_custom_object(
                       "regionshift.io", "v1alpha1", kube.namespace, "darkclusters")["items"]) == 2,
                   timeout_seconds=60, what="the RegionFailover's DarkCluster for web")

        # What users and their other controllers do all day, several writers on the same objects.
        for round_ in range(6):
            kube.patch_custom("darkclusters", "api", {"spec": {
                "gate": "Open" if round_ % 2 == 0 else "Closed", "replicas": {"fixedReplicas": 2 + round_ % 3}}})
            _set_image(kube, "api", f"registry.example/api:{round_ + 2}")
            kube.apps.patch_namespaced_deployment("web", kube.namespace, {"spec": {"replicas": 2 + round_ % 2}})
            _set_image(kube, "web", f"registry.example/web:{round_ + 2}")
            kube.patch_custom("regionfailovers", "domain", {"spec": {
                "detection": {"ratioThreshold": 0.6 + 0.05 * (round_ % 3)},
                "darkCapacity": {"headroomRatio": 1.1 + 0.1 * (round_ % 2)}}})
            live(churn_prometheus, **({"us-west": 0.3} if round_ == 3 else {}))
            time.sleep(2)

        # Settled: the last round closed the gate with 4 replicas.
        eventually(lambda: (s := kube.get_custom("darkclusters", "api").get("status") or {}).get("desiredReplicas") == 4
                   and s.get("gated") is True and s.get("readyReplicas") == 0,
                   timeout_seconds=90, what="the DarkCluster settles on the last change")
        eventually(lambda: (kube.get_custom("regionfailovers", "domain").get("status") or {}).get("lastEvaluatedAt"),
                   timeout_seconds=60, what="the RegionFailover evaluated")
        time.sleep(3)
        assert operator.terminate() == 0
        alarming = [line for line in operator.log_text().splitlines() if ALARMING.search(line)]
        assert not alarming, "the operator logged errors during normal churn:\n" + "\n".join(alarming[:20])
