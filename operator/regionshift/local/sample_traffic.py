"""A service's traffic objects, written the way a user writes them in each region.

What a service owner has in each region before regionshift touches anything, and what the
drill installs for each sample service and the tests for theirs: a participating Deployment
and its Service; an HTTPRoute whose one rule sends everything to the local Service; an
Ingress for ingress-nginx; a DNSEndpoint holding this region's own weighted record. They
follow what the providers in :mod:`regionshift.adapters.traffic` expect:

* Gateway API: the local Service has the route's name; the Services reaching peers are
  ``<name>-<peer>`` (selector-less, created by the provider with an EndpointSlice to the
  peer's ``gatewayAddress``); the backendRef's weight is spelled out, group and kind are
  left to their defaults as users write them.
* ingress-nginx: the user's Ingress is never edited; the provider writes a canary.
* external-dns: each region's cluster holds only its own record (``setIdentifier`` = the
  region, ``aws/weight`` a string integer in 0..255); the peers' records live in theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APP",
    "DNS_GROUP",
    "DNS_WEIGHT",
    "GATEWAY_GROUP",
    "HOST",
    "PARTICIPANT_LABELS",
    "PORT",
    "ROUTE_WEIGHT",
    "deployment",
    "dns_endpoint",
    "http_route",
    "ingress",
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


def deployment(name: str = APP, *, replicas: int, labels: Mapping[str, str] = PARTICIPANT_LABELS,
               pod_annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A participating Deployment: its pods carry ``app: <name>``, the Deployment the participant label.

    ``pod_annotations`` go on the pod template, e.g. the local cluster's
    ``regionshift.io/simulated-start`` for pods that take a while to start.
    """
    template_metadata: dict[str, Any] = {"labels": {"app": name}}
    if pod_annotations:
        template_metadata["annotations"] = dict(pod_annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, **labels}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": template_metadata,
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
