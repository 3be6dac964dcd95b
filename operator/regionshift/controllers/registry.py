"""The kopf handlers: registration only, each a docstring and one call.

Importing this module registers the handlers on kopf's default registry. The work is done
in :mod:`regionshift.controllers.darkcluster` and
:mod:`regionshift.controllers.regionfailover`; the settings and the login in
:mod:`regionshift.controllers.operator_settings`. A DarkCluster is reconciled by its daemon
only; every other DarkCluster handler just wakes it.
"""

from __future__ import annotations

from typing import Any

import kopf

from regionshift import loopwatch
from regionshift.api.models import API_GROUP, API_VERSION
from regionshift.controllers import darkcluster, operator_settings, regionfailover
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL, dark_cluster_label_value

DARKCLUSTER_RESOURCE = (API_GROUP, API_VERSION, "darkclusters")
REGIONFAILOVER_RESOURCE = (API_GROUP, API_VERSION, "regionfailovers")
DEPLOYMENT_RESOURCE = ("apps", "v1", "deployments")
POD_RESOURCE = ("", "v1", "pods")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Annotations for kopf's bookkeeping, our own Events, and watches of our own objects only."""
    operator_settings.configure_settings(settings, pods=POD_RESOURCE, deployments=DEPLOYMENT_RESOURCE)


@kopf.on.startup()
async def watch_event_loop(**_: Any) -> None:
    """Measure stalls of the event loop (``regionshift_event_loop_lag_max_seconds``)."""
    loopwatch.start_loop_watch()


@kopf.on.login()
def login(settings: kopf.OperatorSettings, logger: kopf.Logger, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in through kopf's own helpers (called again when the credentials expire)."""
    return operator_settings.login(settings=settings, logger=logger, **kwargs)


@kopf.index(*DARKCLUSTER_RESOURCE)
async def darkclusters_by_target(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str], str]:
    """DarkCluster names by (namespace, target Deployment), to wake them when their target changes.

    ``async`` although it does no I/O: kopf runs a plain ``def`` handler in its thread pool,
    and two thread hops per DarkCluster event cost the event loop more than this dict does."""
    return {(namespace, spec.get("targetDeployment", "")): name}


@kopf.index(*DARKCLUSTER_RESOURCE)
async def darkclusters_by_label(namespace: str, name: str, **_: Any) -> dict[tuple[str, str], str]:
    """DarkCluster names by (namespace, value of their label on shadows and dark pods)."""
    return {(namespace, dark_cluster_label_value(name)): name}


# cancellation_backoff: on deletion kopf first only signals the daemon, which ends its loop and
# releases the target's label; without it kopf cancels at once and the release never runs.
@kopf.daemon(*DARKCLUSTER_RESOURCE, cancellation_backoff=10.0, cancellation_timeout=30.0)
async def dark_cluster_daemon(namespace: str, name: str, spec: kopf.Spec, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """The one path that reconciles a DarkCluster: woken by the handlers below, resyncs slowly."""
    await darkcluster.run(namespace=namespace, name=name, spec=spec, stopped=stopped)


@kopf.on.event(*DARKCLUSTER_RESOURCE)
async def dark_cluster_event(namespace: str, name: str, body: kopf.Body, type: str | None, **_: Any) -> None:
    """A DarkCluster changed: wake its reconcile if its spec or its forecast moved."""
    darkcluster.dark_cluster_changed(namespace=namespace, name=name, body=body, type_=type)


@kopf.on.event(*DEPLOYMENT_RESOURCE)
async def deployment_changed(
    namespace: str, name: str, labels: kopf.Labels, type: str | None, body: kopf.Body,
    darkclusters_by_target: kopf.Index[tuple[str, str], str], darkclusters_by_label: kopf.Index[tuple[str, str], str],
    **_: Any,
) -> None:
    """A shadow or a target changed (or went), more than its status: wake its DarkClusters."""
    await darkcluster.deployment_changed(namespace=namespace, name=name, labels=labels, type_=type, body=body,
                                         darkclusters_by_target=darkclusters_by_target,
                                         darkclusters_by_label=darkclusters_by_label)


@kopf.on.event(*POD_RESOURCE, labels={DARK_CLUSTER_LABEL: kopf.PRESENT})
async def dark_pod_changed(
    namespace: str, name: str, labels: kopf.Labels, meta: kopf.Meta, type: str | None,
    darkclusters_by_label: kopf.Index[tuple[str, str], str], **_: Any
) -> None:
    """A dark pod appeared, changed or went: wake its DarkCluster (which gives it its gate), unless it shows our own write."""
    darkcluster.dark_pod_changed(namespace=namespace, labels=labels, darkclusters_by_label=darkclusters_by_label,
                                 name=name, resource_version=meta.get("resourceVersion"), type_=type)


@kopf.daemon(*REGIONFAILOVER_RESOURCE, cancellation_timeout=5.0)
async def region_failover_daemon(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Detect every signal.stepSeconds; size and evacuate in tasks of their own; status says what was found."""
    await regionfailover.serve(body=body, stopped=stopped)


@kopf.on.delete(*REGIONFAILOVER_RESOURCE, optional=True)
def region_failover_deleted(uid: str, **_: Any) -> None:
    """Release the histories and forecasts; the DarkClusters and the cache go by garbage collection."""
    regionfailover.forget(uid=uid)
