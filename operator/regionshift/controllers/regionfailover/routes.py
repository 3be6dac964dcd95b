"""The routes of a RegionFailover: what each provider reports, and the weight writes carried out.

The state machine (:mod:`regionshift.decide.evacuation`) thinks in weights per region on
each route of ``spec.traffic``. This module stands between it and the providers of
:mod:`regionshift.adapters.traffic`:

* :func:`read_routes` reads every route from one LIST per provider kind and run (the
  namespace's HTTPRoutes, Ingresses or DNSEndpoints, :meth:`~regionshift.adapters.traffic.base.TrafficProvider.snapshot`;
  the Services and EndpointSlices listed once per run for every HTTPRoute), reads and
  verifies each route from that one object (no GET per route, and no second one to
  verify), and turns each provider's answer into a
  :class:`~regionshift.decide.evacuation.RouteReport`: the weights per region, whether they
  are verified, which peers' backends resolve, and which regions' weights this operator
  owns (a DNS route: only its own record);
* :func:`set_weights` carries one ``SetWeights`` action out (its HTTPRoute backends checked
  against the Services the run read, :func:`backend_index`), through the provider's
  ``restore`` when the weights asked for are the recorded ones (the last failback step, or
  the proxy routes coming back at its first): peer backends added during the evacuation go
  again and the route is as it was, byte for byte. The write is computed from the object
  the run's LIST returned (:attr:`RouteBook.listed`), guarded by its resourceVersion: a
  route that moved since answers 409 and is read again, so no GET precedes a write.

A LIST that fails (a provider's CRD not installed, a 403) does not fail the run: that
kind's routes are read one by one, so each gets its own error (RouteNotFound, the API's
refusal) as before, and every other route goes on.

Two translations happen here, so that neither the providers nor the state machine need to
know about the other:

* an ingress-nginx canary splits traffic in two only (this region and "the peers"). It is
  reported per region: when the canary carries the projection of the desired weights, as
  the desired weights; otherwise the peers' share spread evenly over the peers;
* verification: where no controller reports on a route (no gateway controller on the
  HTTPRoute's parents, no external-dns on the DNSEndpoint, no address published for the
  canary: ``holds=None``, "Unreported"), the route counts as holding once the object
  carries the weights. The state machine would otherwise wait for ever where nothing
  reports; the route's verification reason says which case it is.

Every provider call is blocking (the official client): call these from a thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from regionshift.adapters.traffic import TrafficProvider, provider_for
from regionshift.adapters.traffic.base import Listed
from regionshift.adapters.traffic.externaldns import ExternalDNSProvider
from regionshift.adapters.traffic.gatewayapi import BackendIndex, GatewayAPIProvider
from regionshift.adapters.traffic.ingress_nginx import PEERS, canary_weight
from regionshift.api.models import RegionFailoverSpec, RegionFailoverStatus, TrafficProviderKind
from regionshift.decide.evacuation import RouteReport, SetWeights
from regionshift.errors import TrafficError

__all__ = ["ROUTE_CONCURRENCY", "RouteBook", "backend_index", "describe_route_error", "read_routes", "set_weights"]

log = logging.getLogger(__name__)

ROUTE_CONCURRENCY = 16
"""Route writes (and peer-Service checks) in flight at once: each is a blocking call."""


@dataclass(kw_only=True)
class RouteBook:
    """The providers of one RegionFailover, and the peer Services already made sure of (memory only)."""

    api: client.ApiClient
    namespace: str
    spec: RegionFailoverSpec
    owner: Mapping[str, Any] | None
    peer_services_done: set[tuple[str, tuple[tuple[str, str | None], ...]]] = field(default_factory=set)
    """(route, gateways) pairs whose peer Services were ensured in this process: ensured once, not every run."""
    listed: dict[TrafficProviderKind, Listed] = field(default_factory=dict)
    """Each kind's objects as the last :func:`read_routes` listed them: the first attempt of its writes."""
    index: BackendIndex | None = None
    """The Services (and their EndpointSlices) the last :func:`read_routes` checked the HTTPRoutes'
    backends against: the run's writes are checked against the same snapshot the run decided on."""
    _providers: dict[TrafficProviderKind, TrafficProvider] = field(default_factory=dict)

    @property
    def gateways(self) -> dict[str, str | None]:
        return {p.name: p.gateway_address for p in self.spec.peers}

    def provider(self, kind: TrafficProviderKind | str) -> TrafficProvider:
        kind = TrafficProviderKind(kind)
        if kind not in self._providers:
            self._providers[kind] = provider_for(kind, api=self.api, namespace=self.namespace, region=self.spec.region,
                                                 peers=self.gateways, owner=self.owner)
        return self._providers[kind]


def _desired(status: RegionFailoverStatus, kind: TrafficProviderKind, route: str) -> dict[str, int] | None:
    for state in status.weights:
        if TrafficProviderKind(state.provider) == kind and state.route == route:
            return dict(state.desired) if state.desired else None
    return None


