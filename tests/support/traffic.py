"""Fixtures for the traffic provider tests: the third-party CRDs in the session's region.

The Gateway API standard channel and external-dns's DNSEndpoint CRDs, from their pinned Go
modules (:mod:`regionshift.local.cluster.thirdparty`), are installed into the session's
local region once, through the API, the first time a traffic test asks for them. Ingress is
built in and needs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
import pytest

from regionshift.local.cluster import LocalCluster, install_crds, third_party_crds
from tests.support.cluster import Kube, namespace_in

__all__ = ["service", "traffic_crds", "traffic_kube"]



@pytest.fixture(scope="session")
def traffic_crds(kube_cluster: LocalCluster) -> list[str]:
    """Install the Gateway API and DNSEndpoint CRDs into the session region; their names."""
    manifests = third_party_crds()
    with kube_cluster.api_client() as api:
        install_crds(api=api, manifests=manifests, timeout_seconds=120)
    return [m["metadata"]["name"] for m in manifests]


@pytest.fixture
def traffic_kube(kube_cluster: LocalCluster, traffic_crds: list[str]) -> Iterator[Kube]:
    """A fresh namespace (not ``t-*``: no session operator watches it) with the CRDs installed."""
    with namespace_in(kube_cluster, prefix="traffic") as namespaced:
        yield namespaced


def service(kube: Kube, name: str, *, port: int = 80) -> None:
    """An ordinary Service with a selector, as the user's local Service would be."""
    kube.core.create_namespaced_service(
        kube.namespace,
        {"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port}]}},
    )


