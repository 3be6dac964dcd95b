"""Detection and sizing of a RegionFailover against a real Prometheus and the real control plane.

A Prometheus server (Debian's package) starts once with eight days of backfilled history for
every scenario's metric and scrapes a live exporter every second; the operator runs
in-process against the session's local region. Each test sets the live signal and waits
for the RegionFailover's status (and its DarkClusters) to say what the operator concluded.

The tests' day does not follow the wall clock: :class:`SyntheticDay` counts its phase from the
start of the run, and the tests whose outcome depends on where in the day they run (sizing
above all: near the trough a region's spare replicas cover a peer's share) run at four
phases, trough, rising, peak and falling, each its own metric in the one server. So the
suite passes at any hour, and shows it.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from regionshift.controllers.regionfailover import domain as failover_domain
from regionshift.local.cluster import LocalCluster, free_port
from tests.support.cluster import Kube, eventually, namespace_in
from tests.support.operator_process import StartOperator, operator_process  # noqa: F401  (the fixture)
from tests.support.prometheus_server import Metric, PrometheusServer
from tests.support.recording_proxy import RecordingProxy
from tests.support.synthetic_day import DAY, PHASES, SyntheticDay

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("running_operator")]

REGIONS = {"east": 1000.0, "west": 800.0, "central": 600.0}
HISTORY_DAYS = 8
PHASED = ("regional", "sizing", "savior")
"""Scenarios that run at every phase of the day."""
SINGLE = ("global", "rollout", "gap", "fallback", "errors", "children", "cache", "refresh")
SHORT_PEER_HOURS = 6.0


RUN = SyntheticDay(start=time.time(), levels=REGIONS)


def metric(scenario: str, phase: str = "rising") -> str:
    return f"sps_{scenario}_{phase}"


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    """One server for the module: every scenario's history, the phased ones at four phases."""
    end = time.time() // 60 * 60
    times = [end - HISTORY_DAYS * DAY + 60.0 * i for i in range(int(HISTORY_DAYS * DAY / 60) + 1)]
    history: dict[Metric, list[tuple[float, float]]] = {}
    series = [(s, p) for s in PHASED for p in PHASES] + [(s, "rising") for s in SINGLE]
    for scenario, phase in series:
        for region in REGIONS:
            history[Metric.of(metric(scenario, phase), region=region)] = [
                (t, RUN.signal(region, t, phase=phase)) for t in times]
    for region in REGIONS:  # the cache test's second query: the same shape at twice the level
        history[Metric.of(metric("cache2"), region=region)] = [(t, RUN.signal(region, t, scale=2.0)) for t in times]
    history[Metric.of(metric("cache"), region="south")] = [  # a new region: hours of history, not a day
        (t, RUN.signal("south", t)) for t in times if t > end - SHORT_PEER_HOURS * 3600]
    for phase in PHASES:
        history[Metric.of(f"replicas_{phase}", deployment="api")] = [
            (t, RUN.replicas_for(RUN.signal("east", t, phase=phase))) for t in times]
    for deployment in ("web", "blocked"):
        history[Metric.of("replicas_rising", deployment=deployment)] = [
            (t, RUN.replicas_for(RUN.signal("east", t))) for t in times]
    with PrometheusServer(history=history) as server:
        yield server


def live(prometheus: PrometheusServer, scenario: str, phase: str = "rising", *, scale: float = 1.0,
         regions: tuple[str, ...] = tuple(REGIONS), **factors: float) -> None:
    """Set each region's live signal to its healthy value times a factor (default 1)."""
    now = time.time()
    for region in regions:
        prometheus.exporter.set(metric(scenario, phase), {"region": region},
                                RUN.signal(region, now, phase=phase, scale=scale) * factors.get(region, 1.0))
    prometheus.exporter.wait_for_scrapes(2)


def region_failover(prometheus_url: str, scenario: str, phase: str = "rising", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "regionshift.io/v1alpha1",
        "kind": "RegionFailover",
        "metadata": {"name": "domain"},
        "spec": {
            "region": "east",
            "peers": [{"name": "west"}, {"name": "central"}],
            "signal": {"prometheusUrl": prometheus_url, "query": f'{metric(scenario, phase)}{{region="{{region}}"}}',
                       "stepSeconds": 1, "historyDays": HISTORY_DAYS - 1, "historyStepSeconds": 60,
                       "refitIntervalSeconds": 3600},
            "detection": {"ratioThreshold": 0.7, "consecutiveSamples": 3, "minimumExpected": 1.0,
                          "globalDropFraction": 0.5, "rolloutGuardSeconds": 600, "staleAfterSeconds": 5},
            "selector": {"matchLabels": {"tier": "web"}},
            "mode": "DryRun",
        },
    }
    body["spec"].update(spec)
    return body


