"""The API server itself refuses bad RegionFailovers and DarkClusters, naming the field.

Every rule here lives in the CRD schema (or a CEL rule in it) generated from the pydantic
models, so a bad `kubectl apply` fails at admission, before the operator ever sees it. The
tests talk to the real kube-apiserver of the session's local region; no operator runs,
because admission needs none.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tests.support.cluster import Kube

pytestmark = [pytest.mark.integration]

GROUP, VERSION = "regionshift.io", "v1alpha1"


def region_failover(name: str = "domain", **spec: Any) -> dict[str, Any]:
    """A valid RegionFailover, with ``spec`` fields replaced (a value of None removes one)."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RegionFailover",
        "metadata": {"name": name},
        "spec": {
            "region": "east",
            "peers": [{"name": "west"}, {"name": "central"}],
            "signal": {"prometheusUrl": "http://127.0.0.1:9", "query": 'sps{region="{region}"}'},
            "selector": {"matchLabels": {"tier": "web"}},
        },
    }
    body["spec"].update(spec)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    return body


def dark_cluster(name: str = "bad", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DarkCluster", "metadata": {"name": name}, "spec": spec}


def rejection(call: Any) -> str:
    """The API server's message for a call it must refuse with 422 Unprocessable Entity."""
    with pytest.raises(client.ApiException) as err:
        call()
    assert err.value.status == 422, err.value.body
    return json.loads(err.value.body)["message"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"evacuate": ["mars"]}, "spec.evacuate", "every name in evacuate must be this region or one of the peers"),
        ({"peers": [{"name": "east"}]}, "spec.peers", "a peer must not have this region's name"),
        ({"detection": {"ratioThreshold": 1.5}}, "spec.detection.ratioThreshold", "should be less than 1"),
        ({"signal": {"prometheusUrl": "http://p:9090", "query": "sps"}}, "spec.signal.query",
         "query must contain the {region} placeholder"),
        ({"darkCapacity": {"minReplicas": 9, "maxReplicas": 3}}, "spec.darkCapacity.minReplicas",
         "minReplicas must be less than or equal to maxReplicas"),
        ({"mode": "Yolo"}, "spec.mode", 'supported values: "Automatic", "Manual", "DryRun"'),
        ({"selector": None}, "spec.selector", "Required value"),
        ({"selector": {}}, "spec.selector.matchLabels", "Required value"),
        ({"selector": {"matchLabels": {}}}, "spec.selector.matchLabels",
         "selector.matchLabels must name at least one label"),
        ({"selector": {"matchLabels": {"tier": "web front"}}}, "spec.selector.matchLabels.tier",
         "should match"),
        ({"peers": [{"name": "west"}, {"name": "central"}, {"name": "west", "dnsRecord": "w.example"}]},
         "spec.peers[2]", "Duplicate value"),
        ({"evacuate": ["west", "west"]}, "spec.evacuate[1]", "Duplicate value"),
        ({"peers": [{"name": "west", "gatewayAddress": "https://west.example"}]}, "spec.peers[0].gatewayAddress",
         "should match"),
        ({"peers": [{"name": "west", "gatewayAddress": "127.0.0.1:8443"}]}, "spec.peers[0].gatewayAddress",
         "must not be a loopback"),
        ({"traffic": [{"kind": "GatewayAPI", "routes": ["web", "web"]}]}, "spec.traffic[0].routes[1]",
         "Duplicate value"),
        ({"evacuate": ["east", "west", "central"]}, "spec.evacuate",
         "evacuate must leave at least one region of the domain serving"),
        ({"darkCapacity": {"replicasQuery": 'kube_deployment_spec_replicas{namespace="{namespace}"}'}},
         "spec.darkCapacity.replicasQuery", "replicasQuery must contain the {deployment} placeholder"),
    ],
    ids=["evacuate-unknown-region", "peer-is-self", "threshold-above-one", "query-without-region",
         "inverted-min-max", "unknown-mode", "no-selector", "selector-without-labels", "empty-match-labels",
         "bad-label-value", "duplicate-peer", "duplicate-evacuate", "gateway-address-with-scheme",
         "gateway-address-loopback",
         "duplicate-route", "evacuate-every-region", "replicas-query-without-deployment"],
)
def test_api_server_rejects_bad_region_failovers_naming_the_field(
    kube: Kube, change: dict[str, Any], field: str, message: str
) -> None:
    text = rejection(lambda: kube.create_custom(region_failover(**change)))
    assert f"{field}:" in text and message in text, text


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"gate": "Closed"}, "spec.targetDeployment", "Required value"),
        ({"targetDeployment": "api", "replicas": {"minReplicas": -1, "maxReplicas": 2}}, "spec.replicas.minReplicas",
         "should be greater than or equal to 0"),
        ({"targetDeployment": "api", "replicas": {"source": "Forecast", "minReplicas": 5, "maxReplicas": 2}},
         "spec.replicas.minReplicas", "minReplicas must be less than or equal to maxReplicas"),
        ({"targetDeployment": "api", "gate": "ajar"}, "spec.gate", 'supported values: "Closed", "Open"'),
        ({"targetDeployment": "a" * 64}, "spec.targetDeployment", "may not be more than 63 bytes"),
        ({"targetDeployment": "Api"}, "spec.targetDeployment", "should match"),
    ],
    ids=["no-target", "negative-min", "inverted-min-max", "unknown-gate", "target-too-long", "target-not-dns"],
)
def test_api_server_rejects_bad_dark_clusters_naming_the_field(kube: Kube, spec: dict, field: str, message: str) -> None:
    text = rejection(lambda: kube.create_custom(dark_cluster(**spec)))
    assert f"{field}:" in text and message in text, text


