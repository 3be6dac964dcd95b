"""The Gateway API provider against a real kube-apiserver with the real HTTPRoute CRD (v1.6.3).

No gateway controller runs in the local region: where a test needs one's report in
``status.parents`` it writes it through the status subresource, as a controller would.
The user's route is applied with the real kubectl, client-side and server-side, the way
users and GitOps tools apply it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from regionshift.adapters.traffic import Backends, ensure_peer_service, provider_for
from regionshift.adapters.traffic.gatewayapi import GROUP, GatewayAPIProvider
from regionshift.errors import InvalidWeights, LocalBackendMissing, PeerUnreachable, RouteNotFound, ServiceNotFound, WriteConflict
from regionshift.local.cluster import LocalCluster, thirdparty
from tests.support.cluster import Kube
from tests.support.traffic import service, traffic_crds, traffic_kube  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

REGION = "us-east"
PEERS = {"us-west": "10.1.2.3:8443", "eu": "gw.eu.example.com:443"}

ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
spec:
  parentRefs: [{name: gw}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-team, value: shop}]}
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /static}}]
    backendRefs: [{name: static, port: 8080, weight: 3}]
"""


def kubectl(cluster: LocalCluster, kube: Kube, *args: str, stdin: str | None = None) -> str:
    assert cluster.binaries is not None
    return subprocess.run(
        [str(cluster.binaries.path("kubectl")), f"--kubeconfig={cluster.kubeconfig}", "-n", kube.namespace, *args],
        input=stdin, capture_output=True, text=True, check=True,
    ).stdout


def route(kube: Kube, name: str = "web") -> dict[str, Any]:
    return kube.custom.get_namespaced_custom_object(GROUP, "v1", kube.namespace, "httproutes", name)  # type: ignore[no-any-return]


def provider(kube: Kube) -> GatewayAPIProvider:
    made = provider_for("GatewayAPI", api=kube.api, namespace=kube.namespace, region=REGION, peers=PEERS)
    assert isinstance(made, GatewayAPIProvider)
    return made


@pytest.fixture
def shop(kube_cluster: LocalCluster, traffic_kube: Kube) -> Kube:
    """The user's route, applied with kubectl, its local Service, and a Service per peer."""
    kube = traffic_kube
    service(kube, "web")
    service(kube, "static", port=8080)
    kubectl(kube_cluster, kube, "apply", "-f", "-", stdin=ROUTE)
    assert provider(kube).ensure_peer_services(route="web", gateways={**PEERS, "ap": None})
    assert not provider(kube).ensure_peer_services(route="web", gateways=PEERS)  # idempotent
    return kube


def test_peer_service_is_selectorless_with_an_endpoint_slice_to_the_gateway(shop: Kube) -> None:
    svc = shop.core.read_namespaced_service("web-us-west", shop.namespace)
    assert svc.spec.selector is None and svc.spec.type == "ClusterIP"
    discovery = client.DiscoveryV1Api(shop.api)
    west = discovery.list_namespaced_endpoint_slice(shop.namespace, label_selector="kubernetes.io/service-name=web-us-west").items
    assert [(s.address_type, s.endpoints[0].addresses, s.ports[0].port) for s in west] == [("IPv4", ["10.1.2.3"], 8443)]
    eu = discovery.list_namespaced_endpoint_slice(shop.namespace, label_selector="kubernetes.io/service-name=web-eu").items
    assert [(s.address_type, s.endpoints[0].addresses) for s in eu] == [("FQDN", ["gw.eu.example.com"])]
    # Idempotent: a second ensure writes nothing; a moved gateway is rewritten in place.
    assert not ensure_peer_service(api=shop.api, namespace=shop.namespace, service="web-us-west",
                                   gateways={"us-west": PEERS["us-west"]}, port=80)
    assert ensure_peer_service(api=shop.api, namespace=shop.namespace, service="web-us-west",
                               gateways={"us-west": "10.1.2.4:8443"}, port=80)
    with pytest.raises(PeerUnreachable, match="not managed by regionshift"):
        ensure_peer_service(api=shop.api, namespace=shop.namespace, service="web", gateways={}, port=80)


def test_apply_changes_only_the_managed_weights_and_restore_puts_them_back(shop: Kube) -> None:
    gateway = provider(shop)
    before = route(shop)
    recorded = gateway.read(route="web")
    assert recorded.weights == {REGION: 1}  # the API default, as the user wrote none

    shifted = gateway.apply(route="web", desired={REGION: 0, "us-west": 60, "eu": 40})
    assert shifted.written and shifted.weights == {REGION: 0, "us-west": 60, "eu": 40}
    after = route(shop)
    api_rule = after["spec"]["rules"][0]
    assert api_rule["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "web", "port": 80, "weight": 0},
        {"group": "", "kind": "Service", "name": "web-us-west", "port": 80, "weight": 60},
        {"group": "", "kind": "Service", "name": "web-eu", "port": 80, "weight": 40},
    ]
    # Everything else is as the user wrote it: matches, filters, the other rule, parents, hostnames.
    assert api_rule["matches"] == before["spec"]["rules"][0]["matches"]
    assert api_rule["filters"] == before["spec"]["rules"][0]["filters"]
    assert after["spec"]["rules"][1] == before["spec"]["rules"][1]
    assert {k: v for k, v in after["spec"].items() if k != "rules"} == {
        k: v for k, v in before["spec"].items() if k != "rules"
    }

    again = gateway.apply(route="web", desired={REGION: 0, "us-west": 60, "eu": 40})
    assert not again.written and again.resource_version == shifted.resource_version

    restored = gateway.restore(route="web", recorded=recorded.weights)
    assert restored.weights == {REGION: 1}
    assert route(shop)["spec"] == before["spec"]  # the API server had filled group, kind and weight already


