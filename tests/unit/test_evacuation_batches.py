"""Route work of one evacuation run scales with the routes: one snapshot of the Services, writes in batches.

With hundreds of routes (the evacuation benchmark, docs/benchmarks.md) the run read every
HTTPRoute one after another and took two namespace-wide LISTs (Services, EndpointSlices)
per route, then wrote the routes one after another with three more reads each. These tests
pin the shape that replaced it: :func:`read_routes` takes the namespace's Services once per
run, and :func:`_batches` groups the route writes of one layer (proxy before DNS) so that
they go out together, the Events among them after the writes.

The provider here is a counting stand-in for the API (the call counts are the point, which
a real API server does not report); the real provider against the real API server is
covered by tests/integration/test_traffic_gatewayapi.py and the two-region tests.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from kubernetes.client.exceptions import ApiException

from regionshift.adapters.traffic.base import RouteWeights, Verification, conventional_backends
from regionshift.adapters.traffic.gatewayapi import BackendIndex, GatewayAPIProvider
from regionshift.api.models import RegionFailoverSpec, RegionFailoverStatus, TrafficProviderKind
from regionshift.controllers.regionfailover.evacuation import _batches
from regionshift.controllers.regionfailover.routes import RouteBook, read_routes
from regionshift.decide.evacuation import OpenGates, PostEvent, SetWeights
from regionshift.errors import RouteNotFound

GATEWAY, NGINX, DNS = TrafficProviderKind.GATEWAY_API, TrafficProviderKind.INGRESS_NGINX, TrafficProviderKind.EXTERNAL_DNS
ROUTES = [f"svc-{i:03d}" for i in range(130)]


class CountingGatewayAPI(GatewayAPIProvider):
    """Answers from memory and counts the calls; ``svc-007`` does not exist."""

    def __init__(self) -> None:
        self.region = "east"
        self.backends = conventional_backends(region="east", peers=["west"])
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, what: str) -> None:
        with self._lock:
            self.calls[what] += 1

    def ensure_peer_services(self, *, route: str, gateways: Any, owner: Any = None, listed: Any = None) -> bool:
        self._count("ensure")
        return False

    def snapshot(self) -> dict[str, dict[str, Any]]:
        self._count("list")
        return {r: {"metadata": {"name": r}} for r in ROUTES if r != "svc-007"}

    def read(self, *, route: str, listed: Any = None) -> RouteWeights:
        self._count("read" if listed is None else "read listed")
        if route == "svc-007" or (listed is not None and route not in listed):
            raise RouteNotFound(f"HTTPRoute {route} does not exist", kind="HTTPRoute", name=route)
        return RouteWeights(kind="HTTPRoute", name=route, weights={"east": 100}, generation=1, resource_version="1")

    def backend_index(self) -> BackendIndex:
        self._count("index")
        return BackendIndex(services=frozenset(ROUTES), resolving=frozenset(f"{r}-west" for r in ROUTES))

    def verify(self, *, route: str, desired: Any, listed: Any = None) -> Verification:
        self._count("verify" if listed is None else "verify listed")
        return Verification(None, "Unreported", "nothing reports")


def book(provider: CountingGatewayAPI) -> RouteBook:
    spec = RegionFailoverSpec.model_validate({
        "region": "east", "peers": [{"name": "west", "gatewayAddress": "west.example:443"}],
        "signal": {"prometheusUrl": "http://127.0.0.1:9090", "query": 'x{region="{region}"}'},
        "selector": {"matchLabels": {"app": "web"}},
        "traffic": [{"kind": "GatewayAPI", "routes": ROUTES[i:i + 64]} for i in range(0, len(ROUTES), 64)]})
    out = RouteBook(api=None, namespace="ns", spec=spec, owner=None)  # type: ignore[arg-type]
    out._providers[GATEWAY] = provider
    return out


def test_one_run_lists_the_routes_and_the_namespaces_services_once_for_every_route_with_a_counting_stand_in() -> None:
    provider = CountingGatewayAPI()
    routes = book(provider)
    reports, errors = read_routes(routes, status=RegionFailoverStatus(), act=True)
    assert provider.calls["index"] == 1 and provider.calls["list"] == 1
    assert provider.calls["read"] == 0 and provider.calls["verify"] == 0  # no GET per route: all from the LIST
    assert provider.calls["read listed"] == len(ROUTES) and provider.calls["ensure"] == len(ROUTES)
    assert set(routes.listed[GATEWAY]) == set(ROUTES) - {"svc-007"}  # kept for the writes of the run
    assert [r.route for r in reports] == ROUTES  # in spec order, whatever order the reads finished in
    missing = [r for r in reports if r.weights is None]
    assert [r.route for r in missing] == ["svc-007"] and "RouteNotFound" in (missing[0].error or "")
    assert [type(e).__name__ for e in errors] == ["RouteNotFound"]
    assert all(r.resolvable == frozenset({"west"}) for r in reports if r.weights is not None)


class FailingList(CountingGatewayAPI):
    """A LIST the API refuses (a CRD not installed, a 403)."""

    def snapshot(self) -> dict[str, dict[str, Any]]:
        self._count("list")
        raise ApiException(status=403, reason="Forbidden")


def test_a_refused_list_falls_back_to_one_read_per_route_with_a_counting_stand_in() -> None:
    provider = FailingList()
    reports, errors = read_routes(book(provider), status=RegionFailoverStatus(), act=True)
    assert provider.calls["list"] == 1 and provider.calls["read"] == len(ROUTES)
    assert [r.route for r in reports if r.weights is None] == ["svc-007"]  # the per-route error, as before
    assert [type(e).__name__ for e in errors] == ["RouteNotFound"]


def test_dry_run_reads_without_making_sure_of_peer_services_with_a_counting_stand_in() -> None:
    provider = CountingGatewayAPI()
    read_routes(book(provider), status=RegionFailoverStatus(), act=False)
    assert provider.calls["ensure"] == 0 and provider.calls["index"] == 0


def weights(kind: TrafficProviderKind, route: str) -> SetWeights:
    return SetWeights(provider=kind, route=route, weights=(("east", 0), ("west", 100)), previous=(("east", 100),),
                      reason="evacuating")


def event(text: str) -> PostEvent:
    return PostEvent(type="Normal", reason="WeightsChanged", message=text)


def test_route_writes_of_one_layer_go_out_as_one_batch_dns_after_proxies_with_a_counting_stand_in() -> None:
    gates = OpenGates(region="east", dark_clusters=("a",), reason="saving west")
    before = event("Evacuating")
    actions = [before, gates, weights(GATEWAY, "a"), event("a"), weights(NGINX, "b"), event("b"),
               weights(DNS, "c"), event("c"), event("Evacuated")]
    assert _batches(actions) == [
        [before], [gates],
        [weights(GATEWAY, "a"), event("a"), weights(NGINX, "b"), event("b")],
        [weights(DNS, "c"), event("c"), event("Evacuated")],
    ]
    assert [a for batch in _batches(actions) for a in batch] == actions


def test_an_evacuation_gate_is_applied_on_the_listed_dark_cluster_and_read_again_only_on_409_mock(
        monkeypatch: Any) -> None:
    from kubernetes import client as k8s

    from regionshift.adapters import kube
    from regionshift.api.models import Gate

    reads: list[str] = []
    applies: list[str | None] = []
    fresh = {"metadata": {"name": "a", "resourceVersion": "12"}, "status": {}}
    monkeypatch.setattr(kube, "read_custom", lambda **_: reads.append("get") or fresh)
    monkeypatch.setattr(kube.retries.time, "sleep", lambda _: None)

    def apply(self: Any, *args: Any, **_: Any) -> dict[str, Any]:
        version = args[5]["metadata"]["resourceVersion"]
        applies.append(version)
        if version == "11":  # the DarkCluster moved since the LIST
            raise ApiException(status=409, reason="Conflict")
        return {}

    monkeypatch.setattr(k8s.CustomObjectsApi, "patch_namespaced_custom_object_status", apply)
    monkeypatch.setattr(kube, "_client", lambda: None)
    listed = {"metadata": {"name": "a", "resourceVersion": "10"}, "status": {"evacuationGate": "Closed"}}
    kube.set_evacuation_gate(namespace="ns", name="a", gate=Gate.OPEN, listed=listed)
    assert (reads, applies) == ([], ["10"])  # one request, not two
    stale = {"metadata": {"name": "a", "resourceVersion": "11"}, "status": {}}
    kube.set_evacuation_gate(namespace="ns", name="a", gate=Gate.OPEN, listed=stale)
    assert (reads, applies) == (["get"], ["10", "11", "12"])  # refused, read afresh, applied on that
    already = {"metadata": {"name": "a", "resourceVersion": "13"}, "status": {"evacuationGate": "Open"}}
    kube.set_evacuation_gate(namespace="ns", name="a", gate=Gate.OPEN, listed=already)
    assert applies == ["10", "11", "12"]  # nothing to write
