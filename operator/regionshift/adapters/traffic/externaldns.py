"""external-dns provider: this region's own weighted record in a DNSEndpoint.

Each region owns its own weighted record, and each region's operator writes only that: in
the DNSEndpoint named in the spec (``externaldns.k8s.io/v1alpha1``, in this region's
cluster) every endpoint whose ``setIdentifier`` is this region's name carries its weight as
``providerSpecific: [{name: aws/weight, value: "N"}]``. The peers' records live in their own
clusters and are theirs to change; the weights of other regions in ``desired`` are ignored
here. A region whose control plane is gone loses its share through the saviors raising
theirs (and the DNS provider's health check).

The weight is validated, never guessed: a missing or unparsable ``aws/weight`` is a
:class:`~regionshift.errors.WeightUnparsable` (the AWS provider of external-dns silently
reads it as 0, which would look like an evacuated region). Route 53 takes 0..255.

Writes are a JSON patch guarded by the resourceVersion (``spec.endpoints`` is an atomic
list): indices are safe because the patch sets the resourceVersion it was computed from. Verification reads
``status.observedGeneration``: external-dns sets it when its source has read that
generation, which is not yet the DNS provider having applied it; without it,
``holds=None`` ("Unreported").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

from regionshift.api.models import TrafficProviderKind
from regionshift.errors import InvalidWeights, LocalBackendMissing, WeightUnparsable
from .base import (
    FIELD_MANAGER,
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
)

__all__ = ["GROUP", "MAX_WEIGHT", "WEIGHT_PROPERTY", "ExternalDNSProvider", "parse_dns_weight", "region_weight", "weight_patch"]

GROUP = "externaldns.k8s.io"
VERSION = "v1alpha1"
PLURAL = "dnsendpoints"
KIND = "DNSEndpoint"
WEIGHT_PROPERTY = "aws/weight"
MAX_WEIGHT = 255
"""Route 53's range for a weighted record."""


def parse_dns_weight(endpoint: Mapping[str, Any], *, where: str) -> int:
    """The ``aws/weight`` of one endpoint; missing, repeated, unparsable or out of range is an error."""
    values = [p.get("value") for p in endpoint.get("providerSpecific") or [] if p.get("name") == WEIGHT_PROPERTY]
    if not values:
        raise WeightUnparsable(f"{where}: no {WEIGHT_PROPERTY} (external-dns would read it as 0)", kind=KIND)
    if len(values) > 1:
        raise WeightUnparsable(f"{where}: {WEIGHT_PROPERTY} given {len(values)} times", kind=KIND)
    raw = values[0]
    text = raw.strip() if isinstance(raw, str) else ""
    if not text.isascii() or not text.isdigit():
        raise WeightUnparsable(f"{where}: {WEIGHT_PROPERTY} {raw!r} is not an integer", kind=KIND)
    weight = int(text)
    if weight > MAX_WEIGHT:
        raise WeightUnparsable(f"{where}: {WEIGHT_PROPERTY} {weight} is outside 0..{MAX_WEIGHT}", kind=KIND)
    return weight


def _own_endpoints(obj: Mapping[str, Any], *, region: str) -> list[int]:
    endpoints = (obj.get("spec") or {}).get("endpoints") or []
    own = [i for i, e in enumerate(endpoints) if e.get("setIdentifier") == region]
    if not own:
        name = obj["metadata"]["name"]
        raise LocalBackendMissing(
            f"{KIND} {obj['metadata'].get('namespace')}/{name} has no record with setIdentifier {region!r}",
            kind=KIND,
            name=name,
        )
    return own


def region_weight(obj: Mapping[str, Any], *, region: str) -> int:
    """The weight of this region's records (all of them must agree, e.g. its A and AAAA records)."""
    endpoints = obj["spec"]["endpoints"]
    name = f"{KIND} {obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
    weights = {
        parse_dns_weight(endpoints[i], where=f"{name} endpoints[{i}] ({endpoints[i].get('dnsName')})")
        for i in _own_endpoints(obj, region=region)
    }
    if len(weights) > 1:
        raise WeightUnparsable(f"{name}: the records of {region} disagree on {WEIGHT_PROPERTY}: {sorted(weights)}", kind=KIND)
    return weights.pop()