def signal_spec(prometheus_url: str, scenario: str, phase: str = "rising", *, refit: int = 10) -> dict[str, Any]:
    return {"prometheusUrl": prometheus_url, "query": f'{metric(scenario, phase)}{{region="{{region}}"}}',
            "stepSeconds": 1, "historyDays": HISTORY_DAYS - 1, "historyStepSeconds": 60,
            "refitIntervalSeconds": refit}


def participant(name: str, *, replicas: int, tier: str = "web") -> dict[str, Any]:
    """A Deployment the RegionFailover's selector (tier: web) picks up."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"tier": tier}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1"}]}}}}


def autoscaled(name: str, phase: str) -> dict[str, Any]:
    """A participant running what its autoscaler runs now, at this phase of the day."""
    return participant(name, replicas=int(RUN.replicas_for(RUN.signal("east", time.time(), phase=phase))))


def dark_clusters(kube: Kube) -> dict[str, dict[str, Any]]:
    items = kube.custom.list_namespaced_custom_object("regionshift.io", "v1alpha1", kube.namespace, "darkclusters")
    return {dc["metadata"]["name"]: dc for dc in items["items"]}


def dark_status(kube: Kube, name: str = "api") -> dict[str, Any]:
    """Status of one DarkCluster ({} until it exists)."""
    return dark_clusters(kube).get(name, {}).get("status") or {}


def status(kube: Kube, name: str = "domain") -> dict[str, Any]:
    return kube.get_custom("regionfailovers", name).get("status") or {}


def regions(kube: Kube) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in status(kube).get("regions") or []}


def verdicts(kube: Kube) -> dict[str, str]:
    return {name: item.get("verdict") for name, item in regions(kube).items()}


def condition(kube: Kube, type_: str, name: str = "domain") -> dict[str, Any]:
    return next((c for c in status(kube, name).get("conditions") or [] if c["type"] == type_), {})


def evaluated_at(kube: Kube) -> float:
    text = status(kube).get("lastEvaluatedAt")
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else 0.0


def still_evaluated(kube: Kube) -> None:
    """lastEvaluatedAt moves on: detection runs whatever else is failing."""
    before = evaluated_at(kube)
    eventually(lambda: evaluated_at(kube) > before, timeout_seconds=20, what="lastEvaluatedAt advancing")


ALL_HEALTHY = {"east": "Healthy", "west": "Healthy", "central": "Healthy"}


@pytest.mark.parametrize("phase", PHASES)
def test_regional_drop_turns_the_region_unhealthy(kube: Kube, prometheus: PrometheusServer, phase: str) -> None:
    live(prometheus, "regional", phase)
    kube.apply(region_failover(prometheus.url, "regional", phase))
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=60, what="every region healthy")
    assert abs(regions(kube)["west"]["ratio"] - 1.0) < 0.1
    assert evaluated_at(kube) > time.time() - 30

    dropped = time.time()
    live(prometheus, "regional", phase, west=0.3)
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
    prometheus.exporter.remove(metric("gap"), {"region": "west"})
    prometheus.exporter.wait_for_scrapes(2)
    eventually(lambda: verdicts(kube).get("west") == "Unknown", timeout_seconds=20, what="west unknown")
    assert regions(kube)["west"]["heldBackBy"] in ("NoData", "StaleData")
    assert verdicts(kube)["east"] == "Healthy"


def sizing_count() -> float:
    return REGISTRY.get_sample_value("regionshift_sizing_duration_seconds_count") or 0.0


@pytest.mark.parametrize("phase", PHASES)
def test_dark_cluster_size_follows_the_traffic(kube: Kube, prometheus: PrometheusServer, phase: str) -> None:
    live(prometheus, "sizing", phase)
    runs = sizing_count()
    kube.apply(autoscaled("api", phase))
    kube.apply(region_failover(
        prometheus.url, "sizing", phase, signal=signal_spec(prometheus.url, "sizing", phase),
        darkCapacity={"headroomRatio": 1.0, "minReplicas": 0, "maxReplicas": 100, "horizonSeconds": 3600,
                      "replicasQuery": f'replicas_{phase}{{deployment="{{deployment}}"}}'},
    ))

    def sized() -> dict[str, Any] | None:
        status = dark_status(kube)
        return status if status.get("forecastReplicas") is not None and status.get("modelFit") else None

    first = eventually(sized, timeout_seconds=60, what="the DarkCluster sized from history")
    fit = first["modelFit"]
    assert fit["rSquared"] > 0.9 and fit["samples"] > 1000
    assert abs(fit["slopeReplicasPerUnit"] - 0.01) < 0.002
    assert first["forecastReplicas"] > 0
    eventually(lambda: (kube.deployment("api-dark") or {}).get("spec", {}).get("replicas") == first["forecastReplicas"]
               == (sized() or {}).get("desiredReplicas"), timeout_seconds=60, what="the shadow runs the forecast size")
    eventually(lambda: sizing_count() > runs, what="the sizing run's duration observed")

    live(prometheus, "sizing", phase, west=3.0)  # the largest peer's traffic triples
    later = eventually(lambda: (s := sized()) and s["forecastReplicas"] > first["forecastReplicas"] and s,
                       timeout_seconds=60, what="more dark replicas for more peer traffic")
    eventually(lambda: kube.deployment("api-dark")["spec"]["replicas"] == later["forecastReplicas"],
               timeout_seconds=60, what="the shadow follows the new size")
    assert condition(kube, "Sizing")["status"] == "True" and condition(kube, "Sizing")["reason"] == "Sized"
    managers = {m["manager"] for m in dark_clusters(kube)["api"]["metadata"]["managedFields"]
                if m.get("subresource") == "status"}
    assert "regionshift-sizing" in managers


def cached_at(kube: Kube) -> float:
    data = kube.core.read_namespaced_config_map("domain-history", kube.namespace).binary_data
    return float(json.loads(gzip.decompress(base64.b64decode(data["history.json.gz"])))["savedAt"])


def test_prometheus_down_pauses_detection_and_sizing_goes_on_from_the_cache(
    kube_cluster: LocalCluster, prometheus: PrometheusServer, operator_process: StartOperator
) -> None:
    # Its own namespace prefix and its own operator process: the session operator does not
    # watch it, and the process is SIGKILLed so the next one knows only the ConfigMap.
    with namespace_in(kube_cluster, prefix="fb") as kube:
        live(prometheus, "fallback")
        kube.apply(participant("api", replicas=12))
        kube.apply(region_failover(prometheus.url, "fallback", signal=signal_spec(prometheus.url, "fallback"),
                                   darkCapacity={"replicasQuery": 'replicas_rising{deployment="{deployment}"}'}))
        first = operator_process(kubeconfig=kube_cluster.kubeconfig, namespaces=[kube.namespace])
        eventually(lambda: condition(kube, "Sizing").get("reason") == "Sized", timeout_seconds=60, what="sized once")
        eventually(lambda: kube.core.read_namespaced_config_map("domain-history", kube.namespace).binary_data,
                   what="history cached in a ConfigMap")
        first.kill()

        dead = f"http://127.0.0.1:{free_port()}"
        kube.patch_custom("regionfailovers", "domain", {"spec": {"signal": {"prometheusUrl": dead}}})
        operator_process(kubeconfig=kube_cluster.kubeconfig, namespaces=[kube.namespace])
        eventually(lambda: condition(kube, "Detecting").get("reason") == "PrometheusUnavailable", timeout_seconds=60,
                   what="detection paused")
        assert condition(kube, "Detecting")["status"] == "False"
        assert set(verdicts(kube).values()) == {"Unknown"}
        eventually(lambda: "the cache saved" in condition(kube, "Sizing").get("message", ""), timeout_seconds=60,
                   what="sizing from the cached history, after a restart with nothing in memory")
        assert condition(kube, "Sizing")["status"] == "True"
        # The fallback reports when its data was fetched, not when it was read back.
        saved = dt.datetime.fromtimestamp(cached_at(kube), tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert f"the cache saved {saved}" in condition(kube, "Sizing")["message"]
        still_evaluated(kube)

        kube.patch_custom("regionfailovers", "domain", {"spec": {"signal": {"prometheusUrl": prometheus.url}}})
        eventually(lambda: condition(kube, "Detecting").get("status") == "True", timeout_seconds=30, what="recovered")
        eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=30, what="healthy again")


def test_a_rejected_query_is_reported_and_other_domains_keep_working(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "regional")
    broken = region_failover(prometheus.url, "regional")
    broken["metadata"]["name"] = "broken"
    broken["spec"]["signal"]["query"] = 'sum(sps_regional_rising{region="{region}"}'  # unclosed parenthesis
    kube.apply(broken)
    kube.apply(region_failover(prometheus.url, "regional"))

    eventually(lambda: condition(kube, "Detecting", "broken").get("reason") == "QueryRejected", timeout_seconds=30,
               what="the bad query reported in a condition")
    assert condition(kube, "Detecting", "broken")["status"] == "False"
    assert "parse error" in condition(kube, "Detecting", "broken")["message"]
    assert status(kube, "broken")["lastEvaluatedAt"]
    eventually(lambda: any(e.reason == "DetectionPaused" and e.type == "Warning" for e in kube.events("broken")),
               what="a Warning Event for the paused detection")
    assert kube.get_custom("regionfailovers", "broken")["spec"]["signal"]["query"] == broken["spec"]["signal"]["query"]
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=60, what="the other domain keeps working")


def test_deleting_the_region_failover_collects_its_dark_clusters_shadows_and_cache(
    kube: Kube, prometheus: PrometheusServer
) -> None:
    live(prometheus, "children")
    kube.apply(participant("api", replicas=12))
    kube.apply(region_failover(prometheus.url, "children", darkCapacity={
        "replicasQuery": 'replicas_rising{deployment="{deployment}"}'}))
    eventually(lambda: kube.deployment("api-dark"), timeout_seconds=60, what="DarkCluster and shadow created")
    eventually(lambda: kube.core.list_namespaced_config_map(kube.namespace, label_selector=
                                                            "regionshift.io/regionfailover=domain").items,
               what="history cache written")
    dc = kube.get_custom("darkclusters", "api")
    assert dc["metadata"]["ownerReferences"][0]["kind"] == "RegionFailover"
    uid = kube.get_custom("regionfailovers", "domain")["metadata"]["uid"]
    assert failover_domain.domain_of(uid=uid).nbytes() > 0

    kube.delete_custom("regionfailovers", "domain")
    # kube-controller-manager's garbage collector removes each generation of dependents.
    eventually(lambda: not dark_clusters(kube), timeout_seconds=60, what="DarkCluster gone")
    eventually(lambda: kube.deployment("api-dark") is None, timeout_seconds=60, what="shadow gone")
    eventually(lambda: not kube.core.list_namespaced_config_map(
        kube.namespace, label_selector="regionshift.io/regionfailover=domain").items, timeout_seconds=60, what="cache gone")
    assert kube.deployment("api") is not None
    eventually(lambda: uid not in failover_domain._domains, what="histories and forecasts released")


@pytest.mark.parametrize("phase", PHASES)
def test_a_peer_drop_is_held_back_while_this_savior_is_not_warm(
    kube: Kube, prometheus: PrometheusServer, phase: str
) -> None:
    live(prometheus, "savior", phase)
    slow = autoscaled("api", phase)
    slow["spec"]["template"]["metadata"]["annotations"] = {"regionshift.io/simulated-start": "300s"}
    kube.apply(slow)
    kube.apply(region_failover(prometheus.url, "savior", phase, darkCapacity={
        "headroomRatio": 1.0, "replicasQuery": f'replicas_{phase}{{deployment="{{deployment}}"}}'}))
    eventually(lambda: dark_status(kube).get("desiredReplicas", 0) > 0, timeout_seconds=60,
               what="dark capacity sized, its pods still starting")
    assert dark_status(kube)["warmReplicas"] == 0
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=60, what="every region healthy")

    live(prometheus, "savior", phase, west=0.3)
    eventually(lambda: verdicts(kube).get("west") == "HeldBack", timeout_seconds=20, what="west held back")
    assert regions(kube)["west"]["heldBackBy"] == "SaviorsNotWarm"


@pytest.fixture
def refusing_policy(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A ValidatingAdmissionPolicy that refuses creating the DarkCluster ``blocked`` in this namespace.

    The API server answers the create with the policy's reason: ``Invalid`` is HTTP 422,
    ``Forbidden`` HTTP 403, as for any other refusal.
    """
    reason = request.param
    name = f"refuse-blocked-{kube.namespace}"
    admission = client.AdmissionregistrationV1Api(kube.api)
    admission.create_validating_admission_policy({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": ["regionshift.io"], "apiVersions": ["*"],
                                                         "operations": ["CREATE"], "resources": ["darkclusters"]}]},
                 "validations": [{"expression": "object.metadata.name != 'blocked'", "reason": reason,
                                  "message": "the DarkCluster 'blocked' is refused by the test's admission policy"}]},
    })
    admission.create_validating_admission_policy_binding({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": kube.namespace}}}},
    })
    probe = {"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": "blocked"},
             "spec": {"targetDeployment": "blocked"}}

    def refused() -> bool:
        try:
            kube.custom.create_namespaced_custom_object("regionshift.io", "v1alpha1", kube.namespace, "darkclusters",
                                                        probe, dry_run="All")
        except client.ApiException as exc:
            return exc.status in (403, 422)
        return False

    eventually(refused, timeout_seconds=30, what="the admission policy in force")
    try:
        yield reason
    finally:
        admission.delete_validating_admission_policy_binding(name)
        admission.delete_validating_admission_policy(name)


