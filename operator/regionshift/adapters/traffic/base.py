"""The one small interface every traffic provider implements, and what they share.

A provider moves traffic between this region and its peers on one kind of object it owns
a part of (an HTTPRoute's backendRef weights, a canary Ingress, a weighted DNS record). It
does four things per route, and nothing else:

* :meth:`TrafficProvider.read`: the weights in force now, per region;
* :meth:`TrafficProvider.apply`: write desired weights, given as plain data
  ``{region: int}`` (computed elsewhere, by the pure arithmetic in ``decide/``; a provider
  never computes a weight), with a write guarded by the object's resourceVersion and
  retried on conflict;
* :meth:`TrafficProvider.verify`: whether the weights hold, from what the object's
  controller reports (and an honest "nobody reports" where no controller does);
* :meth:`TrafficProvider.restore`: put back weights recorded before the first change.

:meth:`TrafficProvider.snapshot` lists every object of the provider's kind in the namespace
once (one LIST, by name); :meth:`~TrafficProvider.read`, :meth:`~TrafficProvider.verify`
and :meth:`~TrafficProvider.apply` take it as ``listed`` instead of a GET per route, so an
evacuation run over hundreds of routes reads them in one request. A write computed from a
listed object is still guarded by that object's resourceVersion: a route that moved since
the LIST answers 409 and the write is computed again from a fresh read.

:meth:`TrafficProvider.drift` compares the object with what regionshift last wrote, so the
caller can post DriftDetected and decide whether to fight. Providers keep no state of their
own: what was last written and what was recorded live in the RegionFailover's status, and
are passed in. Every error a route's content causes is a typed
:class:`~regionshift.errors.TrafficError`, raised before anything is written.

The Kubernetes client here is the official synchronous one: call providers from kopf's
thread pool or through ``asyncio.to_thread``.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from regionshift.api.models import TrafficProviderKind
from regionshift.errors import InvalidWeights, RouteNotFound, TrafficError, WriteConflict

__all__ = [
    "CustomObjectRoutes",
    "FIELD_MANAGER",
    "MANAGED_BY_LABEL",
    "Backends",
    "Drift",
    "Listed",
    "RouteWeights",
    "TrafficProvider",
    "Verification",
    "Weights",
    "conventional_backends",
    "guarded_write",
    "last_applied",
    "last_foreign_writer",
    "listed_object",
    "peer_service_name",
    "raise_for",
    "validate_weights",
]

Weights = Mapping[str, int]
"""Desired or observed weights, keyed by region name (the ingress-nginx provider reads the
peers' share back under the key ``peers``: a canary splits in two only)."""

Listed = Mapping[str, Mapping[str, Any]]
"""Every object of a provider's kind in the namespace, by name (:meth:`TrafficProvider.snapshot`)."""

FIELD_MANAGER = "regionshift"
"""The field manager of every write regionshift makes (visible in managedFields and audit logs)."""

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Backends:
    """Which Service stands for which region in one route: the local one and one per peer."""

    region: str
    local_service: str
    peer_services: Mapping[str, str] = field(default_factory=dict)
    """Peer region -> name of the selector-less Service that reaches the peer's gateway."""

    def service_of(self, region: str) -> str:
        """The Service carrying a region's share; InvalidWeights for a region not in the domain."""
        if region == self.region:
            return self.local_service
        try:
            return self.peer_services[region]
        except KeyError:
            raise InvalidWeights(f"region {region!r} is neither this region nor one of its peers") from None

    def region_of(self, service: str) -> str | None:
        """The region a Service stands for, or None when the Service is not one regionshift manages."""
        if service == self.local_service:
            return self.region
        for region, name in self.peer_services.items():
            if name == service:
                return region
        return None


def peer_service_name(*, local_service: str, region: str) -> str:
    """``<local>-<region>``, shortened with a hash to stay a valid Service name (63 characters)."""
    name = f"{local_service}-{region}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: 63 - 9].rstrip('-')}-{digest}"


def conventional_backends(*, region: str, peers: list[str]) -> Callable[[str], Backends]:
    """The naming convention until the spec names Services per route.

    The local Service has the route's name; the Service reaching peer ``P`` is
    ``<route>-<P>`` (see :func:`peer_service_name`).
    """

    def backends(route: str) -> Backends:
        return Backends(
            region=region,
            local_service=route,
            peer_services={p: peer_service_name(local_service=route, region=p) for p in peers},
        )

    return backends


@dataclass(frozen=True)
class RouteWeights:
    """The weights one object carries now, with the version they were read at."""

    kind: str
    name: str
    weights: dict[str, int]
    generation: int
    resource_version: str
    written: bool = False
    """True when the call that returned this wrote the object."""


@dataclass(frozen=True)
class Verification:
    """Whether desired weights hold, and who says so.

    ``holds`` is True when the object's controller confirmed them, False when it refused
    them, has not caught up, or the object carries other weights, and None when nothing
    reports on the object at all (then the weights are written but nobody confirms that
    they are served: the caller must not count that as verified).
    """

    holds: bool | None
    reason: str
    message: str


@dataclass(frozen=True)
class Drift:
    """A managed weight differs from what regionshift last wrote."""

    kind: str
    name: str
    expected: dict[str, int]
    actual: dict[str, int]
    writer: str | None
    """The field manager that wrote the object since, when managedFields tell."""
    reapplied: bool
    """The user's own manifest was applied again (kubectl, Argo CD, Flux)."""

    @property
    def message(self) -> str:
        changed = ", ".join(
            f"{r} {self.expected.get(r)}→{self.actual.get(r)}"
            for r in sorted(set(self.expected) | set(self.actual))
            if self.expected.get(r) != self.actual.get(r)
        )
        who = f" by {self.writer}" if self.writer else ""
        how = " (the user's manifest was applied again)" if self.reapplied else ""
        return f"{self.kind} {self.name}: weights changed{who}{how}: {changed}"


def validate_weights(desired: Weights, *, maximum: int) -> dict[str, int]:
    """Desired weights as a plain dict, or InvalidWeights: integers in 0..maximum, not all zero."""
    out: dict[str, int] = {}
    for region, weight in desired.items():
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise InvalidWeights(f"weight of {region!r} is {weight!r}, not an integer")
        if not 0 <= weight <= maximum:
            raise InvalidWeights(f"weight of {region!r} is {weight}, outside 0..{maximum}")
        out[region] = weight
    if not out:
        raise InvalidWeights("no weights given")
    if not any(out.values()):
        raise InvalidWeights("every weight is 0: no region would serve")
    return out


def guarded_write(
    *,
    read: Callable[[], T],
    write: Callable[[T], R],
    attempts: int = 5,
    kind: str,
    name: str,
    first: T | None = None,
) -> R:
    """Read, then write on that version; on a resourceVersion conflict read again and retry.

    ``write`` carries the version it was given as a precondition (409 Conflict when the
    object moved on) and decides again from the fresh object on every attempt. ``first``,
    when given, is an object the caller has just read: the first attempt uses it instead of
    reading again.
    """
    current = first
    for _ in range(attempts):
        if current is None:
            current = read()
        try:
            return write(current)
        except ApiException as exc:
            if exc.status != 409:
                raise
        current = None
    raise WriteConflict(f"{kind} {name} changed under each of {attempts} guarded writes", kind=kind, name=name)


def last_applied(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The manifest ``kubectl apply`` (client-side, as Argo CD does by default) last applied."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get("kubectl.kubernetes.io/last-applied-configuration")
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


REAPPLYING_MANAGERS = ("kubectl-client-side-apply",)
"""Managers whose Update operations are in fact applies of a manifest."""


def last_foreign_writer(obj: Mapping[str, Any], *, path: tuple[str, ...] = ("f:spec",)) -> tuple[str | None, bool]:
    """Who besides regionshift owns the field at ``path`` now, and whether by an apply.

    Reads ``metadata.managedFields``. Point ``path`` at the atomic list holding the weights
    (``f:spec``, ``f:rules`` of an HTTPRoute): whoever changed that list last owns it whole.
    Returns that manager (the most recent, when several share it) and True when it wrote by
    an Apply (server-side apply: kubectl --server-side, Flux, Argo CD with ServerSideApply)
    or by a client-side ``kubectl apply``.
    """
    entries = []
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        fields: Any = entry.get("fieldsV1") or {}
        for key in path:
            fields = fields.get(key) if isinstance(fields, dict) else None
        if fields is not None and entry.get("manager") != FIELD_MANAGER:
            entries.append(entry)
    if not entries:
        return None, False
    latest = max(entries, key=lambda e: e.get("time") or "")
    applied = latest.get("operation") == "Apply" or latest.get("manager") in REAPPLYING_MANAGERS
    return latest.get("manager"), applied


class CustomObjectRoutes:
    """Reading a provider's routes when they are custom objects (HTTPRoute, DNSEndpoint).

    One GET per route, or every route of the namespace in one LIST (:meth:`snapshot`) that a
    run then reads from (:meth:`_object`). A provider sets ``group``, ``version``,
    ``plural`` and ``object_kind`` and gives itself ``_custom`` (a CustomObjectsApi).
    """

    group: ClassVar[str]
    version: ClassVar[str]
    plural: ClassVar[str]
    object_kind: ClassVar[str]
    namespace: str
    _custom: client.CustomObjectsApi

    def _get(self, route: str) -> dict[str, Any]:
        try:
            return self._custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
                self.group, self.version, self.namespace, self.plural, route)
        except ApiException as exc:
            raise_for(exc, RouteNotFound, kind=self.object_kind, name=route, namespace=self.namespace)
            raise

    def _object(self, route: str, listed: Listed | None) -> dict[str, Any]:
        """The route from a snapshot when given (RouteNotFound when it lacks it), else one GET."""
        if listed is None:
            return self._get(route)
        return listed_object(listed, route=route, kind=self.object_kind, namespace=self.namespace, error=RouteNotFound)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every route of this kind in the namespace by name, in one LIST."""
        answer = self._custom.list_namespaced_custom_object(self.group, self.version, self.namespace, self.plural)
        return {obj["metadata"]["name"]: obj for obj in answer.get("items") or []}


class TrafficProvider(abc.ABC):
    """Read, apply, verify and restore weights on the routes of one traffic API in one namespace."""

    kind: ClassVar[TrafficProviderKind]
    object_kind: ClassVar[str]
    max_weight: ClassVar[int]

    def __init__(self, *, api: client.ApiClient, namespace: str, region: str) -> None:
        self.api = api
        self.namespace = namespace
        self.region = region

    @abc.abstractmethod
    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every object of this provider's kind in the namespace, by name: one LIST for many routes."""

    @abc.abstractmethod
    def read(self, *, route: str, listed: Listed | None = None) -> RouteWeights:
        """The weights the route carries now, per region (from ``listed`` when given, else one GET)."""

    @abc.abstractmethod
    def apply(self, *, route: str, desired: Weights) -> RouteWeights:
        """Write desired weights; nothing is written when the route already carries them."""

    @abc.abstractmethod
    def verify(self, *, route: str, desired: Weights, listed: Listed | None = None) -> Verification:
        """Whether the desired weights hold, as far as anything reports it (from ``listed`` when given)."""

    @abc.abstractmethod
    def restore(self, *, route: str, recorded: Weights) -> RouteWeights:
        """Put back the weights recorded before the first change, exactly."""

    @abc.abstractmethod
    def drift(self, *, route: str, last_written: Weights) -> Drift | None:
        """What changed since regionshift last wrote ``last_written``, or None."""


def listed_object(listed: Listed, *, route: str, kind: str, namespace: str,
                  error: type[TrafficError]) -> dict[str, Any]:
    """The route's object from a snapshot; the typed not-found error when the LIST did not have it."""
    obj = listed.get(route)
    if obj is None:
        raise error(f"{kind} {namespace}/{route} does not exist", kind=kind, name=route)
    return dict(obj)


def raise_for(exc: ApiException, error: type[TrafficError], *, kind: str, name: str, namespace: str) -> None:
    """Turn a 404 into the typed error; re-raise anything else unchanged."""
    if exc.status == 404:
        raise error(f"{kind} {namespace}/{name} does not exist", kind=kind, name=name) from None
    raise exc