def _canary_as_regions(read: Mapping[str, int], *, here: str, peers: Sequence[str],
                       desired: Mapping[str, int] | None, total: int) -> dict[str, int]:
    """An ingress-nginx split ``{here, peers}`` as weights per region (see the module docstring)."""
    canary = read.get(PEERS, 0)
    if desired and canary_weight(desired, region=here, total=total) == canary:
        return {here: desired.get(here, 0), **{p: desired.get(p, 0) for p in peers}}
    out = {here: read.get(here, 0), **{p: 0 for p in peers}}
    if canary and peers:
        each, extra = divmod(canary, len(peers))
        for i, peer in enumerate(sorted(peers)):
            out[peer] = each + (1 if i < extra else 0)
    return out


def _ensure_peer_services(book: RouteBook, *, route: str, listed: Listed | None = None) -> None:
    """The peer Services of one HTTPRoute, made sure of once per process (they are written, so not in DryRun)."""
    provider = book.provider(TrafficProviderKind.GATEWAY_API)
    assert isinstance(provider, GatewayAPIProvider)
    gateways = tuple(sorted(book.gateways.items()))
    if (route, gateways) not in book.peer_services_done:
        provider.ensure_peer_services(route=route, gateways=book.gateways, owner=book.owner, listed=listed)
        book.peer_services_done.add((route, gateways))


def _report(book: RouteBook, *, kind: TrafficProviderKind, route: str, status: RegionFailoverStatus,
            act: bool, index: BackendIndex | None = None, listed: Listed | None = None) -> RouteReport:
    """One route's report; ``act`` False (DryRun) never writes, not even a peer Service.

    ``index``: the namespace's Services, taken once for every HTTPRoute of the run (taken
    here when missing). ``listed``: the kind's objects from the run's one LIST; the route is
    read and verified from it (one GET each when missing).
    """
    spec, here = book.spec, book.spec.region
    peers = [p.name for p in spec.peers]
    provider = book.provider(kind)
    desired = _desired(status, kind, route)
    if kind is TrafficProviderKind.GATEWAY_API:
        assert isinstance(provider, GatewayAPIProvider)
        if act:
            _ensure_peer_services(book, route=route, listed=listed)
        weights = dict(provider.read(route=route, listed=listed).weights)
        backends = provider.backends(route)
        if act:
            index = index if index is not None else provider.backend_index()
            resolvable = frozenset(p for p in peers if backends.service_of(p) in index.resolving)
        else:  # DryRun plans as if the peer Services were there for every peer with a gateway
            resolvable = frozenset(p for p in peers if book.gateways.get(p))
        owned = None
    elif kind is TrafficProviderKind.INGRESS_NGINX:
        total = getattr(provider, "total", 100)
        weights = _canary_as_regions(provider.read(route=route, listed=listed).weights, here=here, peers=peers,
                                     desired=desired,
                                     total=total)
        resolvable = frozenset(p for p in peers if book.gateways.get(p))
        owned = None
    else:
        weights = dict(provider.read(route=route, listed=listed).weights)
        resolvable = frozenset()
        owned = frozenset({here})
    check = desired if desired else weights
    verification = provider.verify(route=route, desired=check, listed=listed) if any(check.values()) else None
    verified = verification is None or verification.holds is not False
    return RouteReport(provider=kind, route=route, weights=weights, verified=verified, resolvable=resolvable,
                       owned=owned, error=None if verified or verification is None else verification.message)


def read_routes(book: RouteBook, *, status: RegionFailoverStatus, act: bool) -> tuple[list[RouteReport], list[Exception]]:
    """A report for every route of ``spec.traffic``; a route that cannot be read is reported without weights.

    Returns the reports and the errors met, one per route at most: typed ones
    (:class:`~regionshift.errors.TrafficError`: a route or Service that does not exist, a
    route without a backendRef for the local Service, an unparsable DNS weight) and the API's
    refusals (an invalid peer gateway address, a 403), which the caller turns into a
    condition and Events. One route's error never hides the others.
    """
    jobs = [(TrafficProviderKind(t.kind), route) for t in book.spec.traffic for route in t.routes]
    gateway_routes = [route for kind, route in jobs if kind is TrafficProviderKind.GATEWAY_API]
    failed: dict[tuple[TrafficProviderKind, str], Exception] = {}
    index: BackendIndex | None = None
    book.index = None
    listed = _snapshots(book, kinds={kind for kind, _ in jobs})
    book.listed = listed
    with ThreadPoolExecutor(max_workers=ROUTE_CONCURRENCY, thread_name_prefix="routes") as pool:
        if act and gateway_routes:
            # the peer Services first, then one snapshot of the namespace's Services for every HTTPRoute
            routes_listed = listed.get(TrafficProviderKind.GATEWAY_API)
            pending = [r for r in gateway_routes
                       if (r, tuple(sorted(book.gateways.items()))) not in book.peer_services_done]
            for route, exc in zip(pending, pool.map(
                    lambda r: _typed_error(lambda: _ensure_peer_services(book, route=r, listed=routes_listed)),
                    pending)):
                if exc is not None:
                    failed[(TrafficProviderKind.GATEWAY_API, route)] = exc
            provider = book.provider(TrafficProviderKind.GATEWAY_API)
            assert isinstance(provider, GatewayAPIProvider)
            try:
                index = book.index = provider.backend_index()
            except ApiException as exc:
                failed.update({(TrafficProviderKind.GATEWAY_API, r): exc for r in gateway_routes})

        def one(job: tuple[TrafficProviderKind, str]) -> RouteReport | Exception:
            kind, route = job
            if job in failed:
                return failed[job]
            try:
                return _report(book, kind=kind, route=route, status=status, act=act, index=index,
                               listed=listed.get(kind))
            except (TrafficError, ApiException) as exc:  # reported per route, the other routes go on
                return exc

        outcomes = list(pool.map(one, jobs))
    reports: list[RouteReport] = []
    errors: list[Exception] = []
    for (kind, route), outcome in zip(jobs, outcomes):
        if isinstance(outcome, RouteReport):
            reports.append(outcome)
            continue
        errors.append(outcome)
        reports.append(RouteReport(provider=kind, route=route, weights=None, verified=False,
                                   error=f"{kind.value} {route}: {describe_route_error(outcome)}"))
    return reports, errors


