"""The chart's RBAC, proven: enough for a whole evacuation and failback, and no rule to spare.

One operator process (``regionshift run``) runs with a token of the chart's ServiceAccount
(a TokenRequest, as a kubelet gets one for the pod), so it has exactly the chart's Roles. It
watches, in the session region, one namespace per case, each with the Role the chart renders
for it, all at once (one cluster, one operator, one Prometheus; the cases run side by side):

* ``out`` and ``savior``: the chart's Role whole. In ``out`` this region (east) evacuates
  itself (peer Services and EndpointSlices, HTTPRoute and DNS weights, the canary Ingress)
  and fails back; in ``savior`` it saves its peer (ungates its dark pods, transplants into
  an autoscaled Deployment, closes the gate with a PodDisruptionBudget to recount) and the
  peer fails back. Nothing is refused, anywhere in the operator's log, Events or conditions.
* one namespace per rule of the chart, with that rule left out: the operator reports the
  specific refusal (the API server's ``cannot <verb> resource "<resource>"`` for that
  namespace) in a condition, an Event or its log, and goes on serving the other namespaces.
  The rules of the four watched kinds (RegionFailovers, DarkClusters, Deployments, pods) are
  the exception: kopf retries a refused watch for about a minute, then stops the whole
  operator (and without DarkClusters its index never fills, which holds every handler
  back), so those four cases share a second operator process of their own, whose log shows
  each refusal at its first attempt.

The peer region (west) has no cluster here: what its operator would export to the shared
Prometheus the test's exporter serves, as in test_evacuation_modes.py.
"""

from __future__ import annotations

import base64
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, utils

from regionshift.api.models import PROMETHEUS_TOKEN_LABEL
from regionshift.local.cluster import LocalCluster
from tests.support.chart import render_chart, service_account_kubeconfig
from tests.support.cluster import Kube, eventually, namespace_in
from tests.support.manifests import APP, dark_cluster
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus_server import PrometheusServer
from tests.support.region_failover import region_failover
from tests.support.region_traffic import DNS_GROUP, GATEWAY_GROUP, HOST, RegionTraffic, install_traffic
from tests.support.shared_signal import LiveSignal, SignalScenario, shared_prometheus
from tests.support.synthetic_day import SyntheticDay
from tests.support.traffic import traffic_crds  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

SCENARIO = SignalScenario(name="rbac", run=SyntheticDay(start=time.time(), levels={"east": 1000.0, "west": 800.0}))
TOKEN_SECRET = "prom-token"
WEST = {"name": "west", "gatewayAddress": "192.0.2.10:8443", "dnsRecord": HOST}
"""West as east's spec.peers lists it: a documentation address (TEST-NET-1) nothing connects to."""
VALUES: dict[str, Any] = {
    "region": "east",
    "prometheus": {"url": "http://prometheus:9090", "tokenSecret": TOKEN_SECRET},
    "providers": {"gatewayAPI": True, "ingressNginx": True, "externalDNS": True},
}
"""The chart's values for this region (watchNamespaces is set to the cases' namespaces)."""


def rule_id(rule: dict[str, Any]) -> str:
    """``group/resource`` (``resource`` in the core group) naming one rule of the chart."""
    (group,), (resource,) = rule["apiGroups"], rule["resources"]
    return f"{group}/{resource}" if group else resource


def chart_rules() -> list[dict[str, Any]]:
    """The rules of the Role the chart renders with :data:`VALUES` (no cluster needed to render)."""
    docs = render_chart(values={**VALUES, "watchNamespaces": ["placeholder"]}, namespace="placeholder",
                        kubeconfig=Path("/dev/null"))
    (role,) = [d for d in docs if d["kind"] == "Role"]
    return list(role["rules"])


RULES = {rule_id(rule): rule for rule in chart_rules()}
SAVIOR_RULES = {"autoscaling/horizontalpodautoscalers"}
"""Rules only a savior's transplant needs: their cases save the peer instead of evacuating east."""
WATCH_RULES = {"regionshift.io/regionfailovers", "regionshift.io/darkclusters"}
"""Rules of the kinds kopf watches: without one, kopf stops the operator after a minute of retries.

Pods and Deployments are watched by the operator's own threads, only in a namespace with a
DarkCluster, and a refusal there is reported (the watch's log line, the reconcile's condition
and Event) while the operator serves every other namespace: their cases are ordinary ones."""


