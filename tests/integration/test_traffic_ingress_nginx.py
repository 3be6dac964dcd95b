"""The ingress-nginx canary provider against a real kube-apiserver (Ingress is built in).

The owner of the canary stands in for the RegionFailover: any object with a uid will do
for an owner reference, and the real garbage collector removes the canary with it.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from regionshift.adapters.traffic import provider_for
from regionshift.adapters.traffic.ingress_nginx import (
    CANARY,
    CANARY_WEIGHT,
    CANARY_WEIGHT_TOTAL,
    PEERS,
    IngressNginxProvider,
    canary_name,
    canary_service_name,
)
from regionshift.errors import ForeignCanary, InvalidWeights, PeerUnreachable, RouteNotFound, WeightUnparsable
from tests.support.cluster import Kube, eventually
from tests.support.traffic import service, traffic_crds, traffic_kube  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

REGION = "us-east"
GATEWAYS = {"us-west": "10.1.2.3:443", "eu": "10.9.8.7:443", "ap": None}


def ingress(name: str, *, host: str = "shop.example.com", path: str = "/", annotations: dict[str, str] | None = None,
            backend: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": host, "http": {"paths": [
                {"path": path, "pathType": "Prefix", "backend": {"service": {"name": backend, "port": {"number": 80}}}},
            ]}}],
        },
    }


def read_ingress(kube: Kube, name: str) -> dict[str, Any] | None:
    try:
        return kube.api.sanitize_for_serialization(  # type: ignore[no-any-return]
            client.NetworkingV1Api(kube.api).read_namespaced_ingress(name, kube.namespace))
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.fixture
def shop(traffic_kube: Kube) -> tuple[Kube, IngressNginxProvider, dict[str, Any]]:
    """The user's Ingress ``web`` and a provider owned by a stand-in for the RegionFailover."""
    kube = traffic_kube
    service(kube, "web")
    client.NetworkingV1Api(kube.api).create_namespaced_ingress(kube.namespace, ingress("web"))
    owner_cm = kube.core.create_namespaced_config_map(kube.namespace, {"metadata": {"name": "failover"}})
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "failover", "uid": owner_cm.metadata.uid,
             "controller": True, "blockOwnerDeletion": True}
    made = provider_for("IngressNginx", api=kube.api, namespace=kube.namespace, region=REGION, peers=GATEWAYS,
                        owner=owner)
    assert isinstance(made, IngressNginxProvider)
    return kube, made, owner


def test_canary_carries_the_peers_share_and_restore_removes_it(shop: tuple[Kube, IngressNginxProvider, dict[str, Any]]) -> None:
    kube, nginx, owner = shop
    user = read_ingress(kube, "web")
    recorded = nginx.read(route="web")
    assert recorded.weights == {REGION: 100, PEERS: 0} and read_ingress(kube, canary_name("web")) is None

    shifted = nginx.apply(route="web", desired={REGION: 25, "us-west": 50, "eu": 25})
    assert shifted.written and shifted.weights == {REGION: 25, PEERS: 75}
    canary = read_ingress(kube, canary_name("web"))
    assert canary is not None
    annotations = canary["metadata"]["annotations"]
    assert (annotations[CANARY], annotations[CANARY_WEIGHT], annotations[CANARY_WEIGHT_TOTAL]) == ("true", "75", "100")
    assert canary["metadata"]["ownerReferences"][0]["uid"] == owner["uid"]
    assert canary["spec"]["ingressClassName"] == "nginx"
    paths = canary["spec"]["rules"][0]["http"]["paths"]
    assert [(canary["spec"]["rules"][0]["host"], p["path"], p["backend"]["service"]["name"]) for p in paths] == [
        ("shop.example.com", "/", canary_service_name("web"))]
    slices = client.DiscoveryV1Api(kube.api).list_namespaced_endpoint_slice(
        kube.namespace, label_selector=f"kubernetes.io/service-name={canary_service_name('web')}").items
    assert sorted(a for s in slices for e in s.endpoints for a in e.addresses) == ["10.1.2.3", "10.9.8.7"]
    assert read_ingress(kube, "web") == user  # the user's Ingress is never written

    again = nginx.apply(route="web", desired={REGION: 25, "us-west": 50, "eu": 25})
    assert not again.written
    verified = nginx.verify(route="web", desired={REGION: 25, "us-west": 75})
    assert verified.holds is None and verified.reason == "Unreported"
    assert nginx.verify(route="web", desired={REGION: 1, "us-west": 1}).reason == "Mismatch"

    # Only eu keeps a share: its gateway alone stays in the canary's Service.
    nginx.apply(route="web", desired={REGION: 0, "eu": 1})
    slices = client.DiscoveryV1Api(kube.api).list_namespaced_endpoint_slice(
        kube.namespace, label_selector=f"kubernetes.io/service-name={canary_service_name('web')}").items
    assert sorted(a for s in slices for e in s.endpoints for a in e.addresses) == ["10.9.8.7"]
    assert nginx.read(route="web").weights == {REGION: 0, PEERS: 100}

    restored = nginx.restore(route="web", recorded=recorded.weights)
    assert restored.weights == {REGION: 100, PEERS: 0}
    assert read_ingress(kube, canary_name("web")) is None
    with pytest.raises(client.ApiException):
        kube.core.read_namespaced_service(canary_service_name("web"), kube.namespace)


