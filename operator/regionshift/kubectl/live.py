"""What ``kubectl regionshift plan`` observes: the inputs of the operator's evacuation run, read now.

The plan (:mod:`regionshift.kubectl.plan`) is the operator's DryRun step over
:class:`~regionshift.decide.evacuation.Observations`. This module gathers them the way the
operator's evacuation run does in DryRun (:mod:`regionshift.controllers.regionfailover.evacuation`),
with the user's credentials instead of the operator's and with the same readers:

* the verdicts detection wrote in the status, all Unknown once stale
  (:func:`~regionshift.controllers.regionfailover.evacuation.verdicts_of`);
* this region's DarkClusters owned by the RegionFailover, with transplanted replicas
  counted as the operator counts them
  (:func:`~regionshift.controllers.regionfailover.transplant.dark_capacity`);
* every route of ``spec.traffic`` through the traffic providers, read only (``act=False``:
  no peer Service is made sure of, as in DryRun;
  :func:`~regionshift.controllers.regionfailover.routes.read_routes`);
* the peers' dark capacity from the shared Prometheus
  (:func:`~regionshift.controllers.regionfailover.progress.read_peers`), at the URL of
  ``spec.signal.prometheusUrl`` or another one (``--prometheus-url``, e.g. through
  ``kubectl port-forward`` when the in-cluster address is not reachable from here). The
  bearer token comes only from the Secret of ``spec.signal.bearerTokenSecret`` while it
  carries the opt-in label, as for the operator.

Whatever cannot be read becomes a problem line and counts as the operator counts it (a
route without weights, a peer without capacity), so the plan says what the operator would
decide with the same gaps. Blocking calls: this runs in a command, not in the operator.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from regionshift.adapters.prometheus import PrometheusClient
from regionshift.api.models import (
    API_GROUP,
    API_VERSION,
    PROMETHEUS_TOKEN_LABEL,
    Gate,
    RegionFailoverSpec,
    RegionFailoverStatus,
    TrafficProviderKind,
)
from regionshift.controllers.regionfailover.detection import owned_by
from regionshift.controllers.regionfailover.evacuation import verdicts_of
from regionshift.controllers.regionfailover.progress import PeerProgress, read_peers
from regionshift.controllers.regionfailover.routes import RouteBook, describe_route_error, read_routes
from regionshift.controllers.regionfailover.transplant import dark_capacity
from regionshift.decide.evacuation import DarkClusterObservation, Observations, RouteReport

__all__ = ["LiveObservations", "dark_cluster_observations", "observe"]

PROMETHEUS_RETRIES = 1
"""A command waits for one retry at most: an unreachable Prometheus is a problem line, not a hang."""


@dataclass(frozen=True, kw_only=True)
class LiveObservations:
    """The observations of this moment, and what could not be read."""

    observations: Observations
    problems: list[str] = field(default_factory=list)
    prometheus_url: str = ""
    """Where the peers' progress was read."""


def dark_cluster_observations(items: list[Mapping[str, Any]], *, uid: str) -> list[DarkClusterObservation]:
    """The DarkClusters of ``items`` owned by the RegionFailover ``uid``, as the state machine sees them."""
    out = []
    for dc in items:
        if not owned_by(dc, uid):
            continue
        status = dc.get("status") or {}
        warm, ready = dark_capacity(status)
        out.append(DarkClusterObservation(
            name=dc["metadata"]["name"], evacuation_gate=Gate(status.get("evacuationGate") or Gate.CLOSED.value),
            warm=warm, ready=ready))
    return sorted(out, key=lambda d: d.name)


def _token(api: client.ApiClient, *, namespace: str, secret: str) -> str:
    """The bearer token of the opted-in Secret (the same rule as the operator's)."""
    found = client.CoreV1Api(api).read_namespaced_secret(secret, namespace)
    if (found.metadata.labels or {}).get(PROMETHEUS_TOKEN_LABEL) != "true":
        raise PermissionError(f"the Secret {namespace}/{secret} does not carry the label {PROMETHEUS_TOKEN_LABEL}:"
                              ' "true"; no token is sent from it')
    if "token" not in (found.data or {}):
        raise KeyError(f"the Secret {namespace}/{secret} has no key 'token'")
    return base64.b64decode(found.data["token"]).decode()


async def _peers(*, url: str, spec: RegionFailoverSpec, name: str, token: str | None) -> PeerProgress:
    async with PrometheusClient(base_url=url, timeout_seconds=min(spec.signal.timeout_seconds, 10.0),
                                retries=PROMETHEUS_RETRIES, backoff_seconds=0.2, bearer_token=token,
                                verify_tls=not spec.signal.insecure_skip_tls_verify) as prom:
        return await read_peers(prom=prom, name=name, peers=[p.name for p in spec.peers])


def _why(exc: BaseException) -> str:
    if isinstance(exc, client.ApiException):
        return describe_route_error(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def observe(api: client.ApiClient, *, rf: Mapping[str, Any], now: dt.datetime,
            prometheus_url: str | None = None) -> LiveObservations:
    """Everything the DryRun step needs about the RegionFailover ``rf`` (as the API server returned it), now."""
    meta = rf["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    spec = RegionFailoverSpec.model_validate(rf["spec"])
    status = RegionFailoverStatus.model_validate(rf.get("status") or {})
    problems: list[str] = []

    verdicts = verdicts_of(spec=spec, status=status, now=now)
    if not verdicts:
        problems.append(f"detection's verdicts are stale or missing (last run: {status.last_evaluated_at or 'never'}):"
                        " every region counts as Unknown, as the operator would count it (is the operator running?)")

    try:
        items = client.CustomObjectsApi(api).list_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, "darkclusters")["items"]
        dark = dark_cluster_observations(items, uid=uid)
    except client.ApiException as exc:
        problems.append(f"DarkClusters unreadable: {_why(exc)}; this region counts no warm capacity")
        dark = []

    book = RouteBook(api=api, namespace=namespace, spec=spec, owner=None)
    try:
        reports, errors = read_routes(book, status=status, act=False)
    except Exception as exc:  # the routes unreadable as a whole: each reported without weights, as the operator does
        reports = [RouteReport(provider=TrafficProviderKind(t.kind), route=r, weights=None, verified=False,
                               error="unreadable") for t in spec.traffic for r in t.routes]
        errors = [exc]
    problems += [f"route unreadable: {_why(error)}" for error in errors]

    url = prometheus_url or spec.signal.prometheus_url
    peers = PeerProgress()
    try:
        token = (_token(api, namespace=namespace, secret=spec.signal.bearer_token_secret)
                 if spec.signal.bearer_token_secret else None)
        peers = asyncio.run(_peers(url=url, spec=spec, name=name, token=token))
    except Exception as exc:
        problems.append(f"the peers' dark capacity unreadable from Prometheus at {url} ({_why(exc)}): counted as"
                        " none, as the operator would count it (--prometheus-url reads it elsewhere, e.g. through"
                        " kubectl port-forward)")
    missing = [p.name for p in spec.peers if p.name not in peers.capacity]
    if missing and not any("Prometheus" in p for p in problems):
        problems.append(f"no dark capacity exported by {', '.join(missing)} (its operator not running, or not"
                        " scraped): counted as none")

    observations = Observations(verdicts=verdicts, dark_clusters=dark, capacity=peers.capacity,
                                deployments_ready=dict(peers.deployments_ready), routes=reports,
                                served_share=dict(peers.served_share))
    return LiveObservations(observations=observations, problems=problems, prometheus_url=url)