def refusal(rule: str, namespace: str) -> str:
    """What the API server says when the operator uses ``rule`` in ``namespace`` without it."""
    (group,), (resource,) = RULES[rule]["apiGroups"], RULES[rule]["resources"]
    return f'resource "{resource}" in API group "{group}" in the namespace "{namespace}"'


EVIDENCE = {
    "events": lambda ns: f" about {ns}/",  # "could not post Event <reason> about <ns>/<name>: Forbidden"
    "policy/poddisruptionbudgets": lambda ns: f"could not ask the PodDisruptionBudgets of {ns} to recount after a close: Forbidden",
}
"""Rules whose refusal the operator logs by its HTTP reason only (a failed Event, a budget not recounted)."""


@dataclass
class Case:
    """One namespace of the test: which rule its Role leaves out (None: the chart's Role whole)."""

    name: str
    kube: Kube
    without: str | None = None
    traffic: RegionTraffic | None = None
    failover: str = "out"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RbacRegion:
    """The session region with the chart's ServiceAccount, its Roles, the cases and the operator."""

    cluster: LocalCluster
    prometheus: PrometheusServer
    operator_namespace: str
    kubeconfig: Path
    cases: dict[str, Case]
    operator: OperatorProcess
    watch_operator: OperatorProcess
    """The second operator, for the namespaces whose Role lacks a watched kind's rule."""
    log_dir: Path

    def evidence(self, case: Case) -> str:
        """Everything the operator said about a case: its log, the namespace's Events, every condition."""
        kube = case.kube
        texts = [self.operator.log_text()]
        texts += [f"{e.reason}: {e.message}" for e in kube.core.list_namespaced_event(kube.namespace).items]
        for plural in ("regionfailovers", "darkclusters"):
            for item in kube.custom.list_namespaced_custom_object("regionshift.io", "v1alpha1", kube.namespace,
                                                                  plural)["items"]:
                texts += [f"{c.get('reason')}: {c.get('message')}" for c in (item.get("status") or {}).get(
                    "conditions") or []]
                texts += [str((item.get("status") or {}).get("evacuations") or "")]
        return "\n".join(texts)


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    with shared_prometheus([SCENARIO]) as server:
        yield server


def play_west(prometheus: PrometheusServer, name: str, *, warm: int, ready: int, served_share: float) -> None:
    """What west's operator would export to the shared Prometheus about the RegionFailover ``name``."""
    exporter = prometheus.exporter
    exporter.set("regionshift_region_dark_replicas", {"regionfailover": name, "region": "west", "state": "warm"}, warm)
    exporter.set("regionshift_region_dark_replicas", {"regionfailover": name, "region": "west", "state": "ready"}, ready)
    exporter.set("regionshift_region_deployments_ready", {"regionfailover": name, "region": "west"}, 1)
    exporter.set("regionshift_region_served_share", {"regionfailover": name, "region": "west"}, served_share)
    exporter.wait_for_scrapes(2)


def _apply_rbac(api: client.ApiClient, docs: list[dict[str, Any]], *, without: dict[str, str | None]) -> None:
    """Create the chart's ServiceAccount, Roles and RoleBindings, each Role without its case's rule."""
    for doc in docs:
        if doc["kind"] == "Role":
            left_out = without.get(doc["metadata"]["namespace"])
            doc = {**doc, "rules": [r for r in doc["rules"] if rule_id(r) != left_out]}
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            utils.create_from_dict(api, doc)


