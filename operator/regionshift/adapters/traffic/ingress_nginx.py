"""ingress-nginx provider: a canary Ingress, owned by the RegionFailover, that sends a share to the peers.

ingress-nginx splits one host and path between a main Ingress and at most one canary
Ingress (``nginx.ingress.kubernetes.io/canary: "true"``) by ``canary-weight`` out of
``canary-weight-total``. regionshift never edits the user's Ingress (the route named in
the spec): it writes a separate canary Ingress ``<route>-regionshift`` with the same
hosts and paths, whose every backend is one selector-less Service ``<route>-peers``
(:mod:`.peers`) listing the gateways of the peers that get traffic. The canary carries an
owner reference to the RegionFailover, so deleting that removes it.

A canary can split traffic in two only: this region and "the peers". Desired weights
``{region: int}`` are projected onto that split: ``canary-weight`` is the peers' share of
the sum, scaled to ``canary-weight-total`` (100), and the peers with a non-zero weight
share the canary's traffic evenly (ingress-nginx balances between the Service's endpoints;
a finer split between saviors needs the Gateway API provider). Read weights come back as
``{region: total - canary, "peers": canary}``. No canary at all reads as ``canary 0``;
restoring a recorded canary share of 0 deletes the canary.

If another canary Ingress (not this one) already serves one of the same host and path
pairs, ingress-nginx would honour only one of them: :class:`~regionshift.errors.ForeignCanary`
and nothing is written. ingress-nginx reports nothing per generation on an Ingress: verify
compares the annotations and says "Unreported" unless a controller has published an
address for the canary, which is all it tells.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from regionshift.api.models import TrafficProviderKind
from regionshift.errors import ForeignCanary, InvalidWeights, PeerUnreachable, RouteNotFound, WeightUnparsable
from .base import (
    FIELD_MANAGER,
    MANAGED_BY_LABEL,
    Drift,
    Listed,
    RouteWeights,
    TrafficProvider,
    Verification,
    Weights,
    guarded_write,
    last_foreign_writer,
    listed_object,
    peer_service_name,
    validate_weights,
)
from .peers import ensure_peer_service

__all__ = [
    "CANARY",
    "CANARY_WEIGHT",
    "CANARY_WEIGHT_TOTAL",
    "DEFAULT_TOTAL",
    "PEERS",
    "IngressNginxProvider",
    "canary_ingress",
    "canary_name",
    "canary_service_name",
    "canary_weight",
    "host_paths",
    "parse_canary_weight",
]

CANARY = "nginx.ingress.kubernetes.io/canary"
CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
CANARY_WEIGHT_TOTAL = "nginx.ingress.kubernetes.io/canary-weight-total"
DEFAULT_TOTAL = 100
PEERS = "peers"
"""The key of the peers' share in the weights this provider reads back."""
KIND = "Ingress"
SERVICE_PORT = 80


def canary_name(route: str) -> str:
    """The canary Ingress regionshift owns for a user's Ingress."""
    return peer_service_name(local_service=route, region="regionshift")


def canary_service_name(route: str) -> str:
    """The selector-less Service the canary sends to (the peers' gateways)."""
    return peer_service_name(local_service=route, region="peers")


def canary_weight(desired: Weights, *, region: str, total: int = DEFAULT_TOTAL) -> int:
    """The peers' share of the desired weights, scaled to ``total`` (pure)."""
    whole = sum(desired.values())
    if whole <= 0:
        raise InvalidWeights("every weight is 0: no region would serve")
    peers = whole - desired.get(region, 0)
    return round(total * peers / whole)