def test_a_region_failover_names_at_most_8_providers_of_128_routes_each(kube: Kube) -> None:
    """1,024 routes of 60-character names fit in one RegionFailover (500 services with two routes each); more do not."""
    names = [f"{i:04d}-" + "r" * 55 for i in range(8 * 128)]
    traffic = [{"kind": "GatewayAPI" if i < 4 else "ExternalDNS", "routes": names[i * 128:(i + 1) * 128]}
               for i in range(8)]
    created = kube.create_custom(region_failover("large", traffic=traffic))
    assert sum(len(t["routes"]) for t in created["spec"]["traffic"]) == 1024
    text = rejection(lambda: kube.create_custom(region_failover(
        "too-many-routes", traffic=[{"kind": "GatewayAPI", "routes": [f"r{i}" for i in range(129)]}])))
    assert "spec.traffic[0].routes:" in text and "must have at most 128 items" in text, text
    text = rejection(lambda: kube.create_custom(region_failover(
        "too-many-providers", traffic=[{"kind": "GatewayAPI", "routes": [f"r{i}"]} for i in range(9)])))
    assert "spec.traffic:" in text and "must have at most 8 items" in text, text


def test_a_new_region_failover_only_reports_until_its_owner_says_so(kube: Kube) -> None:
    created = kube.create_custom(region_failover())
    assert created["spec"]["mode"] == "DryRun"
    assert not created["spec"].get("evacuate")


def test_target_deployment_takes_a_63_character_name_with_dots(kube: Kube) -> None:
    name = ("api.v2." + "x" * 63)[:62] + "z"
    assert len(name) == 63
    created = kube.create_custom(dark_cluster("long", targetDeployment=name))
    assert created["spec"]["targetDeployment"] == name


def test_region_is_immutable_and_the_rest_of_the_spec_is_not(kube: Kube) -> None:
    kube.create_custom(region_failover())
    text = rejection(lambda: kube.patch_custom("regionfailovers", "domain", {"spec": {"region": "west"}}))
    assert "spec.region:" in text and "region is immutable" in text, text
    kube.patch_custom("regionfailovers", "domain", {"spec": {"mode": "Manual", "evacuate": ["west"]}})
    assert kube.get_custom("regionfailovers", "domain")["spec"]["region"] == "east"


def test_target_deployment_is_immutable_and_the_gate_is_not(kube: Kube) -> None:
    kube.create_custom(dark_cluster("api", targetDeployment="api"))
    text = rejection(lambda: kube.patch_custom("darkclusters", "api", {"spec": {"targetDeployment": "web"}}))
    assert "spec.targetDeployment:" in text and "targetDeployment is immutable" in text, text
    kube.patch_custom("darkclusters", "api", {"spec": {"gate": "Open"}})
    spec = kube.get_custom("darkclusters", "api")["spec"]
    assert (spec["targetDeployment"], spec["gate"]) == ("api", "Open")