def _populate(case: Case, *, prometheus: PrometheusServer) -> None:
    """The user's objects of one case: traffic, the labelled token Secret, the RegionFailover.

    The cases of a rule are slower to detect (a sample every 3 s): their refusal shows in the
    first runs, and 17 domains sampling every second would slow the two whole evacuations.
    """
    kube = case.kube
    case.traffic = install_traffic(kube, region="east", replicas=2)
    kube.core.create_namespaced_secret(kube.namespace, {
        "metadata": {"name": TOKEN_SECRET, "labels": {PROMETHEUS_TOKEN_LABEL: "true"}},
        "data": {"token": base64.b64encode(b"t0ken").decode()}})
    savior = case.failover == "savior"
    if savior:
        kube.apply({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}})
        kube.apply({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
                    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                             "minReplicas": 2, "maxReplicas": 20}})
    kube.apply(region_failover(
        region="east", peers=[WEST], prometheus_url=prometheus.url, scenario=SCENARIO, name=case.failover,
        mode="Manual", evacuate=["west" if savior else "east"],
        signal={"bearerTokenSecret": TOKEN_SECRET, **({"stepSeconds": 3} if case.without else {})},
        dark_capacity={"minReplicas": 2, "maxReplicas": 2, **({"transplantAfterSeconds": 0} if savior else {})},
        failback={"stepPercent": 50, "stepIntervalSeconds": 2, "ratioThreshold": 0.5, "cooldownSeconds": 0}))