def parse_canary_weight(annotations: Mapping[str, str] | None, *, where: str) -> tuple[int, int]:
    """(canary-weight, canary-weight-total) from a canary's annotations; missing or bad is an error, never 0."""
    annotations = annotations or {}
    raw_total = annotations.get(CANARY_WEIGHT_TOTAL, str(DEFAULT_TOTAL))
    try:
        total = int(raw_total.strip())
    except (AttributeError, ValueError):
        raise WeightUnparsable(f"{where}: {CANARY_WEIGHT_TOTAL} {raw_total!r} is not an integer", kind=KIND) from None
    if total < 1:
        raise WeightUnparsable(f"{where}: {CANARY_WEIGHT_TOTAL} {total} is not positive", kind=KIND)
    raw = annotations.get(CANARY_WEIGHT)
    if raw is None:
        raise WeightUnparsable(f"{where}: no {CANARY_WEIGHT} annotation", kind=KIND)
    try:
        weight = int(raw.strip())
    except (AttributeError, ValueError):
        raise WeightUnparsable(f"{where}: {CANARY_WEIGHT} {raw!r} is not an integer", kind=KIND) from None
    if not 0 <= weight <= total:
        raise WeightUnparsable(f"{where}: {CANARY_WEIGHT} {weight} is outside 0..{total}", kind=KIND)
    return weight, total