def test_the_canary_goes_with_its_owner(shop: tuple[Kube, IngressNginxProvider, dict[str, Any]]) -> None:
    kube, nginx, _ = shop
    nginx.apply(route="web", desired={REGION: 50, "us-west": 50})
    kube.core.delete_namespaced_config_map("failover", kube.namespace, propagation_policy="Foreground")
    eventually(lambda: read_ingress(kube, canary_name("web")) is None, timeout_seconds=90,
               what="garbage collection of the canary")


def test_a_foreign_canary_on_the_same_host_and_path_is_a_conflict(shop: tuple[Kube, IngressNginxProvider, dict[str, Any]]) -> None:
    kube, nginx, _ = shop
    net = client.NetworkingV1Api(kube.api)
    net.create_namespaced_ingress(kube.namespace, ingress(
        "other-path", path="/other", annotations={CANARY: "true", CANARY_WEIGHT: "10"}))
    nginx.apply(route="web", desired={REGION: 90, "us-west": 10})  # another path: no conflict
    written = read_ingress(kube, canary_name("web"))
    net.create_namespaced_ingress(kube.namespace, ingress(
        "flagger-canary", annotations={CANARY: "true", CANARY_WEIGHT: "30"}, backend="web-canary"))
    with pytest.raises(ForeignCanary, match="flagger-canary"):
        nginx.apply(route="web", desired={REGION: 0, "us-west": 100})
    assert read_ingress(kube, canary_name("web")) == written  # nothing written


def test_bad_input_is_a_typed_error_and_nothing_is_written(shop: tuple[Kube, IngressNginxProvider, dict[str, Any]]) -> None:
    kube, nginx, _ = shop
    with pytest.raises(RouteNotFound):
        nginx.apply(route="nope", desired={REGION: 0, "us-west": 1})
    with pytest.raises(PeerUnreachable, match="no gateway address"):
        nginx.apply(route="web", desired={REGION: 0, "ap": 1})
    with pytest.raises(InvalidWeights, match="every weight is 0"):
        nginx.apply(route="web", desired={REGION: 0, "us-west": 0})
    assert read_ingress(kube, canary_name("web")) is None
    assert not client.DiscoveryV1Api(kube.api).list_namespaced_endpoint_slice(
        kube.namespace, label_selector="app.kubernetes.io/managed-by=regionshift").items

    nginx.apply(route="web", desired={REGION: 50, "us-west": 50})
    net = client.NetworkingV1Api(kube.api)
    for bad in ("lots", "150", "-1", None):
        canary = read_ingress(kube, canary_name("web"))
        assert canary is not None
        if bad is None:
            canary["metadata"]["annotations"].pop(CANARY_WEIGHT)
        else:
            canary["metadata"]["annotations"][CANARY_WEIGHT] = bad
        canary.pop("status", None)
        net.replace_namespaced_ingress(canary_name("web"), kube.namespace, canary)
        with pytest.raises(WeightUnparsable):
            nginx.read(route="web")


def test_drift_when_someone_edits_the_canary(shop: tuple[Kube, IngressNginxProvider, dict[str, Any]]) -> None:
    kube, nginx, _ = shop
    written = {REGION: 0, "us-west": 100}
    nginx.apply(route="web", desired=written)
    assert nginx.drift(route="web", last_written=written) is None
    client.NetworkingV1Api(kube.api).patch_namespaced_ingress(
        canary_name("web"), kube.namespace, {"metadata": {"annotations": {CANARY_WEIGHT: "40"}}},
        field_manager="kubectl-annotate")
    drift = nginx.drift(route="web", last_written=written)
    assert drift is not None and drift.actual == {REGION: 60, PEERS: 40} and drift.writer == "kubectl-annotate"
    nginx.apply(route="web", desired=written)  # set again
    assert nginx.drift(route="web", last_written=written) is None
    client.NetworkingV1Api(kube.api).delete_namespaced_ingress(canary_name("web"), kube.namespace)
    drift = nginx.drift(route="web", last_written=written)
    assert drift is not None and drift.actual == {REGION: 100, PEERS: 0}