@pytest.mark.parametrize(("refusing_policy", "status_code"), [("Invalid", 422), ("Forbidden", 403)],
                         indirect=["refusing_policy"], ids=["422-invalid", "403-forbidden"])
def test_a_deployment_that_cannot_be_sized_does_not_stop_the_others(
    kube: Kube, prometheus: PrometheusServer, refusing_policy: str, status_code: int
) -> None:
    live(prometheus, "errors")
    kube.apply(autoscaled("api", "rising"))
    kube.apply(participant("blocked", replicas=3))  # its DarkCluster is refused by the API server
    kube.apply(participant("nohist", replicas=2))   # its replica query matches nothing
    kube.apply(region_failover(prometheus.url, "errors", signal=signal_spec(prometheus.url, "errors"), darkCapacity={
        "headroomRatio": 1.0, "replicasQuery": 'replicas_rising{deployment="{deployment}"}'}))

    eventually(lambda: dark_status(kube).get("forecastReplicas") is not None, timeout_seconds=60,
               what="api sized although the others cannot be")
    sizing = eventually(lambda: (c := condition(kube, "Sizing")).get("reason") == "PartlySized" and c,
                        timeout_seconds=60, what="the Sizing condition naming what failed")
    assert sizing["status"] == "False"
    assert "nohist: NoReplicaHistory" in sizing["message"]
    assert f"blocked: CreateRefused: DarkCluster 'blocked' not created: HTTP {status_code}" in sizing["message"]
    assert "refused by the test's admission policy" in sizing["message"]
    synced = condition(kube, "DarkClustersSynced")
    assert synced["status"] == "False" and synced["reason"] == "CreateRefused"
    assert set(dark_clusters(kube)) == {"api", "nohist"}
    eventually(lambda: {"CreateRefused", "NoReplicaHistory"} <= {e.reason for e in kube.events("domain")
                                                                if e.type == "Warning"},
               what="a Warning Event for each Deployment that cannot be sized")
    assert verdicts(kube) == ALL_HEALTHY and condition(kube, "Detecting")["status"] == "True"
    still_evaluated(kube)


