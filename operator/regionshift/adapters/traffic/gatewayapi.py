"""Gateway API HTTPRoute provider: the weights of the backendRefs regionshift manages, nothing else.

A user's HTTPRoute sends traffic to the local Service. To evacuate, regionshift gives the
local Service's backendRef less weight and the peers' Services (selector-less, see
:mod:`.peers`) more, in every rule that references the local Service, and leaves every
other rule, match, filter and backendRef as the user wrote it.

Why a JSON patch and not server-side apply: in the published CRD ``spec.rules`` and each
rule's ``backendRefs`` are atomic lists, so a field manager cannot own one weight. The
patch names each weight by its index, which is safe because it also sets
``metadata.resourceVersion`` to the version the patch was computed from: the API server
answers 409 Conflict when the route moved on, and the write is computed again from the
fresh route. (A JSON-patch ``test`` op would fail with a bare 422 before that precondition
is checked, so none is used.) Defaulted fields
(``group``, ``kind``, ``weight``) are written explicitly on every backendRef it touches,
so a GitOps tool comparing the live object with a manifest that spells them out sees no
difference beyond the weights (argo-cd#22151). A peer's backendRef is appended only when
that peer gets a non-zero weight, with the local backendRef's port; restore removes the
backendRefs that were not there when the weights were recorded.

Verification reads the route's ``status.parents``: the weights hold when every parent
(Gateway) reports ``Accepted=True`` and ``ResolvedRefs`` not False with an
``observedGeneration`` at least the route's generation. Where no gateway controller writes
that status (as in the local test clusters, which run none), :meth:`verify` answers
``holds=None`` with reason ``Unreported``: written, but unconfirmed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from regionshift.api.models import TrafficProviderKind
from regionshift.errors import (
    InvalidWeights,
    LocalBackendMissing,
    PeerUnreachable,
    ServiceNotFound,
    WeightUnparsable,
)
from .base import (
    FIELD_MANAGER,
    Backends,
    CustomObjectRoutes,
    Drift,
    Listed,
    RouteWeights,
    TrafficProvider,
    Verification,
    Weights,
    guarded_write,
    last_applied,
    last_foreign_writer,
    raise_for,
    validate_weights,
)
from .peers import ensure_peer_service

__all__ = [
    "GROUP",
    "BackendIndex",
    "MAX_BACKEND_REFS",
    "MAX_WEIGHT",
    "GatewayAPIProvider",
    "managed_rule_weights",
    "parse_weight",
    "weight_patch",
]

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
PLURAL = "httproutes"
KIND = "HTTPRoute"
MAX_WEIGHT = 1_000_000
MAX_BACKEND_REFS = 16
DEFAULT_WEIGHT = 1


def parse_weight(value: Any, *, where: str) -> int:
    """A backendRef's weight: absent means the API default 1; anything but an integer in range is an error."""
    if value is None:
        return DEFAULT_WEIGHT
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WEIGHT:
        raise WeightUnparsable(f"{where}: weight {value!r} is not an integer in 0..{MAX_WEIGHT}")
    return value


def _service_name(ref: Mapping[str, Any], *, namespace: str) -> str | None:
    """The Service a backendRef points at in the route's namespace, or None for anything else."""
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
        return None
    if ref.get("namespace") not in (None, namespace):
        return None
    name = ref.get("name")
    return name if isinstance(name, str) else None


def _local_rules(route: Mapping[str, Any], *, backends: Backends) -> list[int]:
    namespace = route["metadata"]["namespace"]
    return [
        i
        for i, rule in enumerate((route.get("spec") or {}).get("rules") or [])
        if any(_service_name(ref, namespace=namespace) == backends.local_service for ref in rule.get("backendRefs") or [])
    ]


def managed_rule_weights(route: Mapping[str, Any], *, backends: Backends) -> list[dict[str, int]]:
    """Per rule referencing the local Service, the weight of each managed backendRef by region.

    LocalBackendMissing when no rule references the local Service.
    """
    namespace = route["metadata"]["namespace"]
    name = route["metadata"]["name"]
    rules = (route.get("spec") or {}).get("rules") or []
    out: list[dict[str, int]] = []
    for i in _local_rules(route, backends=backends):
        weights: dict[str, int] = {}
        for j, ref in enumerate(rules[i].get("backendRefs") or []):
            service = _service_name(ref, namespace=namespace)
            region = backends.region_of(service) if service else None
            if region is not None:
                where = f"{KIND} {namespace}/{name} rules[{i}].backendRefs[{j}]"
                weights[region] = weights.get(region, 0) + parse_weight(ref.get("weight"), where=where)
        out.append(weights)
    if not out:
        raise LocalBackendMissing(
            f"{KIND} {namespace}/{name} has no rule with a backendRef to the local Service {backends.local_service}",
            kind=KIND,
            name=name,
        )
    return out