def _snapshots(book: RouteBook, *, kinds: set[TrafficProviderKind]) -> dict[TrafficProviderKind, Listed]:
    """One LIST per provider kind; a kind whose LIST fails is left out (its routes are then read one by one)."""
    out: dict[TrafficProviderKind, Listed] = {}
    for kind in sorted(kinds, key=lambda k: k.value):
        try:
            out[kind] = book.provider(kind).snapshot()
        except ApiException as exc:
            log.info("listing the %s routes of %s failed (%s); reading them one by one", kind.value, book.namespace,
                     describe_route_error(exc))
    return out


def _typed_error(call: Any) -> Exception | None:
    """None when ``call`` succeeds; the route's typed error or the API's refusal when it fails (others raise)."""
    try:
        call()
    except (TrafficError, ApiException) as exc:
        return exc
    return None


def describe_route_error(exc: Exception) -> str:
    """One line for a route's error: the typed error's class and text, or the API's status and message."""
    if isinstance(exc, ApiException):
        try:
            detail = json.loads(exc.body).get("message", exc.reason) if exc.body else exc.reason
        except (ValueError, AttributeError):
            detail = exc.reason
        return f"HTTP {exc.status}: {detail}"
    return f"{type(exc).__name__}: {exc}"


def backend_index(book: RouteBook) -> BackendIndex | None:
    """One snapshot of the namespace's Services for a batch of HTTPRoute writes (None without HTTPRoutes).

    The one this run's :func:`read_routes` took, when it took one (the run decided on it, a
    second or two ago, and the peer Services it made sure of are in it); else a fresh one.
    """
    if not any(TrafficProviderKind(t.kind) is TrafficProviderKind.GATEWAY_API for t in book.spec.traffic):
        return None
    if book.index is not None:
        return book.index
    provider = book.provider(TrafficProviderKind.GATEWAY_API)
    assert isinstance(provider, GatewayAPIProvider)
    return provider.backend_index()


def set_weights(book: RouteBook, *, action: SetWeights, status: RegionFailoverStatus,
                index: BackendIndex | None = None) -> None:
    """Carry one SetWeights out; raises the provider's typed error when the route refuses it.

    ``index`` (:func:`backend_index`): the Services an HTTPRoute's backends are checked
    against, taken once for a batch of writes instead of three reads per route.
    """
    kind = TrafficProviderKind(action.provider)
    provider = book.provider(kind)
    weights = action.as_dict()
    recorded = next((dict(w.recorded) for w in status.weights
                     if TrafficProviderKind(w.provider) == kind and w.route == action.route and w.recorded), None)
    restoring = recorded is not None and all(
        weights.get(r, 0) == recorded.get(r, 0) for r in set(weights) | set(recorded))
    listed = book.listed.get(kind)
    if listed is not None and action.route not in listed:
        listed = None  # not in the last LIST: read it afresh (and let the provider say it is missing)
    if restoring and isinstance(provider, GatewayAPIProvider):
        assert recorded is not None
        provider.restore(route=action.route, recorded=recorded, listed=listed)
    elif restoring and kind is not TrafficProviderKind.EXTERNAL_DNS:
        assert recorded is not None
        provider.restore(route=action.route, recorded=recorded)
    elif isinstance(provider, GatewayAPIProvider):
        provider.apply(route=action.route, desired=weights, index=index, listed=listed)
    elif isinstance(provider, ExternalDNSProvider):
        provider.apply(route=action.route, desired=weights, listed=listed)
    else:
        provider.apply(route=action.route, desired=weights)
