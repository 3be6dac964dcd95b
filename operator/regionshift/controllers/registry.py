"""The kopf handlers: registration only, each a docstring and one call.

Importing this module registers the handlers on kopf's default registry. The work is done
in :mod:`regionshift.controllers.darkcluster` and
:mod:`regionshift.controllers.regionfailover`; the settings and the login in
:mod:`regionshift.controllers.operator_settings`. A DarkCluster is reconciled by its daemon
only; every other DarkCluster handler just wakes it, and so do its dark pods, its shadow and
its target, whose events are watched off the event loop, not by kopf
(:mod:`regionshift.controllers.dark_watches`).
"""

from __future__ import annotations

from typing import Any

import kopf

from regionshift import loopwatch
from regionshift.api.models import API_GROUP, API_VERSION
from regionshift.controllers import dark_watches, darkcluster, operator_settings, regionfailover, workers

DARKCLUSTER_RESOURCE = (API_GROUP, API_VERSION, "darkclusters")
REGIONFAILOVER_RESOURCE = (API_GROUP, API_VERSION, "regionfailovers")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Annotations for kopf's bookkeeping, our own Events, timeouts."""
    operator_settings.configure_settings(settings)


@kopf.on.startup()
async def watch_event_loop(**_: Any) -> None:
    """Measure stalls of the event loop (``regionshift_event_loop_lag_max_seconds``)."""
    loopwatch.start_loop_watch()


@kopf.on.startup()
async def start_worker_threads(**_: Any) -> None:
    """Start the worker threads now: one started in a storm of events makes the event loop wait for it."""
    workers.start_all()


@kopf.on.login()
def login(settings: kopf.OperatorSettings, logger: kopf.Logger, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in through kopf's own helpers (called again when the credentials expire)."""
    return operator_settings.login(settings=settings, logger=logger, **kwargs)


# cancellation_backoff: on deletion kopf first only signals the daemon, which ends its loop and
# releases the target's label; without it kopf cancels at once and the release never runs.
@kopf.daemon(*DARKCLUSTER_RESOURCE, cancellation_backoff=10.0, cancellation_timeout=30.0)
async def dark_cluster_daemon(namespace: str, name: str, spec: kopf.Spec, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """The one path that reconciles a DarkCluster: woken by its events and its pods', shadow's and target's; resyncs slowly."""
    with dark_watches.watching(namespace=namespace, name=name, target=str(spec.get("targetDeployment", ""))):
        await darkcluster.run(namespace=namespace, name=name, spec=spec, stopped=stopped)


@kopf.on.event(*DARKCLUSTER_RESOURCE)
async def dark_cluster_event(namespace: str, name: str, body: kopf.Body, type: str | None, **_: Any) -> None:
    """A DarkCluster changed: wake its reconcile if its spec or its forecast moved."""
    darkcluster.dark_cluster_changed(namespace=namespace, name=name, body=body, type_=type)


@kopf.daemon(*REGIONFAILOVER_RESOURCE, cancellation_timeout=5.0)
async def region_failover_daemon(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Detect every signal.stepSeconds; size and evacuate in tasks of their own; status says what was found."""
    await regionfailover.serve(body=body, stopped=stopped)


@kopf.on.delete(*REGIONFAILOVER_RESOURCE, optional=True)
def region_failover_deleted(uid: str, **_: Any) -> None:
    """Release the histories and forecasts; the DarkClusters and the cache go by garbage collection."""
    regionfailover.forget(uid=uid)