def weight_patch(
    route: Mapping[str, Any], *, backends: Backends, desired: Weights, drop_unlisted: bool = False
) -> list[dict[str, Any]]:
    """The JSON patch giving the managed backendRefs the desired weights (pure); [] when nothing changes.

    Only rules that reference the local Service are touched, and in them only backendRefs to
    the local or a peer Service. A peer without a backendRef gets one (appended, with the
    local backendRef's port) when its weight is above 0. With ``drop_unlisted`` (restore),
    managed peer backendRefs of regions missing from ``desired`` are removed.
    """
    namespace = route["metadata"]["namespace"]
    name = route["metadata"]["name"]
    rules = (route.get("spec") or {}).get("rules") or []
    local_rules = _local_rules(route, backends=backends)
    if not local_rules:
        raise LocalBackendMissing(
            f"{KIND} {namespace}/{name} has no rule with a backendRef to the local Service {backends.local_service}",
            kind=KIND,
            name=name,
        )
    for region in desired:
        backends.service_of(region)  # InvalidWeights for a region outside the domain
    sets: list[dict[str, Any]] = []
    removes: list[dict[str, Any]] = []
    appends: list[dict[str, Any]] = []
    for i in local_rules:
        refs = rules[i].get("backendRefs") or []
        seen: set[str] = set()
        final_sum = 0
        rule_removes: list[dict[str, Any]] = []
        local_port: Any = None
        for j, ref in enumerate(refs):
            path = f"/spec/rules/{i}/backendRefs/{j}"
            service = _service_name(ref, namespace=namespace)
            region = backends.region_of(service) if service else None
            current = parse_weight(ref.get("weight"), where=f"{KIND} {namespace}/{name} rules[{i}].backendRefs[{j}]")
            if region == backends.region and local_port is None:
                local_port = ref.get("port")
            if region is None or (region not in desired and not drop_unlisted) or (
                region == backends.region and region not in desired
            ):
                final_sum += current
                continue
            if region not in desired:  # a peer's backendRef added after the weights were recorded
                rule_removes.append({"op": "remove", "path": path})
                continue
            seen.add(region)
            weight = desired[region]
            final_sum += weight
            changes = [
                (key, value)
                for key, value in (("group", ""), ("kind", "Service"), ("weight", weight))
                if ref.get(key) != value
            ]
            if changes:
                sets.extend({"op": "add", "path": f"{path}/{key}", "value": value} for key, value in changes)
        added = 0
        for region, weight in desired.items():
            if region in seen or region == backends.region or weight == 0:
                continue
            ref = {"group": "", "kind": "Service", "name": backends.service_of(region), "weight": weight}
            if local_port is not None:
                ref["port"] = local_port
            appends.append({"op": "add", "path": f"/spec/rules/{i}/backendRefs/-", "value": ref})
            final_sum += weight
            added += 1
        if len(refs) - len(rule_removes) + added > MAX_BACKEND_REFS:
            raise InvalidWeights(
                f"{KIND} {namespace}/{name} rules[{i}] would have more than {MAX_BACKEND_REFS} backendRefs",
                kind=KIND,
                name=name,
            )
        if final_sum == 0:
            raise InvalidWeights(
                f"{KIND} {namespace}/{name} rules[{i}] would end with every weight 0", kind=KIND, name=name
            )
        removes.extend(reversed(rule_removes))  # highest index first, so the others keep theirs
    ops = sets + removes + appends
    if not ops:
        return []
    version = {"op": "replace", "path": "/metadata/resourceVersion", "value": route["metadata"]["resourceVersion"]}
    return [version, *ops]


def _ready(endpoint: Any) -> bool:
    """An EndpointSlice endpoint with an address that is not marked unready."""
    return bool(endpoint.addresses) and (endpoint.conditions is None or endpoint.conditions.ready is not False)


def _ready_json(endpoint: Mapping[str, Any]) -> bool:
    """:func:`_ready` of an endpoint as the API's JSON has it."""
    return bool(endpoint.get("addresses")) and (endpoint.get("conditions") or {}).get("ready") is not False


def _items(response: Any) -> list[dict[str, Any]]:
    """The items of a LIST taken with ``_preload_content=False``: the JSON parsed, no client models built.

    A namespace of a thousand Services and EndpointSlices costs the GIL several times more
    as models than as parsed JSON.
    """
    try:
        return list(json.loads(response.data).get("items") or [])
    finally:
        response.release_conn()


@dataclass(frozen=True)
class BackendIndex:
    """The Services of a namespace, taken once for a batch of routes."""

    services: frozenset[str]
    resolving: frozenset[str]
    """Services whose EndpointSlices list at least one ready address."""