def test_dark_clusters_follow_the_policy_and_the_selector_and_are_never_adopted(
    kube: Kube, prometheus: PrometheusServer
) -> None:
    live(prometheus, "children")
    kube.apply(participant("api", replicas=12))
    kube.apply(participant("web", replicas=12))
    kube.apply(region_failover(prometheus.url, "children", darkCapacity={
        "minReplicas": 0, "maxReplicas": 100, "replicasQuery": 'replicas_rising{deployment="{deployment}"}'}))
    uid = kube.get_custom("regionfailovers", "domain")["metadata"]["uid"]
    eventually(lambda: set(dark_clusters(kube)) == {"api", "web"}, timeout_seconds=60, what="one DarkCluster each")

    kube.patch_custom("regionfailovers", "domain", {"spec": {"darkCapacity": {"minReplicas": 2, "maxReplicas": 7}}})

    def bounds() -> set[tuple[int, int]]:
        return {(dc["spec"]["replicas"]["minReplicas"], dc["spec"]["replicas"]["maxReplicas"])
                for dc in dark_clusters(kube).values()}

    eventually(lambda: bounds() == {(2, 7)}, timeout_seconds=90, what="min/max followed the policy")

    kube.apps.patch_namespaced_deployment("web", kube.namespace, {"metadata": {"labels": {"tier": "batch"}}})
    eventually(lambda: set(dark_clusters(kube)) == {"api"}, timeout_seconds=30,
               what="the DarkCluster of the Deployment that left the selector removed")
    assert any(e.reason == "DarkClusterRemoved" for e in kube.events("domain"))

    # A DarkCluster someone else made, named like a Deployment that then joins: never adopted.
    kube.apply({"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": "mine"},
                "spec": {"targetDeployment": "mine", "replicas": {"source": "Fixed", "fixedReplicas": 1,
                                                                  "minReplicas": 0, "maxReplicas": 3}}})
    kube.apply(participant("mine", replicas=4))
    synced = eventually(lambda: (c := condition(kube, "DarkClustersSynced")).get("reason") == "NameTaken" and c,
                        timeout_seconds=30, what="the name clash reported")
    assert synced["status"] == "False" and "mine" in synced["message"]
    eventually(lambda: any(e.reason == "NameTaken" and "mine" in e.message for e in kube.events("domain")),
               what="a Warning Event for the name clash")
    mine = dark_clusters(kube)["mine"]
    assert not any(o.get("uid") == uid for o in mine["metadata"].get("ownerReferences") or [])
    assert mine["spec"]["replicas"] == {"source": "Fixed", "fixedReplicas": 1, "minReplicas": 0, "maxReplicas": 3}
    assert "forecastReplicas" not in (mine.get("status") or {})
    assert set(dark_clusters(kube)) == {"api", "mine"}

    # A participant deleted: its DarkCluster goes, and its shadow with it; the one not ours stays.
    eventually(lambda: kube.deployment("api-dark"), timeout_seconds=30, what="api's shadow")
    kube.apps.delete_namespaced_deployment("api", kube.namespace)
    eventually(lambda: set(dark_clusters(kube)) == {"mine"}, timeout_seconds=30, what="api's DarkCluster removed")
    eventually(lambda: kube.deployment("api-dark") is None, timeout_seconds=60, what="api's shadow collected")