def test_verify_reads_the_parents_accepted_condition(shop: Kube) -> None:
    gateway = provider(shop)
    desired = {REGION: 20, "us-west": 80}
    gateway.apply(route="web", desired=desired)
    unreported = gateway.verify(route="web", desired=desired)
    assert unreported.holds is None and unreported.reason == "Unreported"
    assert gateway.verify(route="web", desired={REGION: 100, "us-west": 0}).reason == "Mismatch"

    generation = route(shop)["metadata"]["generation"]

    def report(accepted: str, observed: int, resolved: str = "True") -> None:
        conditions = [
            {"type": "Accepted", "status": accepted, "reason": "Accepted" if accepted == "True" else "NotAllowedByListeners",
             "message": "", "observedGeneration": observed, "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "ResolvedRefs", "status": resolved, "reason": "ResolvedRefs" if resolved == "True" else "BackendNotFound",
             "message": "", "observedGeneration": observed, "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]
        body = {"status": {"parents": [{"parentRef": {"name": "gw"}, "controllerName": "example.com/gateway",
                                        "conditions": conditions}]}}
        shop.custom.patch_namespaced_custom_object_status(GROUP, "v1", shop.namespace, "httproutes", "web", body)

    report("True", generation - 1)
    assert gateway.verify(route="web", desired=desired).reason == "Pending"
    report("False", generation)
    assert (gateway.verify(route="web", desired=desired).holds, gateway.verify(route="web", desired=desired).reason) == (
        False, "NotAccepted")
    report("True", generation, resolved="False")
    assert gateway.verify(route="web", desired=desired).reason == "RefsNotResolved"
    report("True", generation)
    assert gateway.verify(route="web", desired=desired).holds is True


def test_a_concurrent_write_is_retried_on_the_fresh_version(shop: Kube) -> None:
    gateway = provider(shop)
    real_get = gateway._get
    calls = {"n": 0}

    def stale_then_fresh(name: str) -> dict[str, Any]:
        obj = real_get(name)
        calls["n"] += 1
        if calls["n"] == 1:  # the read the first attempt uses: someone else writes right after it
            shop.custom.patch_namespaced_custom_object(
                GROUP, "v1", shop.namespace, "httproutes", "web", {"metadata": {"labels": {"team": "shop"}}})
        return obj

    gateway._get = stale_then_fresh  # type: ignore[method-assign]
    result = gateway.apply(route="web", desired={REGION: 50, "us-west": 50})
    assert result.written and calls["n"] == 2  # a stale attempt (409), then a fresh read and attempt
    assert route(shop)["metadata"]["labels"] == {"team": "shop"}
    assert gateway.read(route="web").weights == {REGION: 50, "us-west": 50}

    def always_stale(name: str) -> dict[str, Any]:
        obj = real_get(name)
        shop.custom.patch_namespaced_custom_object(
            GROUP, "v1", shop.namespace, "httproutes", "web", {"metadata": {"labels": {"n": str(calls["n"])}}})
        calls["n"] += 1
        return obj

    gateway._get = always_stale  # type: ignore[method-assign]
    with pytest.raises(WriteConflict):
        gateway.apply(route="web", desired={REGION: 10, "us-west": 90})


def test_drift_by_an_edit_and_by_a_reapplied_manifest(kube_cluster: LocalCluster, shop: Kube) -> None:
    gateway = provider(shop)
    written = {REGION: 0, "us-west": 100}
    gateway.apply(route="web", desired=written)
    assert gateway.drift(route="web", last_written=written) is None

    edited = route(shop)
    edited["spec"]["rules"][0]["backendRefs"][0]["weight"] = 7
    shop.custom.replace_namespaced_custom_object(
        GROUP, "v1", shop.namespace, "httproutes", "web", edited, field_manager="kubectl-edit")
    drift = gateway.drift(route="web", last_written=written)
    assert drift is not None and drift.actual == {REGION: 7, "us-west": 100}
    assert (drift.writer, drift.reapplied) == ("kubectl-edit", False)
    assert "us-east 0→7" in drift.message

    gateway.apply(route="web", desired=written)  # set again
    kubectl(kube_cluster, shop, "apply", "-f", "-", stdin=ROUTE)  # the user's manifest, client-side, again
    drift = gateway.drift(route="web", last_written=written)
    assert drift is not None and drift.reapplied and drift.writer == "kubectl-client-side-apply"
    assert drift.actual == {REGION: 1, "us-west": 0}

    gateway.apply(route="web", desired=written)
    kubectl(kube_cluster, shop, "apply", "--server-side", "--force-conflicts", "--field-manager=argocd-controller",
            "-f", "-", stdin=ROUTE)  # as Argo CD or Flux would, server-side
    drift = gateway.drift(route="web", last_written=written)
    assert drift is not None and drift.reapplied and drift.writer == "argocd-controller"


def test_bad_routes_are_typed_errors_and_nothing_is_written(shop: Kube) -> None:
    gateway = provider(shop)
    with pytest.raises(RouteNotFound):
        gateway.apply(route="nope", desired={REGION: 0, "us-west": 1})
    with pytest.raises(RouteNotFound):
        gateway.read(route="nope")

    other = yaml.safe_load(ROUTE)
    other["metadata"]["name"] = "other"
    other["spec"]["rules"] = [other["spec"]["rules"][1]]  # only the static Service
    shop.custom.create_namespaced_custom_object(GROUP, "v1", shop.namespace, "httproutes", other)
    version = route(shop, "other")["metadata"]["resourceVersion"]
    with pytest.raises(LocalBackendMissing):
        gateway.apply(route="other", desired={REGION: 0, "us-west": 1})
    assert route(shop, "other")["metadata"]["resourceVersion"] == version

    version = route(shop)["metadata"]["resourceVersion"]
    shop.core.delete_namespaced_service("web-eu", shop.namespace)
    with pytest.raises(ServiceNotFound, match="web-eu"):
        gateway.apply(route="web", desired={REGION: 0, "us-west": 50, "eu": 50})
    ensure_peer_service(api=shop.api, namespace=shop.namespace, service="web-eu", gateways={}, port=80)
    with pytest.raises(PeerUnreachable, match="no ready address"):  # a Service without endpoints
        gateway.apply(route="web", desired={REGION: 0, "us-west": 50, "eu": 50})
    with pytest.raises(InvalidWeights, match="every weight is 0"):
        gateway.apply(route="web", desired={REGION: 0, "us-west": 0})
    with pytest.raises(InvalidWeights, match="neither"):
        gateway.apply(route="web", desired={REGION: 1, "ap": 1})
    with pytest.raises(InvalidWeights):
        gateway.apply(route="web", desired={REGION: -1, "us-west": 1})
    index = gateway.backend_index()  # the same checks against a namespace-wide snapshot
    assert "web-us-west" in index.resolving and "web-eu" in index.services and "web-eu" not in index.resolving
    with pytest.raises(PeerUnreachable):
        gateway.apply(route="web", desired={REGION: 0, "us-west": 50, "eu": 50}, index=index)
    assert route(shop)["metadata"]["resourceVersion"] == version
    shop.core.delete_namespaced_service("web", shop.namespace)
    with pytest.raises(ServiceNotFound, match="web"):
        gateway.apply(route="web", desired={REGION: 1, "us-west": 1})
    with pytest.raises(ServiceNotFound, match="web"):
        gateway.apply(route="web", desired={REGION: 1, "us-west": 1}, index=gateway.backend_index())
    assert route(shop)["metadata"]["resourceVersion"] == version


def test_explicit_backends_override_the_naming_convention(shop: Kube) -> None:
    ensure_peer_service(api=shop.api, namespace=shop.namespace, service="to-west",
                        gateways={"us-west": PEERS["us-west"]}, port=80)
    gateway = GatewayAPIProvider(
        api=shop.api, namespace=shop.namespace, region=REGION,
        backends=lambda route: Backends(region=REGION, local_service="web", peer_services={"us-west": "to-west"}),
    )
    gateway.apply(route="web", desired={REGION: 1, "us-west": 3})
    refs = route(shop)["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("web", 1), ("to-west", 3)]


def test_the_crds_come_from_the_pinned_module_and_are_cached_by_version(
    kube_cluster: LocalCluster, traffic_crds: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = client.ApiextensionsV1Api(kube_cluster.api_client()).read_custom_resource_definition(
        "httproutes.gateway.networking.k8s.io")
    assert served.metadata.annotations["gateway.networking.k8s.io/bundle-version"] == "v1.6.3"
    assert served.metadata.annotations["gateway.networking.k8s.io/channel"] == "standard"
    assert "dnsendpoints.externaldns.k8s.io" in traffic_crds

    monkeypatch.setenv("REGIONSHIFT_CACHE", str(tmp_path))
    fetched = thirdparty.third_party_crds(names=("external-dns",))
    assert [m["metadata"]["name"] for m in fetched] == ["dnsendpoints.externaldns.k8s.io"]
    assert (tmp_path / "crds" / "sigs.k8s.io_external-dns@v0.22.0.yaml").exists()

    def no_go() -> str:
        raise AssertionError("a cached version must not call Go again")

    monkeypatch.setattr(thirdparty, "_go", no_go)
    assert thirdparty.third_party_crds(names=("external-dns",)) == fetched
