"""The Services that reach peer regions: selector-less, with EndpointSlices to their gateways.

A route sends a share of its traffic to a peer region through an ordinary Service whose
endpoints regionshift writes itself: the Service has no selector, and one EndpointSlice
per peer lists that peer's gateway address (``Peer.gatewayAddress``, host:port). An
ExternalName Service would be simpler and is deliberately not used: Gateway API
implementations SHOULD NOT support it (CVE-2021-25740), and it cannot carry a port.

:func:`ensure_peer_service` is idempotent: it creates what is missing, rewrites what
differs, deletes the EndpointSlices of peers no longer listed, and writes nothing when all
is as it should be. The objects carry the managed-by label and, when given, an owner
reference to the RegionFailover, so deleting it removes them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from regionshift.errors import PeerUnreachable
from .base import FIELD_MANAGER, MANAGED_BY_LABEL

__all__ = ["PEER_LABEL", "GatewayAddress", "endpoint_slice_for", "ensure_peer_service", "parse_gateway_address"]

PEER_LABEL = "regionshift.io/peer"
SLICE_MANAGER = "regionshift.io"
"""endpointslice.kubernetes.io/managed-by: tells kube-controller-manager these slices are not its own."""

_HOST_PORT = re.compile(r"^(\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?)):(?P<port>[0-9]{1,5})$")


@dataclass(frozen=True)
class GatewayAddress:
    """A peer's gateway: an IP address or a DNS name, and a port."""

    host: str
    port: int
    address_type: str
    """IPv4, IPv6 or FQDN, as an EndpointSlice calls it."""


def parse_gateway_address(text: str) -> GatewayAddress:
    """``10.0.0.7:443``, ``[fd00::7]:443`` or ``gw.us-west.example.com:443``; PeerUnreachable otherwise."""
    match = _HOST_PORT.match(text)
    if not match or not 1 <= int(match.group("port")) <= 65535:
        raise PeerUnreachable(f"gateway address {text!r} is not host:port")
    port = int(match.group("port"))
    host = match.group("v6") or match.group("host")
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and (ip.is_loopback or ip.is_unspecified or ip.is_link_local):
        # the API server refuses these in an EndpointSlice (422): say so before any write
        raise PeerUnreachable(f"gateway address {text!r} is a loopback, unspecified or link-local address,"
                              " which an EndpointSlice may not carry")
    if isinstance(ip, ipaddress.IPv6Address):
        return GatewayAddress(host=str(ip), port=port, address_type="IPv6")
    if isinstance(ip, ipaddress.IPv4Address):
        return GatewayAddress(host=str(ip), port=port, address_type="IPv4")
    if "." not in host:
        raise PeerUnreachable(f"gateway address {text!r}: an EndpointSlice's FQDN needs at least two labels")
    return GatewayAddress(host=host.lower(), port=port, address_type="FQDN")


def _meta(*, name: str, namespace: str, labels: dict[str, str], owner: Mapping[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [dict(owner)]
    return meta


def service_for(
    *, namespace: str, service: str, port: int, owner: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The selector-less Service (pure)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name=service, namespace=namespace, labels={MANAGED_BY_LABEL: FIELD_MANAGER}, owner=owner),
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    }


def endpoint_slice_for(
    *, namespace: str, service: str, region: str, gateway: GatewayAddress, owner: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The EndpointSlice pointing the Service at one peer's gateway (pure)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(
            name=f"{service}-{region}"[:253],
            namespace=namespace,
            labels={
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
                MANAGED_BY_LABEL: FIELD_MANAGER,
                PEER_LABEL: region,
            },
            owner=owner,
        ),
        "addressType": gateway.address_type,
        "endpoints": [{"addresses": [gateway.host], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": gateway.port, "protocol": "TCP"}],
    }


def ensure_peer_service(
    *,
    api: client.ApiClient,
    namespace: str,
    service: str,
    gateways: Mapping[str, str],
    port: int,
    owner: Mapping[str, Any] | None = None,
) -> bool:
    """Make ``service`` reach the gateways of the given peers (region -> host:port).

    Returns True when something was written. Never touches a Service of the same name that
    regionshift did not create (PeerUnreachable: the name is taken).
    """
    parsed = {region: parse_gateway_address(address) for region, address in gateways.items()}
    core = client.CoreV1Api(api)
    discovery = client.DiscoveryV1Api(api)
    wrote = False
    want = service_for(namespace=namespace, service=service, port=port, owner=owner)
    try:
        current = core.read_namespaced_service(service, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_service(namespace, want, field_manager=FIELD_MANAGER)
        wrote = True
    else:
        if (current.metadata.labels or {}).get(MANAGED_BY_LABEL) != FIELD_MANAGER:
            raise PeerUnreachable(
                f"Service {namespace}/{service} exists and is not managed by regionshift", kind="Service", name=service
            )
        if current.spec.selector or [(p.name, p.port) for p in current.spec.ports or []] != [("http", port)]:
            core.patch_namespaced_service(
                service, namespace, {"spec": {"selector": None, "ports": want["spec"]["ports"]}},
                field_manager=FIELD_MANAGER,
            )
            wrote = True
    existing = {
        s.metadata.name: api.sanitize_for_serialization(s)
        for s in discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service},{MANAGED_BY_LABEL}={FIELD_MANAGER}"
        ).items
    }
    for region, gateway in parsed.items():
        body = endpoint_slice_for(namespace=namespace, service=service, region=region, gateway=gateway, owner=owner)
        name = body["metadata"]["name"]
        have = existing.pop(name, None)
        if have is None:
            discovery.create_namespaced_endpoint_slice(namespace, body, field_manager=FIELD_MANAGER)
            wrote = True
        elif any(have.get(k) != body[k] for k in ("addressType", "endpoints", "ports")):
            body["metadata"]["resourceVersion"] = have["metadata"]["resourceVersion"]
            discovery.replace_namespaced_endpoint_slice(name, namespace, body, field_manager=FIELD_MANAGER)
            wrote = True
    for stale in existing:
        discovery.delete_namespaced_endpoint_slice(stale, namespace)
        wrote = True
    return wrote
