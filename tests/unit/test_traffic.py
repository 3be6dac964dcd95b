"""The pure parts of the traffic providers: patch construction, parsing, naming, projection."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from regionshift.adapters.traffic.base import (
    Backends,
    Drift,
    conventional_backends,
    last_foreign_writer,
    peer_service_name,
    validate_weights,
)
from regionshift.adapters.traffic import externaldns, gatewayapi, ingress_nginx
from regionshift.adapters.traffic.peers import endpoint_slice_for, parse_gateway_address
from regionshift.errors import (
    InvalidWeights,
    LocalBackendMissing,
    PeerUnreachable,
    ReconcileError,
    TrafficError,
    WeightUnparsable,
)
from regionshift.local.cluster.thirdparty import EXTERNAL_DNS, GATEWAY_API

BACKENDS = Backends(region="east", local_service="web", peer_services={"west": "web-west", "eu": "web-eu"})


def route(*rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "42", "generation": 3},
        "spec": {"rules": [{"matches": [{"path": {"value": f"/{i}"}}], "backendRefs": refs} for i, refs in enumerate(rules)]},
    }


def patched(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    return jsonpatch.apply_patch(copy.deepcopy(obj), ops)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- Gateway API


def test_weight_patch_sets_managed_weights_with_defaults_and_appends_peers() -> None:
    original = route(
        [{"name": "web", "port": 80}, {"name": "other", "port": 81, "weight": 2}],
        [{"name": "static", "port": 8080}],
    )
    ops = gatewayapi.weight_patch(original, backends=BACKENDS, desired={"east": 0, "west": 3, "eu": 0})
    assert ops[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "42"}
    after = patched(original, ops)
    assert after["spec"]["rules"][0]["backendRefs"] == [
        {"name": "web", "port": 80, "group": "", "kind": "Service", "weight": 0},
        {"name": "other", "port": 81, "weight": 2},  # not ours: untouched
        {"group": "", "kind": "Service", "name": "web-west", "port": 80, "weight": 3},  # eu at 0 needs no backendRef
    ]
    assert after["spec"]["rules"][1] == original["spec"]["rules"][1]
    assert after["spec"]["rules"][0]["matches"] == original["spec"]["rules"][0]["matches"]
    assert gatewayapi.weight_patch(after, backends=BACKENDS, desired={"east": 0, "west": 3, "eu": 0}) == []


def test_restore_drops_peer_backend_refs_added_since_and_sets_every_local_rule() -> None:
    shifted = route(
        [{"group": "", "kind": "Service", "name": "web", "weight": 0},
         {"group": "", "kind": "Service", "name": "web-west", "weight": 1},
         {"group": "", "kind": "Service", "name": "web-eu", "weight": 1}],
        [{"group": "", "kind": "Service", "name": "web-eu", "weight": 5},
         {"group": "", "kind": "Service", "name": "web", "weight": 0}],
    )
    after = patched(shifted, gatewayapi.weight_patch(shifted, backends=BACKENDS, desired={"east": 1}, drop_unlisted=True))
    assert after["spec"]["rules"][0]["backendRefs"] == [{"group": "", "kind": "Service", "name": "web", "weight": 1}]
    assert after["spec"]["rules"][1]["backendRefs"] == [{"group": "", "kind": "Service", "name": "web", "weight": 1}]


def test_managed_weights_default_to_one_and_ignore_foreign_kinds_and_namespaces() -> None:
    obj = route([
        {"name": "web"},
        {"name": "web-west", "weight": 4},
        {"name": "web-eu", "kind": "ServiceImport", "group": "multicluster.x-k8s.io", "weight": 9},
        {"name": "web-eu", "namespace": "elsewhere", "weight": 9},
    ])
    assert gatewayapi.managed_rule_weights(obj, backends=BACKENDS) == [{"east": 1, "west": 4}]


@pytest.mark.parametrize(
    ("desired", "error", "match"),
    [
        ({"east": 0, "west": 0}, InvalidWeights, "every weight 0"),
        ({"east": 1, "mars": 1}, InvalidWeights, "neither"),
    ],
)
def test_weight_patch_refuses_bad_weights(desired: dict[str, int], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        gatewayapi.weight_patch(route([{"name": "web"}]), backends=BACKENDS, desired=desired)


def test_weight_patch_refuses_more_than_sixteen_backend_refs_and_a_route_without_the_local_service() -> None:
    full = route([{"name": "web"}, *({"name": f"x{i}"} for i in range(15))])
    with pytest.raises(InvalidWeights, match="16"):
        gatewayapi.weight_patch(full, backends=BACKENDS, desired={"east": 1, "west": 1})
    with pytest.raises(LocalBackendMissing):
        gatewayapi.weight_patch(route([{"name": "static"}]), backends=BACKENDS, desired={"east": 1})


@pytest.mark.parametrize("weight", ["1", 1.5, -1, 1_000_001, True])
def test_a_gateway_weight_must_be_an_integer_in_range(weight: Any) -> None:
    with pytest.raises(WeightUnparsable):
        gatewayapi.parse_weight(weight, where="x")
    assert gatewayapi.parse_weight(None, where="x") == 1


# ---------------------------------------------------------------------------- ingress-nginx


def test_canary_weight_is_the_peers_share_of_the_total() -> None:
    assert ingress_nginx.canary_weight({"east": 25, "west": 50, "eu": 25}, region="east") == 75
    assert ingress_nginx.canary_weight({"east": 100}, region="east") == 0
    assert ingress_nginx.canary_weight({"east": 1, "west": 2}, region="east", total=1000) == 667
    assert ingress_nginx.canary_weight({"east": 0, ingress_nginx.PEERS: 100}, region="east") == 100
    with pytest.raises(InvalidWeights):
        ingress_nginx.canary_weight({"east": 0}, region="east")


@pytest.mark.parametrize(
    "annotations",
    [{}, {ingress_nginx.CANARY_WEIGHT: "x"}, {ingress_nginx.CANARY_WEIGHT: "101"}, {ingress_nginx.CANARY_WEIGHT: "-1"},
     {ingress_nginx.CANARY_WEIGHT: "5", ingress_nginx.CANARY_WEIGHT_TOTAL: "0"},
     {ingress_nginx.CANARY_WEIGHT: "5", ingress_nginx.CANARY_WEIGHT_TOTAL: "many"}],
)
def test_a_canary_weight_that_cannot_be_read_is_an_error(annotations: dict[str, str]) -> None:
    with pytest.raises(WeightUnparsable):
        ingress_nginx.parse_canary_weight(annotations, where="x")


def test_canary_weight_reads_against_its_total() -> None:
    annotations = {ingress_nginx.CANARY_WEIGHT: " 300 ", ingress_nginx.CANARY_WEIGHT_TOTAL: "1000"}
    assert ingress_nginx.parse_canary_weight(annotations, where="x") == (300, 1000)


def test_canary_ingress_copies_hosts_and_paths_to_the_peers_service() -> None:
    primary = {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"ingressClassName": "nginx", "rules": [
            {"host": "a.example", "http": {"paths": [
                {"path": "/x", "pathType": "Exact", "backend": {"service": {"name": "web", "port": {"number": 8080}}}},
                {"backend": {"service": {"name": "web", "port": {"name": "http"}}}, "pathType": "Prefix"}]}},
            {"host": "b.example"},
        ]},
    }
    canary = ingress_nginx.canary_ingress(primary, weight=30, total=100, owner={"uid": "u"})
    assert canary["metadata"]["name"] == "web-regionshift"
    assert canary["metadata"]["annotations"] == {ingress_nginx.CANARY: "true", ingress_nginx.CANARY_WEIGHT: "30",
                                                 ingress_nginx.CANARY_WEIGHT_TOTAL: "100"}
    assert canary["metadata"]["ownerReferences"] == [{"uid": "u"}]
    assert ingress_nginx.host_paths(canary) == ingress_nginx.host_paths(primary) == {("a.example", "/x"), ("a.example", "/")}
    assert {p["backend"]["service"]["name"] for r in canary["spec"]["rules"] for p in r["http"]["paths"]} == {"web-peers"}


# ---------------------------------------------------------------------------- external-dns


def dns(*endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "shop", "namespace": "n", "resourceVersion": "7"}, "spec": {"endpoints": list(endpoints)}}


def test_dns_patch_touches_only_this_regions_weight() -> None:
    obj = dns(
        {"setIdentifier": "east", "providerSpecific": [{"name": "aws/weight", "value": "100"}, {"name": "k", "value": "v"}]},
        {"setIdentifier": "west", "providerSpecific": [{"name": "aws/weight", "value": "100"}]},
        {"setIdentifier": "east", "recordType": "AAAA"},
    )
    after = patched(obj, externaldns.weight_patch(obj, region="east", weight=0))
    assert after["spec"]["endpoints"][0]["providerSpecific"] == [{"name": "aws/weight", "value": "0"}, {"name": "k", "value": "v"}]
    assert after["spec"]["endpoints"][1] == obj["spec"]["endpoints"][1]
    assert after["spec"]["endpoints"][2]["providerSpecific"] == [{"name": "aws/weight", "value": "0"}]
    assert externaldns.region_weight(after, region="east") == 0
    assert externaldns.weight_patch(after, region="east", weight=0) == []
    with pytest.raises(InvalidWeights):
        externaldns.weight_patch(obj, region="east", weight=256)
    with pytest.raises(LocalBackendMissing):
        externaldns.weight_patch(obj, region="eu", weight=1)


@pytest.mark.parametrize("value", [None, "", "ten", "-1", "1.0", "256", "１"])
def test_a_dns_weight_that_cannot_be_read_is_never_zero(value: str | None) -> None:
    properties = [] if value is None else [{"name": "aws/weight", "value": value}]
    with pytest.raises(WeightUnparsable):
        externaldns.parse_dns_weight({"providerSpecific": properties}, where="x")


# ---------------------------------------------------------------------------- shared


def test_validate_weights() -> None:
    assert validate_weights({"a": 0, "b": 5}, maximum=10) == {"a": 0, "b": 5}
    for bad in ({"a": 0}, {}, {"a": 11}, {"a": True}, {"a": 1.0}):
        with pytest.raises(InvalidWeights):
            validate_weights(bad, maximum=10)  # type: ignore[arg-type]


def test_peer_service_names_stay_valid() -> None:
    assert peer_service_name(local_service="web", region="west") == "web-west"
    long = peer_service_name(local_service="x" * 60, region="us-west-2")
    assert len(long) == 63 and long != peer_service_name(local_service="x" * 60, region="us-west-1")
    assert conventional_backends(region="east", peers=["west"])("web") == Backends(
        region="east", local_service="web", peer_services={"west": "web-west"})


def test_gateway_addresses_parse_to_endpoint_slices() -> None:
    assert parse_gateway_address("10.0.0.7:443").address_type == "IPv4"
    assert parse_gateway_address("[fd00::7]:8443").host == "fd00::7"
    assert parse_gateway_address("GW.example.com:80").host == "gw.example.com"
    assert parse_gateway_address("west.localhost:8443").address_type == "FQDN"
    # what the API server would refuse in an EndpointSlice (422) is refused before any write
    for bad in ("10.0.0.7", "https://gw:443", "gw:0", "gw:70000", "127.0.0.1:443", "[::1]:443", "0.0.0.0:80",
                "169.254.0.1:80", "localhost:443"):
        with pytest.raises(PeerUnreachable):
            parse_gateway_address(bad)
    sl = endpoint_slice_for(namespace="n", service="web-west", region="west",
                            gateway=parse_gateway_address("10.0.0.7:443"), owner=None)
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "web-west"
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "regionshift.io"
    assert (sl["endpoints"], sl["ports"]) == ([{"addresses": ["10.0.0.7"], "conditions": {"ready": True}}],
                                             [{"name": "http", "port": 443, "protocol": "TCP"}])


def test_last_foreign_writer_reads_who_owns_the_weights_list() -> None:
    obj = {"metadata": {"managedFields": [
        {"manager": "regionshift", "operation": "Update", "time": "2026-01-01T00:00:09Z",
         "fieldsV1": {"f:metadata": {}}},
        {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-01-01T00:00:05Z",
         "fieldsV1": {"f:spec": {"f:hostnames": {}}}},
        {"manager": "argocd-controller", "operation": "Apply", "time": "2026-01-01T00:00:05Z",
         "fieldsV1": {"f:spec": {"f:rules": {}}}},
    ]}}
    assert last_foreign_writer(obj, path=("f:spec", "f:rules")) == ("argocd-controller", True)
    assert last_foreign_writer(obj, path=("f:status",)) == (None, False)


def test_drift_message_names_the_changed_weights() -> None:
    drift = Drift(kind="HTTPRoute", name="web", expected={"east": 0, "west": 1}, actual={"east": 7, "west": 1},
                  writer="kubectl-edit", reapplied=False)
    assert drift.message == "HTTPRoute web: weights changed by kubectl-edit: east 0→7"


def test_traffic_errors_are_reconcile_errors_with_their_own_reason() -> None:
    error = LocalBackendMissing("x", kind="HTTPRoute", name="web")
    assert isinstance(error, TrafficError) and isinstance(error, ReconcileError)
    assert (error.reason, error.kind, error.name) == ("LocalBackendMissing", "HTTPRoute", "web")


def test_third_party_crds_are_pinned_and_cached_by_version() -> None:
    assert (GATEWAY_API.module, GATEWAY_API.version) == ("sigs.k8s.io/gateway-api", "v1.6.3")
    assert (EXTERNAL_DNS.module, EXTERNAL_DNS.version) == ("sigs.k8s.io/external-dns", "v0.22.0")
    assert GATEWAY_API.cache_file.name == "sigs.k8s.io_gateway-api@v1.6.3.yaml"


def test_the_error_tree_drawing_names_every_error_under_its_parent() -> None:
    import inspect

    from regionshift import errors

    drawn: dict[str, str | None] = {}  # class name -> parent drawn above it
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        plain = line.replace("│", " ").replace("├──", "   ").replace("└──", "   ")
        if not plain.strip() or not line.strip().startswith(("Regionshift", "├", "│", "└")):
            continue
        depth, name = len(plain) - len(plain.lstrip()), plain.split()[0]
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    classes = {n: c for n, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.RegionshiftError)}
    assert set(drawn) == set(classes) == set(errors.__all__)
    for name, cls in classes.items():
        expected = None if cls is errors.RegionshiftError else cls.__mro__[1].__name__
        assert drawn[name] == expected, f"{name} is drawn under {drawn[name]}, not {expected}"
