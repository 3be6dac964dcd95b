"""The local control plane for the tests: one region for the session, a namespace per test.

Integration tests talk to a real kube-apiserver, with kube-controller-manager (garbage
collection, Deployments, EndpointSlices), kube-scheduler and kwok nodes behind it, started
by :class:`regionshift.local.cluster.LocalCluster` from the cached build. Nothing here mocks the
API: when a test needs a behaviour it waits for the real component to produce it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, utils

from regionshift.local.cluster import LocalCluster
from regionshift.api.crdgen import crd_manifests

__all__ = ["Kube", "eventually", "kube", "kube_cluster", "namespace_in"]

T = TypeVar("T")


def eventually(check: Callable[[], T], *, timeout_seconds: float = 60.0, interval_seconds: float = 0.1,
               what: str = "condition", state: Callable[[], str] | None = None) -> T:
    """Poll ``check`` until it returns something truthy; fail the test with its last answer (and ``state()``).

    A check that raises AssertionError, LookupError or TypeError (reading an object that is
    not there yet) counts as not yet true; the exception is the last answer if time runs out.
    """
    deadline = time.monotonic() + timeout_seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, LookupError, TypeError) as exc:  # e.g. an object not there yet: None["spec"]
            last = exc
        else:
            if last:
                return last
        time.sleep(interval_seconds)
    pytest.fail(f"{what} not met in {timeout_seconds} s; last answer: {last!r}"
                + (f"; state: {state()}" if state is not None else ""))


@dataclass
class Kube:
    """A namespace of the session cluster and typed clients for it."""

    namespace: str
    api: client.ApiClient
    kubeconfig: Path

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def apply(self, manifest: str | dict[str, Any]) -> None:
        """Create the objects of a YAML text or a dict in this namespace."""
        docs = list(yaml.safe_load_all(manifest)) if isinstance(manifest, str) else [manifest]
        for doc in docs:
            if doc["apiVersion"].startswith("regionshift.io/"):
                self.create_custom(doc)
            else:
                utils.create_from_dict(self.api, doc, namespace=self.namespace)

    def create_custom(self, doc: dict[str, Any]) -> dict[str, Any]:
        group, version = doc["apiVersion"].split("/")
        plural = doc["kind"].lower() + "s"
        return self.custom.create_namespaced_custom_object(group, version, self.namespace, plural, doc)  # type: ignore[no-any-return]

    def get_custom(self, plural: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object("regionshift.io", "v1alpha1", self.namespace, plural, name)  # type: ignore[no-any-return]

    def patch_custom(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(  # type: ignore[no-any-return]
            "regionshift.io", "v1alpha1", self.namespace, plural, name, patch
        )

    def delete_custom(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object("regionshift.io", "v1alpha1", self.namespace, plural, name)

    def deployment(self, name: str) -> dict[str, Any] | None:
        try:
            return self.api.sanitize_for_serialization(self.apps.read_namespaced_deployment(name, self.namespace))  # type: ignore[no-any-return]
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pods(self, selector: str) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [self.api.sanitize_for_serialization(p) for p in pods]

    def ready_endpoint_pods(self, service: str) -> set[str]:
        """Names of the pods an EndpointSlice of the Service lists as ready."""
        slices = client.DiscoveryV1Api(self.api).list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={service}"
        ).items
        return {
            ep.target_ref.name
            for s in slices
            for ep in s.endpoints or []
            if ep.conditions and ep.conditions.ready and ep.target_ref is not None
        }

    def events(self, involved_name: str) -> list[client.CoreV1Event]:
        return [e for e in self.core.list_namespaced_event(self.namespace).items if e.involved_object.name == involved_name]


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[LocalCluster]:
    """One local region for the whole session, with the CRDs applied."""
    cluster = LocalCluster(
        name="test-region", crds=list(crd_manifests().values()), log=lambda line: print(line, flush=True),
        audited_operator=True,  # operator processes started with cluster.operator_kubeconfig are in its audit log
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def namespace_in(cluster: LocalCluster, *, prefix: str = "t") -> Iterator[Kube]:
    """A fresh namespace ``<prefix>-<random>`` in the cluster, deleted afterwards."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": namespace}})
        try:
            yield Kube(namespace=namespace, api=api, kubeconfig=cluster.kubeconfig)
        finally:
            core.delete_namespace(namespace)


WATCHED_PREFIX = "t"
"""Namespaces ``t-*`` are watched by the session's in-process operator (tests/conftest.py)."""
UNWATCHED_PREFIX = "u"


@pytest.fixture
def kube(request: pytest.FixtureRequest, kube_cluster: LocalCluster) -> Iterator[Kube]:
    """A fresh namespace in the session cluster: ``t-*`` when the test uses the session operator, else ``u-*``.

    A test without the operator must not leave objects where the operator looks: the
    session operator, started later by another test, would find them in a namespace still
    being deleted and spend its first seconds on them (adding and removing finalizers while
    kopf stops and starts its watches there), and a test's first DarkCluster waited for that.
    """
    prefix = WATCHED_PREFIX if "running_operator" in request.fixturenames else UNWATCHED_PREFIX
    with namespace_in(kube_cluster, prefix=prefix) as namespaced:
        yield namespaced