@pytest.fixture(scope="module")
def rbac_region(kube_cluster: LocalCluster, traffic_crds: list[str], prometheus: PrometheusServer,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[RbacRegion]:
    log_dir = tmp_path_factory.mktemp("rbac")
    with contextlib.ExitStack() as stack:
        operator_ns = stack.enter_context(namespace_in(kube_cluster, prefix="rbac-op")).namespace
        cases: dict[str, Case] = {}
        for name, without, failover in [("out", None, "out"), ("savior", None, "savior"),
                                        *((rule, rule, "savior" if rule in SAVIOR_RULES else "out")
                                          for rule in RULES)]:
            kube = stack.enter_context(namespace_in(kube_cluster, prefix="rbac"))
            cases[name] = Case(name=name, kube=kube, without=without, failover=failover)
        docs = render_chart(values={**VALUES, "watchNamespaces": [c.kube.namespace for c in cases.values()]},
                            namespace=operator_ns, kubeconfig=kube_cluster.kubeconfig)
        (account,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
        with kube_cluster.api_client() as api:
            _apply_rbac(api, docs, without={c.kube.namespace: c.without for c in cases.values()})
        kubeconfig = service_account_kubeconfig(kube_cluster, namespace=operator_ns, name=account,
                                                path=log_dir / "operator.kubeconfig")
        operator = OperatorProcess(kubeconfig=kubeconfig, log_path=log_dir / "operator.log",
                                   namespaces=[c.kube.namespace for c in cases.values() if c.without not in WATCH_RULES])
        watch_operator = OperatorProcess(kubeconfig=kubeconfig, log_path=log_dir / "watch-operator.log",
                                         namespaces=[c.kube.namespace for c in cases.values() if c.without in WATCH_RULES])
        try:
            # Everything at once: the operators start while the cases' objects are written (the
            # watch cases need none: their refusal comes at the first list).
            with ThreadPoolExecutor(max_workers=8) as pool:
                started = [pool.submit(operator.start), pool.submit(watch_operator.start)]
                play_west(prometheus, "out", warm=4, ready=4, served_share=1)
                play_west(prometheus, "savior", warm=4, ready=0, served_share=0)
                stack.enter_context(LiveSignal(prometheus=prometheus, scenario=SCENARIO))
                for done in [pool.submit(_populate, case, prometheus=prometheus) for case in cases.values()
                             if case.without not in WATCH_RULES] + started:
                    done.result()
            yield RbacRegion(cluster=kube_cluster, prometheus=prometheus, operator_namespace=operator_ns,
                             kubeconfig=kubeconfig, cases=cases, operator=operator, watch_operator=watch_operator,
                             log_dir=log_dir)
        finally:
            for process in (operator, watch_operator):
                if process.running():
                    process.kill()
                print(f"----- log of an operator under the chart's ServiceAccount ({process.log_path}) -----")
                print(process.log_tail(300))


def status(case: Case) -> dict[str, Any]:
    return case.kube.get_custom("regionfailovers", case.failover).get("status") or {}


def phase(case: Case) -> str | None:
    return status(case).get("phase")


def serving_dark_pods(kube: Kube) -> list[str]:
    return [p["metadata"]["name"] for p in kube.pods("regionshift.io/dark-cluster")
            if (p["metadata"].get("labels") or {}).get("app") == "web"]


def refused(region: RbacRegion, case: Case) -> str:
    """Lines of the evidence in which something was refused in the case's namespace."""
    ns = case.kube.namespace
    return "\n".join(line for line in region.evidence(case).splitlines()
                     if ("forbidden" in line.lower() and f'"{ns}"' in line) or f"of {ns} to recount" in line
                     or (f"about {ns}/" in line and "could not post" in line))


def test_out_a_whole_evacuation_and_failback_of_this_region_with_the_charts_permissions(
    rbac_region: RbacRegion,
) -> None:
    case = rbac_region.cases["out"]
    traffic = case.traffic
    assert traffic is not None
    evacuated = eventually(lambda: status(case) if phase(case) == "Evacuated" else None, timeout_seconds=120,
                           what="east Evacuated", state=lambda: str(status(case)))
    assert evacuated["roles"] == {"east": "Evacuated", "west": "Savior"}
    weights = traffic.route_weights()
    assert weights["web"] == 0 and weights["web-west"] > 0, weights
    assert traffic.dns_weight() == "0"
    assert traffic.ingress("web-regionshift") is not None  # the canary sends east's share out

    case.kube.patch_custom("regionfailovers", "out", {"spec": {"evacuate": []}})
    final = eventually(lambda: status(case) if phase(case) == "Steady" and not status(case).get("evacuations")
                       else None, timeout_seconds=120, what="east failed back", state=lambda: str(status(case)))
    assert final["lastEvacuation"]["failbackDoneAt"]
    assert traffic.route_weights()["web"] > 0 and traffic.dns_weight() != "0"
    eventually(lambda: traffic.ingress("web-regionshift") is None, timeout_seconds=30, what="the canary removed")
    assert refused(rbac_region, case) == ""


def test_savior_a_whole_evacuation_and_failback_of_the_peer_with_the_charts_permissions(
    rbac_region: RbacRegion, prometheus: PrometheusServer,
) -> None:
    case = rbac_region.cases["savior"]
    kube = case.kube
    eventually(lambda: phase(case) == "Evacuated", timeout_seconds=120, what="west Evacuated",
               state=lambda: str(status(case)))
    assert status(case)["roles"] == {"east": "Savior", "west": "Evacuated"}
    eventually(lambda: status(case).get("transplants"), timeout_seconds=60, what="a transplant into web",
               state=lambda: str(status(case)))

    case.kube.patch_custom("regionfailovers", "savior", {"spec": {"evacuate": []}})
    play_west(prometheus, "savior", warm=4, ready=0, served_share=1)  # west serves its share again
    eventually(lambda: phase(case) == "Steady" and not status(case).get("evacuations"), timeout_seconds=120,
               what="west failed back", state=lambda: str(status(case)))
    eventually(lambda: serving_dark_pods(kube) == [], timeout_seconds=60, what="east's dark pods gated again")
    assert refused(rbac_region, case) == ""


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_is_needed_without_it_the_operator_reports_the_refusal(
    rbac_region: RbacRegion, rule: str,
) -> None:
    case = rbac_region.cases[rule]
    ns = case.kube.namespace
    expected = EVIDENCE.get(rule, lambda ns: refusal(rule, ns))(ns)
    if rule in WATCH_RULES:
        watcher = rbac_region.watch_operator
        eventually(lambda: expected in watcher.log_text(), timeout_seconds=60, what=f"the refusal {expected!r}",
                   state=lambda: watcher.log_tail(20))
        return
    if rule == "policy/poddisruptionbudgets":  # the budgets are listed when a gate closes: open one and close it
        case.kube.apply(APP)
        case.kube.apply(dark_cluster(replicas=1, gate="Open"))
        eventually(lambda: [p for p in case.kube.pods("regionshift.io/dark-cluster")
                            if (p["metadata"].get("labels") or {}).get("app") == "api"],
                   timeout_seconds=90, what="an open dark pod of api")
        case.kube.patch_custom("darkclusters", "api", {"spec": {"gate": "Closed"}})
    def reported() -> bool:
        lines = rbac_region.evidence(case).splitlines()
        if rule == "events":
            return any(expected in line and "could not post Event" in line and "Forbidden" in line for line in lines)
        return any(expected in line for line in lines)

    found = eventually(reported, timeout_seconds=120,
                       what=f"the refusal {expected!r}", state=lambda: refused(rbac_region, case)[-2000:])
    assert found
    assert rbac_region.operator.running(), "a refusal in one namespace must not stop the operator"
