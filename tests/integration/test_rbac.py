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

ClusterRole mode (the chart without ``watchNamespaces``) last, in the second region's cluster
(a cluster-wide operator would serve every case above): an operator with the ClusterRole's
token and no ``--namespace`` detects, keeps its dark capacity warm, opens its gates and saves
the peer through a whole evacuation and failback; then, for each watched kind, an operator
under a ClusterRole without that kind's rule is refused the cluster-wide watch. The
ClusterRole's rules are the Role's (checked), so the per-rule cases above hold for it too.

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
from tests.support.regions import second_region_cluster  # noqa: F401 - fixture
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
    """The RegionFailover's name; also what this region does in it (out or savior) unless ``role`` says."""
    extra: dict[str, Any] = field(default_factory=dict)
    role: str | None = None
    """``out`` (this region evacuates) or ``savior`` (it saves the peer); default: :attr:`failover`."""
    transplant: bool = True
    """A savior transplants its dark capacity into its main Deployment once the evacuation settled."""

    @property
    def saves(self) -> bool:
        return (self.role or self.failover) == "savior"


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
        return evidence(self.operator, case)


def evidence(operator: OperatorProcess, case: Case) -> str:
    """Everything ``operator`` said about a case: its log, the namespace's Events, every condition."""
    kube = case.kube
    texts = [operator.log_text()]
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


@pytest.fixture(scope="module")
def live_signal(prometheus: PrometheusServer) -> Iterator[LiveSignal]:
    """Every region's signal, healthy, for the whole module."""
    with LiveSignal(prometheus=prometheus, scenario=SCENARIO) as live:
        yield live


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
    savior = case.saves
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
        dark_capacity={"minReplicas": 2, "maxReplicas": 2,
                       **({"transplantAfterSeconds": 0} if savior and case.transplant else {})},
        failback={"stepPercent": 50, "stepIntervalSeconds": 2, "ratioThreshold": 0.5, "cooldownSeconds": 0}))


@pytest.fixture(scope="module")
def rbac_region(kube_cluster: LocalCluster, traffic_crds: list[str], prometheus: PrometheusServer,
                live_signal: LiveSignal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RbacRegion]:
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


def refused(region: RbacRegion | ClusterRoleRegion, case: Case) -> str:
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


# ---------------------------------------------------------------------------- ClusterRole mode
#
# The chart without watchNamespaces: one ClusterRole (the same rules as each Role above, so the
# cases above prove each rule) bound cluster-wide, and the operator watching every namespace
# (`regionshift run` without --namespace, as the chart's Deployment runs it then). A cluster-wide
# operator would serve every RegionFailover of the session's region, the cases above included,
# so this runs in the second region's cluster (tests.support.regions: started once a session,
# shared with the two-region tests), in which no other test has anything while this module runs.

CLUSTER_WIDE = "cluster-wide"
"""The RegionFailover the cluster-wide operator serves (east saving west, as in ``savior``)."""


@dataclass
class ClusterRoleRegion:
    """A region whose operator runs under the chart's ClusterRole, serving one case."""

    cluster: LocalCluster
    operator_namespace: str
    case: Case
    operator: OperatorProcess
    log_dir: Path

    def evidence(self, case: Case) -> str:
        return evidence(self.operator, case)