class GatewayAPIProvider(CustomObjectRoutes, TrafficProvider):
    """HTTPRoutes (gateway.networking.k8s.io/v1) in one namespace."""

    kind = TrafficProviderKind.GATEWAY_API
    object_kind = KIND
    group, version, plural = GROUP, VERSION, PLURAL
    max_weight = MAX_WEIGHT

    def __init__(
        self, *, api: client.ApiClient, namespace: str, region: str, backends: Callable[[str], Backends]
    ) -> None:
        super().__init__(api=api, namespace=namespace, region=region)
        self.backends = backends
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    # ------------------------------------------------------------------ reads

    def backend_index(self) -> BackendIndex:
        """Every Service of the namespace and those with a ready address, in two LIST calls.

        Pass it to :meth:`apply` when shifting many routes at once, instead of two reads per
        route and peer; it is as fresh as the moment it was taken.
        """
        services = _items(self._core.list_namespaced_service(self.namespace, _preload_content=False))
        slices = _items(client.DiscoveryV1Api(self.api).list_namespaced_endpoint_slice(
            self.namespace, _preload_content=False))
        return BackendIndex(
            services=frozenset(s["metadata"]["name"] for s in services),
            resolving=frozenset(
                ((piece.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name", "")
                for piece in slices
                if any(_ready_json(endpoint) for endpoint in piece.get("endpoints") or [])
            ),
        )

    def _require_service(self, name: str, index: BackendIndex | None) -> None:
        if index is not None:
            if name not in index.services:
                raise ServiceNotFound(f"Service {self.namespace}/{name} does not exist", kind="Service", name=name)
            return
        try:
            self._core.read_namespaced_service(name, self.namespace)
        except ApiException as exc:
            raise_for(exc, ServiceNotFound, kind="Service", name=name, namespace=self.namespace)

    def _require_peer_backend(self, *, region: str, name: str, index: BackendIndex | None) -> None:
        """The peer's Service exists and lists at least one ready address (its backend resolves)."""
        self._require_service(name, index)
        if index is not None:
            resolves = name in index.resolving
        else:
            slices = client.DiscoveryV1Api(self.api).list_namespaced_endpoint_slice(
                self.namespace, label_selector=f"kubernetes.io/service-name={name}"
            ).items
            resolves = any(_ready(endpoint) for piece in slices for endpoint in piece.endpoints or [])
        if not resolves:
            raise PeerUnreachable(
                f"Service {self.namespace}/{name} lists no ready address: {region}'s backend does not resolve",
                kind="Service",
                name=name,
            )

    def _weights(self, obj: Mapping[str, Any], *, written: bool = False) -> RouteWeights:
        rules = managed_rule_weights(obj, backends=self.backends(obj["metadata"]["name"]))
        return RouteWeights(
            kind=KIND,
            name=obj["metadata"]["name"],
            weights=rules[0],
            generation=int(obj["metadata"].get("generation") or 0),
            resource_version=obj["metadata"]["resourceVersion"],
            written=written,
        )

    def read(self, *, route: str, listed: Listed | None = None) -> RouteWeights:
        """The managed weights of the first rule that references the local Service."""
        return self._weights(self._object(route, listed))

    # ------------------------------------------------------------------ writes

    def ensure_peer_services(
        self, *, route: str, gateways: Mapping[str, str | None], owner: Mapping[str, Any] | None = None,
        listed: Listed | None = None,
    ) -> bool:
        """Make each peer's Service of this route reach that peer's gateway (idempotent).

        The Services get the port the local backendRef uses, so the backendRefs appended for
        the peers carry the same port. Peers without a gateway address are skipped: they
        cannot get weight (apply answers ServiceNotFound). True when something was written.
        """
        obj = self._object(route, listed)
        backends = self.backends(route)
        managed_rule_weights(obj, backends=backends)  # LocalBackendMissing
        rules = obj["spec"]["rules"]
        namespace = obj["metadata"]["namespace"]
        port = next(
            ref.get("port")
            for i in _local_rules(obj, backends=backends)
            for ref in rules[i]["backendRefs"]
            if _service_name(ref, namespace=namespace) == backends.local_service
        ) or 80
        wrote = False
        for region, address in sorted(gateways.items()):
            if address:
                wrote |= ensure_peer_service(
                    api=self.api, namespace=self.namespace, service=backends.service_of(region),
                    gateways={region: address}, port=int(port), owner=owner,
                )
        return wrote

    def _write(
        self, *, route: str, desired: dict[str, int], drop_unlisted: bool, first: dict[str, Any] | None = None
    ) -> RouteWeights:
        backends = self.backends(route)

        def write(current: dict[str, Any]) -> RouteWeights:
            patch = weight_patch(current, backends=backends, desired=desired, drop_unlisted=drop_unlisted)
            if not patch:
                return self._weights(current)
            updated = self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, route, patch,
                field_manager=FIELD_MANAGER, _content_type="application/json-patch+json",
            )
            return self._weights(updated, written=True)

        return guarded_write(read=lambda: self._get(route), write=write, kind=KIND, name=route, first=first)

    def apply(self, *, route: str, desired: Weights, index: BackendIndex | None = None,
              listed: Listed | None = None) -> RouteWeights:
        """Give the managed backendRefs the desired weights.

        Before any write: the route exists (RouteNotFound) and references the local Service
        (LocalBackendMissing), the local Service exists (ServiceNotFound), and every peer
        given a weight above 0 has its Service (ServiceNotFound) with a ready address in its
        EndpointSlices (PeerUnreachable): a peer gets traffic only when its backend resolves.
        With an ``index`` (:meth:`backend_index`) the Services are checked against it; with
        ``listed`` (:meth:`snapshot`) the write is computed from the listed route first (its
        resourceVersion guards it: a route that moved since answers 409 and is read again).
        """
        wanted = validate_weights(desired, maximum=MAX_WEIGHT)
        backends = self.backends(route)
        current = self._object(route, listed)
        managed_rule_weights(current, backends=backends)  # RouteNotFound, LocalBackendMissing first
        self._require_service(backends.local_service, index)
        for region, weight in wanted.items():
            if weight > 0 and region != self.region:
                self._require_peer_backend(region=region, name=backends.service_of(region), index=index)
        return self._write(route=route, desired=wanted, drop_unlisted=False, first=current)

    def restore(self, *, route: str, recorded: Weights, listed: Listed | None = None) -> RouteWeights:
        """Back to the recorded weights; peer backendRefs added since are removed."""
        wanted = validate_weights(recorded, maximum=MAX_WEIGHT)
        return self._write(route=route, desired=wanted, drop_unlisted=True,
                           first=None if listed is None else self._object(route, listed))

    # ------------------------------------------------------------------ checks

    def verify(self, *, route: str, desired: Weights, listed: Listed | None = None) -> Verification:
        """Whether every rule carries the weights and every parent Gateway accepted this generation."""
        obj = self._object(route, listed)
        backends = self.backends(route)
        generation = int(obj["metadata"].get("generation") or 0)
        for weights in managed_rule_weights(obj, backends=backends):
            expected = {r: w for r, w in desired.items() if w > 0 or r in weights}
            if {r: weights.get(r, 0) for r in expected} != expected:
                return Verification(False, "Mismatch", f"{KIND} {route} carries {weights}, not {dict(desired)}")
        parents = (obj.get("status") or {}).get("parents") or []
        if not parents:
            return Verification(
                None,
                "Unreported",
                f"{KIND} {route} generation {generation} carries the weights, but no gateway controller"
                " reports on its parents: nothing confirms they are served",
            )
        for parent in parents:
            ref = parent.get("parentRef") or {}
            who = f"parent {ref.get('namespace', self.namespace)}/{ref.get('name')} ({parent.get('controllerName')})"
            conditions = {c.get("type"): c for c in parent.get("conditions") or []}
            accepted = conditions.get("Accepted")
            if accepted is None or int(accepted.get("observedGeneration") or 0) < generation:
                return Verification(False, "Pending", f"{who} has not yet seen generation {generation}")
            if accepted.get("status") != "True":
                return Verification(False, "NotAccepted", f"{who}: {accepted.get('reason')}: {accepted.get('message')}")
            resolved = conditions.get("ResolvedRefs")
            if resolved is not None and resolved.get("status") == "False":
                return Verification(
                    False, "RefsNotResolved", f"{who}: {resolved.get('reason')}: {resolved.get('message')}"
                )
        return Verification(True, "Accepted", f"every parent accepted generation {generation} of {KIND} {route}")

    def drift(self, *, route: str, last_written: Weights) -> Drift | None:
        """A rule whose managed weights differ from ``last_written``, with who wrote it when known.

        A re-apply of the user's manifest shows as an Apply (or ``kubectl apply``) owning
        ``spec.rules`` now, or as weights equal to those of the manifest ``kubectl apply``
        recorded in the last-applied annotation (client-side appliers under other names).
        """
        obj = self._get(route)
        backends = self.backends(route)
        expected = dict(last_written)
        for weights in managed_rule_weights(obj, backends=backends):
            actual = {r: weights.get(r, 0) for r in expected}
            if actual == expected:
                continue
            writer, reapplied = last_foreign_writer(obj, path=("f:spec", "f:rules"))
            manifest = last_applied(obj)
            if manifest is not None and not reapplied:
                try:
                    recorded = managed_rule_weights({**manifest, "metadata": obj["metadata"]}, backends=backends)
                except (LocalBackendMissing, WeightUnparsable):
                    recorded = []
                reapplied = weights in recorded
            return Drift(kind=KIND, name=route, expected=expected, actual=actual, writer=writer, reapplied=reapplied)
        return None
