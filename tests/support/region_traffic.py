"""A region's traffic objects, written the way a user writes them, for the traffic providers.

What a service owner has in each region before regionshift touches anything: a
participating Deployment ``web`` and its Service ``web``; an HTTPRoute ``web`` whose one rule
sends everything to the local Service; an Ingress ``web`` for ingress-nginx; a DNSEndpoint
``web`` holding this region's own weighted record. They follow what the providers in
``regionshift.adapters.traffic`` expect, so a RegionFailover whose ``spec.traffic`` lists
GatewayAPI ``[web]``, IngressNginx ``[web]`` and ExternalDNS ``[web]`` works on them:

* Gateway API: the local Service has the route's name; the Services reaching peers are
  ``web-<peer>`` (selector-less, created by the provider with an EndpointSlice to the
  peer's ``gatewayAddress``); the backendRef's weight is spelled out (100), group and kind
  are left to their defaults as users write them.
* ingress-nginx: the user's Ingress is never edited; the provider writes the canary
  ``web-regionshift`` and its Service ``web-peers``.
* external-dns: each region's cluster holds only its own record (``setIdentifier`` = the
  region, ``aws/weight`` a string integer in 0..255); the peers' records live in theirs.

No gateway, ingress controller or external-dns runs in the local regions: nothing reports
on these objects, so the providers' verification answers "Unreported" unless a test writes
the controller's status itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from tests.support.cluster import Kube

__all__ = [
    "APP",
    "DNS_WEIGHT",
    "HOST",
    "PARTICIPANT_LABELS",
    "ROUTE_WEIGHT",
    "RegionTraffic",
    "deployment",
    "dns_endpoint",
    "http_route",
    "ingress",
    "install_traffic",
    "service",
]

APP = "web"
"""Name of the Deployment, its Service and every route."""
HOST = "web.example.test"
"""The host users reach the service at, in every region (and the weighted DNS record's name)."""
PARTICIPANT_LABELS: Mapping[str, str] = {"regionshift.io/participant": "true"}
"""The label a RegionFailover's selector picks participating Deployments by."""
ROUTE_WEIGHT = 100
"""The local backendRef's weight as the user wrote it."""
DNS_WEIGHT = 100
"""This region's weighted record as the user wrote it (Route 53 takes 0..255)."""
PORT = 80

GATEWAY_GROUP = "gateway.networking.k8s.io"
DNS_GROUP = "externaldns.k8s.io"


def deployment(name: str = APP, *, replicas: int, labels: Mapping[str, str] = PARTICIPANT_LABELS) -> dict[str, Any]:
    """A participating Deployment: its pods carry ``app: <name>``, the Deployment the participant label."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, **labels}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1",
                                         "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
        },
    }


def service(name: str = APP) -> dict[str, Any]:
    """The Deployment's Service (port 80 to the pods' ``http`` port)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": PORT, "targetPort": "http"}]},
    }


def http_route(name: str = APP, *, weight: int | None = ROUTE_WEIGHT, host: str = HOST) -> dict[str, Any]:
    """An HTTPRoute with one rule to the local Service (``weight=None`` leaves the API default 1)."""
    ref: dict[str, Any] = {"name": name, "port": PORT}
    if weight is not None:
        ref["weight"] = weight
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "hostnames": [host],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [ref]}],
        },
    }


def ingress(name: str = APP, *, host: str = HOST) -> dict[str, Any]:
    """The user's Ingress for ingress-nginx: ``host`` and ``/`` to the local Service."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": name, "port": {"number": PORT}}}},
            ]}}],
        },
    }


def dns_endpoint(name: str = APP, *, region: str, target: str = "127.0.0.1", weight: int | str = DNS_WEIGHT,
                 host: str = HOST) -> dict[str, Any]:
    """This region's weighted A record (``weight`` may be a string, to write a bad one)."""
    return {
        "apiVersion": f"{DNS_GROUP}/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {"name": name},
        "spec": {"endpoints": [{
            "dnsName": host,
            "recordType": "A",
            "recordTTL": 30,
            "targets": [target],
            "setIdentifier": region,
            "providerSpecific": [{"name": "aws/weight", "value": str(weight)}],
        }]},
    }


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
            "Service": _exists(lambda: self.kube.core.read_namespaced_service(self.name, self.kube.namespace)),
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


def _exists(read: Callable[[], object]) -> bool:
    try:
        read()
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