def weight_patch(obj: Mapping[str, Any], *, region: str, weight: int) -> list[dict[str, Any]]:
    """The JSON patch setting this region's ``aws/weight`` (pure); [] when every record has it already."""
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
        raise InvalidWeights(f"DNS weight {weight!r} is not an integer in 0..{MAX_WEIGHT}", kind=KIND)
    endpoints = obj["spec"]["endpoints"]
    ops: list[dict[str, Any]] = []
    for i in _own_endpoints(obj, region=region):
        path = f"/spec/endpoints/{i}"
        properties = endpoints[i].get("providerSpecific") or []
        at = [j for j, p in enumerate(properties) if p.get("name") == WEIGHT_PROPERTY]
        if at and properties[at[0]].get("value") == str(weight) and len(at) == 1:
            continue
        rest = [p for p in properties if p.get("name") != WEIGHT_PROPERTY]
        where = at[0] if at else len(rest)
        replaced = [*rest[:where], {"name": WEIGHT_PROPERTY, "value": str(weight)}, *rest[where:]]
        ops.append({"op": "add", "path": f"{path}/providerSpecific", "value": replaced})
    if not ops:
        return []
    return [{"op": "replace", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]}, *ops]


class ExternalDNSProvider(CustomObjectRoutes, TrafficProvider):
    """This region's weighted records in the DNSEndpoints of one namespace."""

    kind = TrafficProviderKind.EXTERNAL_DNS
    object_kind = KIND
    group, version, plural = GROUP, VERSION, PLURAL
    max_weight = MAX_WEIGHT

    def __init__(self, *, api: client.ApiClient, namespace: str, region: str) -> None:
        super().__init__(api=api, namespace=namespace, region=region)
        self._custom = client.CustomObjectsApi(api)

    def _weights(self, obj: Mapping[str, Any], *, written: bool = False) -> RouteWeights:
        return RouteWeights(
            kind=KIND,
            name=obj["metadata"]["name"],
            weights={self.region: region_weight(obj, region=self.region)},
            generation=int(obj["metadata"].get("generation") or 0),
            resource_version=obj["metadata"]["resourceVersion"],
            written=written,
        )

    def _own(self, desired: Weights) -> int:
        if self.region not in desired:
            raise InvalidWeights(f"no weight for this region ({self.region}) in {dict(desired)}", kind=KIND)
        return desired[self.region]

    def read(self, *, route: str, listed: Listed | None = None) -> RouteWeights:
        """``{region: weight}`` of this region's record."""
        return self._weights(self._object(route, listed))

    def apply(self, *, route: str, desired: Weights, listed: Listed | None = None) -> RouteWeights:
        """Set this region's record to its desired weight (the other regions' keys are theirs).

        With ``listed`` the write is computed from the listed record first, guarded by its
        resourceVersion (a record that moved since is read again).
        """
        weight = self._own(desired)
        current = self._object(route, listed)
        weight_patch(current, region=self.region, weight=weight)  # every error before any write

        def write(current: dict[str, Any]) -> RouteWeights:
            patch = weight_patch(current, region=self.region, weight=weight)
            if not patch:
                return self._weights(current)
            updated = self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, route, patch,
                field_manager=FIELD_MANAGER, _content_type="application/json-patch+json",
            )
            return self._weights(updated, written=True)

        return guarded_write(read=lambda: self._get(route), write=write, kind=KIND, name=route, first=current)

    def restore(self, *, route: str, recorded: Weights, listed: Listed | None = None) -> RouteWeights:
        """Back to the recorded weight of this region's record."""
        return self.apply(route=route, desired=recorded, listed=listed)

    def verify(self, *, route: str, desired: Weights, listed: Listed | None = None) -> Verification:
        """The record carries the weight and external-dns's source has read this generation."""
        obj = self._object(route, listed)
        weight = self._own(desired)
        now = region_weight(obj, region=self.region)
        if now != weight:
            return Verification(False, "Mismatch", f"{KIND} {route} carries {now} for {self.region}, not {weight}")
        generation = int(obj["metadata"].get("generation") or 0)
        observed = (obj.get("status") or {}).get("observedGeneration")
        if observed is None:
            return Verification(
                None, "Unreported", f"{KIND} {route} carries {weight}, but no external-dns reports on it"
            )
        if int(observed) < generation:
            return Verification(False, "Pending", f"external-dns has read generation {observed}, not yet {generation}")
        return Verification(
            True,
            "ObservedBySource",
            f"external-dns read generation {generation} of {KIND} {route}"
            " (its source has it; the DNS provider applies it on its next sync)",
        )

    def drift(self, *, route: str, last_written: Weights) -> Drift | None:
        """This region's weight differs from what regionshift last wrote."""
        obj = self._get(route)
        expected = self._own(last_written)
        actual = region_weight(obj, region=self.region)
        if actual == expected:
            return None
        writer, applied = last_foreign_writer(obj, path=("f:spec", "f:endpoints"))
        manifest = last_applied(obj)
        if manifest is not None and not applied:
            try:
                applied = region_weight(manifest | {"metadata": obj["metadata"]}, region=self.region) == actual
            except (LocalBackendMissing, WeightUnparsable, KeyError):
                applied = False
        return Drift(
            kind=KIND, name=route, expected={self.region: expected}, actual={self.region: actual},
            writer=writer, reapplied=applied,
        )