def host_paths(ingress: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Every (host, path) an Ingress serves; an absent host is "" and an absent path "/"."""
    return {
        (rule.get("host") or "", path.get("path") or "/")
        for rule in (ingress.get("spec") or {}).get("rules") or []
        for path in ((rule.get("http") or {}).get("paths") or [])
    }


def canary_ingress(
    primary: Mapping[str, Any], *, weight: int, total: int, owner: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The canary Ingress for a user's Ingress (pure): same hosts and paths, every backend the peers' Service."""
    route = primary["metadata"]["name"]
    backend = {"service": {"name": canary_service_name(route), "port": {"number": SERVICE_PORT}}}
    rules = [
        {
            **({"host": rule["host"]} if rule.get("host") else {}),
            "http": {
                "paths": [
                    {"path": p.get("path") or "/", "pathType": p.get("pathType") or "Prefix", "backend": backend}
                    for p in (rule.get("http") or {}).get("paths") or []
                ]
            },
        }
        for rule in (primary.get("spec") or {}).get("rules") or []
        if (rule.get("http") or {}).get("paths")
    ]
    metadata: dict[str, Any] = {
        "name": canary_name(route),
        "namespace": primary["metadata"]["namespace"],
        "labels": {MANAGED_BY_LABEL: FIELD_MANAGER, "regionshift.io/canary-for": route},
        "annotations": {CANARY: "true", CANARY_WEIGHT: str(weight), CANARY_WEIGHT_TOTAL: str(total)},
    }
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    spec: dict[str, Any] = {"rules": rules}
    if (primary.get("spec") or {}).get("ingressClassName"):
        spec["ingressClassName"] = primary["spec"]["ingressClassName"]
    return {"apiVersion": "networking.k8s.io/v1", "kind": KIND, "metadata": metadata, "spec": spec}


class IngressNginxProvider(TrafficProvider):
    """Canary Ingresses next to the user's Ingresses in one namespace."""

    kind = TrafficProviderKind.INGRESS_NGINX
    object_kind = KIND
    max_weight = 1_000_000

    def __init__(
        self,
        *,
        api: client.ApiClient,
        namespace: str,
        region: str,
        gateways: Mapping[str, str | None],
        owner: Mapping[str, Any] | None = None,
        total: int = DEFAULT_TOTAL,
    ) -> None:
        super().__init__(api=api, namespace=namespace, region=region)
        self.gateways = dict(gateways)
        self.owner = owner
        self.total = total
        self._net = client.NetworkingV1Api(api)
        self._core = client.CoreV1Api(api)
        self._discovery = client.DiscoveryV1Api(api)

    # ------------------------------------------------------------------ reads

    def _ingress(self, name: str) -> dict[str, Any] | None:
        try:
            return self.api.sanitize_for_serialization(self._net.read_namespaced_ingress(name, self.namespace))  # type: ignore[no-any-return]
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _primary(self, route: str) -> dict[str, Any]:
        primary = self._ingress(route)
        if primary is None:
            raise RouteNotFound(f"{KIND} {self.namespace}/{route} does not exist", kind=KIND, name=route)
        return primary

    def _weights(self, route: str, canary: Mapping[str, Any] | None, *, written: bool = False) -> RouteWeights:
        if canary is None:
            weight, total, generation, version = 0, self.total, 0, ""
        else:
            weight, total = parse_canary_weight(
                canary["metadata"].get("annotations"), where=f"{KIND} {self.namespace}/{canary['metadata']['name']}"
            )
            generation = int(canary["metadata"].get("generation") or 0)
            version = canary["metadata"]["resourceVersion"]
        return RouteWeights(
            kind=KIND, name=route, weights={self.region: total - weight, PEERS: weight},
            generation=generation, resource_version=version, written=written,
        )

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every Ingress of the namespace by name (the primaries and the canaries), in one LIST."""
        items = self._net.list_namespaced_ingress(self.namespace).items
        return {item.metadata.name: self.api.sanitize_for_serialization(item) for item in items}

    def _canary(self, route: str, listed: Listed | None) -> dict[str, Any] | None:
        """The route's canary Ingress (None when there is none), the primary checked first."""
        if listed is None:
            self._primary(route)
            return self._ingress(canary_name(route))
        listed_object(listed, route=route, kind=KIND, namespace=self.namespace, error=RouteNotFound)
        canary = listed.get(canary_name(route))
        return None if canary is None else dict(canary)

    def read(self, *, route: str, listed: Listed | None = None) -> RouteWeights:
        """``{region: total - canary, "peers": canary}``; no canary Ingress reads as canary 0."""
        return self._weights(route, self._canary(route, listed))

    def _check_no_foreign_canary(self, primary: Mapping[str, Any]) -> None:
        route = primary["metadata"]["name"]
        ours = canary_name(route)
        served = host_paths(primary)
        for item in self._net.list_namespaced_ingress(self.namespace).items:
            other = self.api.sanitize_for_serialization(item)
            annotations = other["metadata"].get("annotations") or {}
            if other["metadata"]["name"] == ours or annotations.get(CANARY, "").strip().lower() != "true":
                continue
            shared = served & host_paths(other)
            if shared:
                host, path = sorted(shared)[0]
                raise ForeignCanary(
                    f"canary {KIND} {self.namespace}/{other['metadata']['name']} already serves"
                    f" {host or '*'}{path} of {route}: ingress-nginx honours one canary per host and path",
                    kind=KIND,
                    name=other["metadata"]["name"],
                )

    # ------------------------------------------------------------------ writes

    def _write_canary(self, *, route: str, weight: int) -> RouteWeights:
        name = canary_name(route)

        def read() -> tuple[dict[str, Any], dict[str, Any] | None]:
            return self._primary(route), self._ingress(name)

        def write(current: tuple[dict[str, Any], dict[str, Any] | None]) -> RouteWeights:
            primary, canary = current
            body = canary_ingress(primary, weight=weight, total=self.total, owner=self.owner)
            if canary is None:
                if weight == 0:
                    return self._weights(route, None)
                created = self._net.create_namespaced_ingress(self.namespace, body, field_manager=FIELD_MANAGER)
                return self._weights(route, self.api.sanitize_for_serialization(created), written=True)
            same = (
                {k: (canary["metadata"].get("annotations") or {}).get(k) for k in body["metadata"]["annotations"]}
                == body["metadata"]["annotations"]
                and canary.get("spec", {}).get("rules") == body["spec"]["rules"]
            )
            if same:
                return self._weights(route, canary)
            merged = dict(canary)
            merged["metadata"] = {
                **canary["metadata"],
                "annotations": {**(canary["metadata"].get("annotations") or {}), **body["metadata"]["annotations"]},
                "labels": {**(canary["metadata"].get("labels") or {}), **body["metadata"]["labels"]},
            }
            merged["spec"] = {**canary.get("spec", {}), **body["spec"]}
            merged.pop("status", None)
            replaced = self._net.replace_namespaced_ingress(name, self.namespace, merged, field_manager=FIELD_MANAGER)
            return self._weights(route, self.api.sanitize_for_serialization(replaced), written=True)

        return guarded_write(read=read, write=write, kind=KIND, name=name)

    def apply(self, *, route: str, desired: Weights) -> RouteWeights:
        """Write the canary (and its peers' Service) for the desired split; ForeignCanary writes nothing."""
        wanted = validate_weights(desired, maximum=self.max_weight)
        weight = canary_weight(wanted, region=self.region, total=self.total)
        primary = self._primary(route)
        self._check_no_foreign_canary(primary)
        serving = [r for r, w in wanted.items() if r != self.region and w > 0]
        missing = [r for r in serving if not self.gateways.get(r)]
        if weight > 0 and (missing or (not serving and PEERS in wanted)):
            raise PeerUnreachable(
                f"peers {missing or [PEERS]} get traffic but have no gateway address to reach them", kind=KIND, name=route
            )
        if weight > 0:
            ensure_peer_service(
                api=self.api,
                namespace=self.namespace,
                service=canary_service_name(route),
                gateways={r: self.gateways[r] for r in serving if self.gateways.get(r)},
                port=SERVICE_PORT,
                owner=self.owner,
            )
        return self._write_canary(route=route, weight=weight)

    def restore(self, *, route: str, recorded: Weights) -> RouteWeights:
        """Back to the recorded canary share; a share of 0 deletes the canary and its Service."""
        wanted = validate_weights(recorded, maximum=self.max_weight)
        weight = canary_weight(wanted, region=self.region, total=self.total)
        if weight > 0:
            return self.apply(route=route, desired=wanted)
        self._primary(route)
        for delete, name in (
            (self._net.delete_namespaced_ingress, canary_name(route)),
            (self._core.delete_namespaced_service, canary_service_name(route)),
        ):
            try:
                delete(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        self._discovery.delete_collection_namespaced_endpoint_slice(
            self.namespace,
            label_selector=f"kubernetes.io/service-name={canary_service_name(route)},{MANAGED_BY_LABEL}={FIELD_MANAGER}",
        )
        return self._weights(route, None, written=True)

    # ------------------------------------------------------------------ checks

    def verify(self, *, route: str, desired: Weights, listed: Listed | None = None) -> Verification:
        """The canary carries the desired share; confirmed only as far as a published address tells."""
        wanted = validate_weights(desired, maximum=self.max_weight)
        canary = self._canary(route, listed)
        now = self._weights(route, canary)
        expected = canary_weight(wanted, region=self.region, total=self.total)
        if now.weights[PEERS] != expected:
            return Verification(False, "Mismatch", f"canary of {route} carries {now.weights[PEERS]}, not {expected}")
        published = ((canary or {}).get("status") or {}).get("loadBalancer", {}).get("ingress")
        if canary is not None and published:
            return Verification(
                True, "AddressPublished",
                f"an ingress controller published an address for the canary of {route}"
                " (ingress-nginx reports no generation, so this is all it confirms)",
            )
        return Verification(
            None, "Unreported",
            f"the canary of {route} carries {expected}/{self.total}, but no ingress controller reports on it",
        )

    def drift(self, *, route: str, last_written: Weights) -> Drift | None:
        """The canary's share differs from what regionshift last wrote (someone edited or deleted it)."""
        expected = canary_weight(last_written, region=self.region, total=self.total)
        canary = self._ingress(canary_name(route))
        now = self._weights(route, canary)
        if now.weights[PEERS] == expected:
            return None
        writer, applied = last_foreign_writer(canary, path=("f:metadata", "f:annotations")) if canary else (None, False)
        return Drift(
            kind=KIND,
            name=canary_name(route),
            expected={self.region: self.total - expected, PEERS: expected},
            actual=now.weights,
            writer=writer,
            reapplied=applied,
        )
