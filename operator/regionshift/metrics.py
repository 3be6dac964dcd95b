"""Prometheus metrics: one for every decision the operator takes.

Served on ``--metrics-port`` by ``regionshift run``. Names follow the Prometheus
conventions (``_total`` for counters, units in names).
"""

from __future__ import annotations

from prometheus_client import Counter, Enum, Gauge, Histogram, start_http_server

__all__ = [
    "DARK_CLUSTER_RECONCILE_SECONDS",
    "DARK_CLUSTER_WAKES",
    "DARK_CLUSTER_GATE_OPEN",
    "DARK_REPLICAS",
    "STATUS_WRITES",
    "TARGET_LABEL_WRITES",
    "DETECTIONS",
    "SIZINGS",
    "SIZING_SECONDS",
    "EVENT_LOOP_LAG_SECONDS",
    "VERDICTS",
    "GATE_WRITES",
    "BUDGET_RECOUNTS",
    "RECONCILIATIONS",
    "SHADOW_WRITES",
    "REGION_DARK_REPLICAS",
    "REGION_DEPLOYMENTS_READY",
    "REGION_SERVED_SHARE",
    "serve_metrics",
]

RECONCILIATIONS = Counter(
    "regionshift_reconciliations_total",
    "Reconciliations of a resource, by kind and outcome (Reconciled, TargetNotFound, ShadowConflict, Conflict,"
    " Retrying, Forbidden, Invalid, ReconcileError, Gone).",
    ["kind", "outcome"],
)
SHADOW_WRITES = Counter(
    "regionshift_shadow_writes_total",
    "Writes of shadow Deployments, by action (create, replace, delete: a shadow whose selector must change,"
    " scale_to_zero: its target is gone).",
    ["action"],
)
GATE_WRITES = Counter(
    "regionshift_gate_writes_total",
    "Serving-label writes to dark pods (one merge patch per pod), by the gate written (Open, Closed).",
    ["gate"],
)
DARK_CLUSTER_WAKES = Counter(
    "regionshift_darkcluster_wakes_total",
    "Wake-ups of DarkCluster reconciles, by cause (darkcluster, evacuation, pod, shadow, target, sizing, start).",
    ["cause"],
)
DARK_CLUSTER_RECONCILE_SECONDS = Histogram(
    "regionshift_darkcluster_reconcile_duration_seconds",
    "Wall-clock seconds of one DarkCluster reconcile (reads, gate writes, shadow and status writes).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STATUS_WRITES = Counter(
    "regionshift_status_writes_total",
    "Status writes decided by a reconcile, by kind and outcome (Written, Unchanged: nothing sent).",
    ["kind", "outcome"],
)
TARGET_LABEL_WRITES = Counter(
    "regionshift_target_label_writes_total",
    "Writes of the regionshift.io/dark-cluster-role=target label on users' Deployments, by action (add, remove).",
    ["action"],
)
BUDGET_RECOUNTS = Counter(
    "regionshift_budget_recounts_total",
    "PodDisruptionBudgets asked to recount after a gate closed (the disruption controller does not see pods"
    " leave a selector), by outcome (Requested, Failed).",
    ["outcome"],
)
DARK_REPLICAS = Gauge(
    "regionshift_dark_replicas",
    "Dark replicas of a DarkCluster, by state (desired, warm, serving).",
    ["namespace", "darkcluster", "state"],
)

DARK_CLUSTER_GATE_OPEN = Gauge(
    "regionshift_darkcluster_gate_open",
    "1 while a DarkCluster's gate is held open, by hand: spec (its owner's spec.gate), evacuation"
    " (status.evacuationGate), effective (the gate in force on its dark pods: either, while its target exists).",
    ["namespace", "darkcluster", "hand"],
)

DETECTIONS = Counter(
    "regionshift_detections_total",
    "Detection runs, by outcome (SignalRead, PrometheusUnavailable, QueryRejected, ...).",
    ["outcome"],
)
VERDICTS = Enum(
    "regionshift_region_verdict",
    "The current verdict on each region of a failover domain.",
    ["namespace", "regionfailover", "region"],
    states=["Healthy", "Unhealthy", "HeldBack", "Unknown"],
)
SIZINGS = Counter(
    "regionshift_sizings_total",
    "Dark-capacity sizing runs, by outcome (Sized, NoHistory, ...).",
    ["outcome"],
)

SIZING_SECONDS = Histogram(
    "regionshift_sizing_duration_seconds",
    "Wall-clock seconds of one dark-capacity sizing run of a RegionFailover (all its Deployments).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
EVENT_LOOP_LAG_SECONDS = Gauge(
    "regionshift_event_loop_lag_max_seconds",
    "Longest stall of the operator's event loop seen since start (a timer's lateness).",
)


# What each region's operator tells the others through the shared Prometheus. Operators
# never write to each other's clusters: a savior learns that the region it saved serves its
# whole share again, and every region learns the others' warm and Ready dark capacity, from
# these three series, labelled with the RegionFailover's name (the domain's name in every
# region) and the region the operator runs in.
REGION_DARK_REPLICAS = Gauge(
    "regionshift_region_dark_replicas",
    "This region's dark replicas in a failover domain, summed over its DarkClusters, by state"
    " (warm: running with all containers ready, gated or not; ready: ungated and taking traffic).",
    ["regionfailover", "region", "state"],
)
REGION_DEPLOYMENTS_READY = Gauge(
    "regionshift_region_deployments_ready",
    "1 when every participating Deployment of this region has all its replicas Ready, else 0.",
    ["regionfailover", "region"],
)
REGION_SERVED_SHARE = Gauge(
    "regionshift_region_served_share",
    "Share of its own traffic this region's evacuation says it serves: 1 in Steady, 0 when evacuated,"
    " rising step by step during its failback.",
    ["regionfailover", "region"],
)


def serve_metrics(*, port: int, address: str = "127.0.0.1") -> None:
    """Serve /metrics on ``address:port`` from a background thread."""
    start_http_server(port, addr=address)
