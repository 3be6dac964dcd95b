"""The one place that maps a ``TrafficProviderKind`` to its provider class."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client

from regionshift.api.models import TrafficProviderKind
from .base import Backends, TrafficProvider, conventional_backends
from .externaldns import ExternalDNSProvider
from .gatewayapi import GatewayAPIProvider
from .ingress_nginx import IngressNginxProvider

__all__ = ["provider_for"]


def provider_for(
    kind: TrafficProviderKind | str,
    *,
    api: client.ApiClient,
    namespace: str,
    region: str,
    peers: Mapping[str, str | None],
    owner: Mapping[str, Any] | None = None,
    backends: Callable[[str], Backends] | None = None,
) -> TrafficProvider:
    """The provider for one kind, for the routes of one RegionFailover.

    ``peers`` maps each peer region to its gateway address (host:port, or None when it has
    none); ``owner`` is the owner reference of the RegionFailover, set on what a provider
    creates; ``backends`` names the Services of a route (default: the naming convention of
    :func:`~.base.conventional_backends`).
    """
    kind = TrafficProviderKind(kind)
    names = backends or conventional_backends(region=region, peers=sorted(peers))
    if kind is TrafficProviderKind.GATEWAY_API:
        return GatewayAPIProvider(api=api, namespace=namespace, region=region, backends=names)
    if kind is TrafficProviderKind.INGRESS_NGINX:
        return IngressNginxProvider(
            api=api, namespace=namespace, region=region, gateways=peers, owner=owner,
        )
    if kind is TrafficProviderKind.EXTERNAL_DNS:
        return ExternalDNSProvider(api=api, namespace=namespace, region=region)
    raise ValueError(f"no traffic provider for {kind}")  # pragma: no cover - the enum is exhaustive