def test_a_changed_query_or_a_new_peer_takes_effect_at_once(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "cache")
    live(prometheus, "cache2", scale=2.0)
    live(prometheus, "cache", regions=("south",))
    kube.apply(region_failover(prometheus.url, "cache"))  # refitIntervalSeconds: 3600
    eventually(lambda: verdicts(kube) == ALL_HEALTHY, timeout_seconds=60, what="every region healthy")
    first = regions(kube)["east"]["expected"]

    kube.patch_custom("regionfailovers", "domain", {"spec": {"signal": {"query": f'{metric("cache2")}{{region="{{region}}"}}'}}})
    eventually(lambda: abs(regions(kube)["east"]["expected"] / first - 2.0) < 0.2, timeout_seconds=30,
               what="the new query's forecast used at once")
    assert verdicts(kube) == ALL_HEALTHY

    kube.patch_custom("regionfailovers", "domain", {"spec": {
        "signal": {"query": f'{metric("cache")}{{region="{{region}}"}}'},
        "peers": [{"name": "west"}, {"name": "central"}, {"name": "south"}]}})
    eventually(lambda: verdicts(kube) == {**ALL_HEALTHY, "south": "Unknown"}, timeout_seconds=30,
               what="the new peer judged at once: Unknown, the others keep their verdicts")
    assert "a forecast needs at least a day" in regions(kube)["south"]["message"]
    assert abs(regions(kube)["east"]["expected"] / first - 1.0) < 0.1


def test_a_refresh_asks_prometheus_only_for_what_is_new(kube: Kube, prometheus: PrometheusServer) -> None:
    live(prometheus, "refresh")
    with RecordingProxy(upstream=prometheus.url) as proxy:
        kube.apply(region_failover(proxy.url, "refresh", signal=signal_spec(proxy.url, "refresh", refit=10)))
        query = f'{metric("refresh")}{{region="east"}}'

        def history_fetches() -> list[float]:
            return [q.span_seconds or 0.0 for q in proxy.recorded()
                    if q.path.endswith("query_range") and q.params.get("query") == query
                    and float(q.params.get("step", 0)) == 60.0]

        spans = eventually(lambda: len(s := history_fetches()) >= 3 and s, timeout_seconds=60,
                           what="three refreshes of east's history")
        assert verdicts(kube) == ALL_HEALTHY
    assert spans[0] > (HISTORY_DAYS - 1) * DAY  # the whole window, once
    assert all(span < 600 for span in spans[1:]), spans  # then only what is new (and two steps again)
