"""A region's traffic objects for the traffic providers' tests: installed, and read back.

The manifests are :mod:`regionshift.local.sample_traffic`'s (the drill installs the same
ones): a participating Deployment ``web`` and its Service ``web``, an HTTPRoute ``web``, an
Ingress ``web`` and a DNSEndpoint ``web`` with this region's weighted record, so a
RegionFailover whose ``spec.traffic`` lists GatewayAPI ``[web]``, IngressNginx ``[web]`` and
ExternalDNS ``[web]`` works on them. :func:`install_traffic` creates them in one region,
:class:`RegionTraffic` reads them back.

No gateway, ingress controller or external-dns runs in the local regions: nothing reports
on these objects, so the providers' verification answers "Unreported" unless a test writes
the controller's status itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from regionshift.local.sample_traffic import (
    APP,
    DNS_GROUP,
    DNS_WEIGHT,
    GATEWAY_GROUP,
    HOST,
    PARTICIPANT_LABELS,
    PORT,
    ROUTE_WEIGHT,
    deployment,
    dns_endpoint,
    http_route,
    ingress,
    service,
)
from tests.support.cluster import Kube

__all__ = [
    "APP",
    "DNS_WEIGHT",
    "DNS_GROUP",
    "GATEWAY_GROUP",
    "HOST",
    "PARTICIPANT_LABELS",
    "PORT",
    "ROUTE_WEIGHT",
    "RegionTraffic",
    "deployment",
    "dns_endpoint",
    "exists",
    "http_route",
    "ingress",
    "install_traffic",
    "service",
]

@dataclass(frozen=True)
class RegionTraffic:
    """The names of one region's traffic objects, and readers for them."""

    kube: Kube
    region: str
    name: str = APP

    def http_route(self) -> dict[str, Any] | None:
        """The HTTPRoute as the API server has it, or None."""
        return self._custom(GATEWAY_GROUP, "v1", "httproutes", self.name)

    def dns_endpoint(self) -> dict[str, Any] | None:
        """The DNSEndpoint as the API server has it, or None."""
        return self._custom(DNS_GROUP, "v1alpha1", "dnsendpoints", self.name)

    def ingress(self, name: str | None = None) -> dict[str, Any] | None:
        """The Ingress ``name`` (default: the user's), or None; the canary is ``web-regionshift``."""
        try:
            found = client.NetworkingV1Api(self.kube.api).read_namespaced_ingress(name or self.name, self.kube.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self.kube.api.sanitize_for_serialization(found)  # type: ignore[no-any-return]

    def route_weights(self) -> dict[str, int]:
        """Backend Service -> weight in the HTTPRoute's first rule (absent weight: 1)."""
        route = self.http_route() or {}
        refs = (route.get("spec") or {}).get("rules", [{}])[0].get("backendRefs") or []
        return {ref["name"]: int(ref.get("weight", 1)) for ref in refs}

    def dns_weight(self) -> str | None:
        """This region's ``aws/weight`` as written (a string), or None."""
        for endpoint in ((self.dns_endpoint() or {}).get("spec") or {}).get("endpoints") or []:
            if endpoint.get("setIdentifier") == self.region:
                for prop in endpoint.get("providerSpecific") or []:
                    if prop.get("name") == "aws/weight":
                        return str(prop.get("value"))
        return None

    def missing(self) -> list[str]:
        """Which of the user's objects do not exist (``[]`` when all do)."""
        checks = {
            "Deployment": self.kube.deployment(self.name) is not None,
            "Service": exists(lambda: self.kube.core.read_namespaced_service(self.name, self.kube.namespace)),
            "HTTPRoute": self.http_route() is not None,
            "Ingress": self.ingress() is not None,
            "DNSEndpoint": self.dns_endpoint() is not None,
        }
        return [kind for kind, present in checks.items() if not present]

    def _custom(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return self.kube.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
                group, version, self.kube.namespace, plural, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise


def install_traffic(kube: Kube, *, region: str, replicas: int, dns_target: str = "127.0.0.1",
                    route_weight: int | None = ROUTE_WEIGHT, dns_weight: int | str = DNS_WEIGHT,
                    name: str = APP) -> RegionTraffic:
    """Create one region's Deployment, Service, HTTPRoute, Ingress and DNSEndpoint (the CRDs must be installed)."""
    kube.apply(deployment(name, replicas=replicas))
    kube.apply(service(name))
    kube.apply(ingress(name))
    kube.custom.create_namespaced_custom_object(GATEWAY_GROUP, "v1", kube.namespace, "httproutes",
                                                http_route(name, weight=route_weight))
    kube.custom.create_namespaced_custom_object(DNS_GROUP, "v1alpha1", kube.namespace, "dnsendpoints",
                                                dns_endpoint(name, region=region, target=dns_target, weight=dns_weight))
    return RegionTraffic(kube=kube, region=region, name=name)


def exists(read: Callable[[], object]) -> bool:
    """Whether ``read()`` finds its object (False on 404; any other refusal raises)."""
    try:
        read()
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
