"""The kopf handlers: registration only, each a docstring and one call.

Importing this module registers the handlers on kopf's default registry. The work is done
in :mod:`regionshift.controllers.darkcluster` and
:mod:`regionshift.controllers.regionfailover`; the settings and the login in
:mod:`regionshift.controllers.settings`.
"""

from __future__ import annotations

from typing import Any

import kopf

from regionshift import loopwatch
from regionshift.api.models import API_GROUP, API_VERSION, Gate
from regionshift.controllers import darkcluster, operator_settings, regionfailover
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL

DARKCLUSTER_RESOURCE = (API_GROUP, API_VERSION, "darkclusters")
REGIONFAILOVER_RESOURCE = (API_GROUP, API_VERSION, "regionfailovers")
RESYNC_SECONDS = 15.0
_refresher = darkcluster.StatusRefresher()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Keep kopf's bookkeeping in annotations and post only our own Events."""
    operator_settings.configure_settings(settings)


@kopf.on.startup()
async def watch_event_loop(**_: Any) -> None:
    """Measure stalls of the event loop (``regionshift_event_loop_lag_max_seconds``)."""
    loopwatch.start_loop_watch()


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """Log in with the same credentials as the API client of :mod:`regionshift.adapters.kube`."""
    return operator_settings.connection_info()


@kopf.index(*DARKCLUSTER_RESOURCE)
def darkclusters_by_target(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str], str]:
    """DarkCluster names by (namespace, target Deployment), to react to Deployment changes."""
    return {(namespace, spec.get("targetDeployment", "")): name}


@kopf.index(*DARKCLUSTER_RESOURCE)
def darkcluster_gates(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str], str]:
    """The gate of every DarkCluster, to gate a new dark pod the moment it appears."""
    return {(namespace, name): spec.get("gate", Gate.CLOSED.value)}


@kopf.on.resume(*DARKCLUSTER_RESOURCE)
@kopf.on.create(*DARKCLUSTER_RESOURCE)
@kopf.on.update(*DARKCLUSTER_RESOURCE, field="spec")
def dark_cluster_changed(body: kopf.Body, **_: Any) -> None:
    """A DarkCluster appeared or its spec changed: shadow, gates and status follow."""
    darkcluster.reconcile_dark_cluster(body=dict(body))


@kopf.timer(*DARKCLUSTER_RESOURCE, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def dark_cluster_resync(body: kopf.Body, **_: Any) -> None:
    """Periodic resync: repairs drift and anything an event did not bring."""
    darkcluster.reconcile_dark_cluster(body=dict(body))


@kopf.on.event("apps", "v1", "deployments")
def deployment_changed(
    namespace: str, name: str, labels: kopf.Labels, darkclusters_by_target: kopf.Index[tuple[str, str], str], **_: Any
) -> None:
    """A target changed (or appeared, or went): reconcile its DarkClusters. A shadow changed: refresh status."""
    if DARK_CLUSTER_LABEL in labels:
        _refresher.request(namespace=namespace, name=labels[DARK_CLUSTER_LABEL])
        return
    for dark_cluster in darkclusters_by_target.get((namespace, name), []):
        darkcluster.reconcile_dark_cluster_named(namespace=namespace, name=dark_cluster)


@kopf.on.event("", "v1", "pods", labels={DARK_CLUSTER_LABEL: kopf.PRESENT})
def dark_pod_changed(
    body: kopf.Body, namespace: str, labels: kopf.Labels, darkcluster_gates: kopf.Index[tuple[str, str], str], **_: Any
) -> None:
    """A dark pod appeared or changed: give it its DarkCluster's gate, then refresh the counts."""
    owner = labels[DARK_CLUSTER_LABEL]
    for gate in darkcluster_gates.get((namespace, owner), []):
        darkcluster.sync_pod_gate(pod=dict(body), gate=gate)
    _refresher.request(namespace=namespace, name=owner)


@kopf.daemon(*REGIONFAILOVER_RESOURCE, cancellation_timeout=5.0)
async def region_failover_periodic(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any) -> None:
    """Every signal.stepSeconds: detect (and size when due); status says what was found."""
    while not stopped:
        try:
            await regionfailover.tick(body=dict(body))
        except Exception:  # one bad run must not stop the loop; the next run retries
            logger.exception("periodic run of the RegionFailover failed")
        await stopped.wait(float(body.get("spec", {}).get("signal", {}).get("stepSeconds", 60)))


@kopf.on.delete(*REGIONFAILOVER_RESOURCE, optional=True)
def region_failover_deleted(uid: str, **_: Any) -> None:
    """Forget the cached forecasts; the DarkClusters and the history go by garbage collection."""
    regionfailover.forget(uid=uid)