def _cluster_rbac(cluster: LocalCluster, *, operator_namespace: str, release: str, without: str | None,
                  kubeconfig: Path) -> tuple[Path, list[tuple[str, str]]]:
    """The chart's ServiceAccount, ClusterRole (without one rule) and ClusterRoleBinding of ``release``.

    Returns a kubeconfig of the ServiceAccount and the cluster-scoped objects made (kind, name),
    which a namespace's deletion does not remove.
    """
    docs = render_chart(values=VALUES, namespace=operator_namespace, release=release, kubeconfig=cluster.kubeconfig)
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")], "no watchNamespaces: no namespaced Role"
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert {rule_id(rule): rule for rule in role["rules"]} == RULES, "the ClusterRole has the Role's rules, no more"
    made = []
    with cluster.api_client() as api:
        for doc in docs:
            if doc["kind"] == "ClusterRole":
                doc = {**doc, "rules": [r for r in doc["rules"] if rule_id(r) != without]}
            if doc["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
                utils.create_from_dict(api, doc)
                if doc["kind"] != "ServiceAccount":
                    made.append((doc["kind"], doc["metadata"]["name"]))
    (account,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    return service_account_kubeconfig(cluster, namespace=operator_namespace, name=account, path=kubeconfig), made


def _delete_cluster_scoped(cluster: LocalCluster, made: list[tuple[str, str]]) -> None:
    with cluster.api_client() as api:
        rbac = client.RbacAuthorizationV1Api(api)
        for kind, name in made:
            with contextlib.suppress(client.ApiException):
                (rbac.delete_cluster_role if kind == "ClusterRole" else rbac.delete_cluster_role_binding)(name)


def _regionshift_objects(cluster: LocalCluster, *, but_in: str | None = None,
                         release_deleted: bool = False) -> list[str]:
    """The cluster's RegionFailovers and DarkClusters (except those in ``but_in``): what a cluster-wide operator serves.

    ``release_deleted``: drop the finalizers of those already deleted. An earlier test that
    killed its operator before deleting its namespace leaves them so (kopf's finalizer of the
    daemons, which no operator will remove any more); a cluster-wide operator would take them up.
    """
    out = []
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        for plural in ("regionfailovers", "darkclusters"):
            for item in custom.list_cluster_custom_object("regionshift.io", "v1alpha1", plural)["items"]:
                meta = item["metadata"]
                if meta["namespace"] == but_in:
                    continue
                out.append(f"{plural} {meta['namespace']}/{meta['name']}")
                if release_deleted and meta.get("deletionTimestamp") and meta.get("finalizers"):
                    with contextlib.suppress(client.ApiException):
                        custom.patch_namespaced_custom_object("regionshift.io", "v1alpha1", meta["namespace"], plural,
                                                              meta["name"], {"metadata": {"finalizers": None}})
    return out


def _delete_served(region: ClusterRoleRegion) -> None:
    """Delete the case's RegionFailover while its operator runs (kopf's finalizer goes with it), and wait until gone."""
    if not region.operator.running():
        return
    with contextlib.suppress(client.ApiException):
        region.case.kube.delete_custom("regionfailovers", CLUSTER_WIDE)
    eventually(lambda: not _regionshift_objects(region.cluster), timeout_seconds=60,
               what="the RegionFailover and its DarkClusters gone", state=lambda: str(_regionshift_objects(region.cluster)))


@pytest.fixture(scope="module")
def cluster_role_region(second_region_cluster: LocalCluster, prometheus: PrometheusServer, live_signal: LiveSignal,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRoleRegion]:
    """The chart in ClusterRole mode in the second region's cluster, its operator serving one savior case."""
    cluster = second_region_cluster
    log_dir = tmp_path_factory.mktemp("rbac-cluster")
    made: list[tuple[str, str]] = []
    with contextlib.ExitStack() as stack:
        operator_ns = stack.enter_context(namespace_in(cluster, prefix="rbac-op")).namespace
        case = Case(name=CLUSTER_WIDE, kube=stack.enter_context(namespace_in(cluster, prefix="rbac-cw")),
                    failover=CLUSTER_WIDE, role="savior", transplant=False)
        stack.callback(_delete_cluster_scoped, cluster, made)
        kubeconfig, objects = _cluster_rbac(cluster, operator_namespace=operator_ns, release="regionshift",
                                            without=None, kubeconfig=log_dir / "operator.kubeconfig")
        made += objects
        eventually(lambda: not _regionshift_objects(cluster, but_in=case.kube.namespace, release_deleted=True),
                   timeout_seconds=120,
                   what="what earlier tests left in the region gone (a cluster-wide operator would serve it)",
                   state=lambda: ", ".join(_regionshift_objects(cluster, but_in=case.kube.namespace)))
        operator = OperatorProcess(kubeconfig=kubeconfig, log_path=log_dir / "operator.log", namespaces=[])
        try:
            play_west(prometheus, CLUSTER_WIDE, warm=4, ready=0, served_share=0)
            operator.start()
            _populate(case, prometheus=prometheus)
            region = ClusterRoleRegion(cluster=cluster, operator_namespace=operator_ns, case=case, operator=operator,
                                       log_dir=log_dir)
            yield region
            _delete_served(region)
        finally:
            if operator.running():
                operator.kill()
            print(f"----- log of the operator under the chart's ClusterRole ({operator.log_path}) -----")
            print(operator.log_tail(300))


def refusals_at_cluster_scope(text: str) -> list[str]:
    """Lines in which the API server refused the ServiceAccount something (RBAC), wherever."""
    return [line for line in text.splitlines() if "forbidden" in line.lower() and "system:serviceaccount:" in line]


def test_cluster_role_a_cluster_wide_operator_detects_keeps_dark_capacity_and_saves_the_peer(
    cluster_role_region: ClusterRoleRegion, prometheus: PrometheusServer,
) -> None:
    region, case = cluster_role_region, cluster_role_region.case
    assert "--namespace" not in region.operator.log_text().splitlines()[0], "the operator watches every namespace"
    eventually(lambda: {r["name"]: r.get("verdict") for r in status(case).get("regions") or []}
               == {"east": "Healthy", "west": "Healthy"}, timeout_seconds=90, what="detection judging both regions",
               state=lambda: str(status(case).get("regions")))
    eventually(lambda: phase(case) == "Evacuated", timeout_seconds=120, what="west Evacuated",
               state=lambda: str(status(case)))
    assert status(case)["roles"] == {"east": "Savior", "west": "Evacuated"}

    def dark_clusters() -> list[dict[str, Any]]:
        return case.kube.custom.list_namespaced_custom_object("regionshift.io", "v1alpha1", case.kube.namespace,
                                                              "darkclusters")["items"]  # type: ignore[no-any-return]

    eventually(lambda: status(case).get("evacuationGate") == "Open" and dark_clusters()
               and all((dc.get("status") or {}).get("warmReplicas", 0) >= 2 for dc in dark_clusters()),
               timeout_seconds=60, what="the gates open on warm dark capacity", state=lambda: str(dark_clusters()))
    eventually(lambda: len(serving_dark_pods(case.kube)) >= 2, timeout_seconds=60, what="east's dark pods ungated")

    case.kube.patch_custom("regionfailovers", CLUSTER_WIDE, {"spec": {"evacuate": []}})
    play_west(prometheus, CLUSTER_WIDE, warm=4, ready=0, served_share=1)  # west serves its share again
    eventually(lambda: phase(case) == "Steady" and not status(case).get("evacuations"), timeout_seconds=120,
               what="west failed back", state=lambda: str(status(case)))
    eventually(lambda: serving_dark_pods(case.kube) == [], timeout_seconds=60, what="east's dark pods gated again")
    assert refused(region, case) == ""
    assert refusals_at_cluster_scope(region.operator.log_text()) == []


@pytest.fixture(scope="module")
def cluster_role_without(cluster_role_region: ClusterRoleRegion) -> Iterator[dict[str, OperatorProcess]]:
    """One cluster-wide operator per watched kind, each under a ClusterRole without that kind's rule.

    The whole-rule operator deletes its RegionFailover and stops first (two cluster-wide
    operators would serve the same objects); the four start at once, each with a
    ServiceAccount and ClusterRole of its own (a release of its own).
    """
    region = cluster_role_region
    _delete_served(region)
    if region.operator.running():
        region.operator.kill()
    made: list[tuple[str, str]] = []
    operators: dict[str, OperatorProcess] = {}
    try:
        for number, rule in enumerate(sorted(WATCH_RULES), start=1):
            kubeconfig, objects = _cluster_rbac(region.cluster, operator_namespace=region.operator_namespace,
                                                release=f"rs-without-{number}", without=rule,
                                                kubeconfig=region.log_dir / f"without-{number}.kubeconfig")
            made += objects
            operators[rule] = OperatorProcess(kubeconfig=kubeconfig, namespaces=[],
                                              log_path=region.log_dir / f"operator-without-{number}.log")
        with ThreadPoolExecutor(max_workers=len(operators)) as pool:
            for started in [pool.submit(process.start) for process in operators.values()]:
                started.result()
        yield operators
    finally:
        for rule, process in operators.items():
            if process.running():
                process.kill()
            print(f"----- log of a cluster-wide operator without {rule} ({process.log_path}) -----")
            print(process.log_tail(40))
        _delete_cluster_scoped(region.cluster, made)


@pytest.mark.parametrize("rule", sorted(WATCH_RULES))
def test_cluster_role_without_a_watched_kinds_rule_the_cluster_wide_watch_is_refused(
    cluster_role_without: dict[str, OperatorProcess], rule: str,
) -> None:
    operator = cluster_role_without[rule]
    (group,), (resource,) = RULES[rule]["apiGroups"], RULES[rule]["resources"]
    expected = f'cannot list resource "{resource}" in API group "{group}" at the cluster scope'
    eventually(lambda: expected in operator.log_text(), timeout_seconds=60, what=f"the refusal {expected!r}",
               state=lambda: operator.log_tail(20))
    others = {line for line in refusals_at_cluster_scope(operator.log_text()) if expected not in line}
    assert others == set(), "only the rule left out is refused"
