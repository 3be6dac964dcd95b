"""Prometheus metrics: one for every decision the operator takes.

Served on ``--metrics-port`` by ``regionshift run``. Names follow the Prometheus
conventions (``_total`` for counters, units in names).
"""

from __future__ import annotations

from prometheus_client import Counter, Enum, Gauge, Histogram, start_http_server

__all__ = [
    "DARK_CLUSTER_RECONCILE_SECONDS",
    "DARK_CLUSTER_WAKES",
    "FAST_PATH_LISTINGS",
    "DARK_CLUSTER_GATE_OPEN",
    "DARK_REPLICAS",
    "STATUS_WRITES",
    "TARGET_LABEL_WRITES",
    "DETECTIONS",
    "SIZINGS",
    "SIZING_SECONDS",
    "EVENT_LOOP_LAG_SECONDS",
    "EVENT_LOOP_LATENESS_SECONDS",
    "GC_PAUSE_SECONDS",
    "EVENT_LOOP_STALLS",
    "VERDICTS",
    "VERDICT_REASONS",
    "REGION_EXPECTED",
    "REGION_SHARE_RATIO",
    "REGION_SIGNAL",
    "REGION_EVIDENCE_SAMPLES",
    "GATE_WRITES",
    "BUDGET_RECOUNTS",
    "RECONCILIATIONS",
    "SHADOW_WRITES",
    "REGION_DARK_REPLICAS",
    "REGION_DEPLOYMENTS_READY",
    "REGION_SERVED_SHARE",
    "REGIONFAILOVER_PHASE",
    "EVACUATION_PHASE",
    "REGION_ROLE",
    "EVACUATION_SHARE",
    "EVACUATION_RECOMMENDED",
    "EVACUATION_DEFERRED",
    "EVACUATION_DARK_REPLICAS",
    "ROUTE_WEIGHT",
    "ROUTE_HOLDS",
    "ROUTE_CONFLICT",
    "EVACUATION_STAGE_SECONDS",
    "EVACUATION_STAGES",
    "EVACUATION_ACTIONS",
    "ACTION_KINDS",
    "ACTION_RESULTS",
    "EVACUATIONS",
    "EVACUATION_TRANSITIONS",
    "TRANSPLANT_ACTIONS",
    "TRANSPLANTED_REPLICAS",
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
FAST_PATH_LISTINGS = Counter(
    "regionshift_gate_fast_path_listings_total",
    "Fast paths of an opening gate, by where they read the DarkCluster and its pods: stored (what the watches "
    "last delivered) or listed (one shared LIST of the namespace, when the watches had not delivered them yet).",
    ["source"],
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
VERDICT_REASONS = Counter(
    "regionshift_detection_verdicts_total",
    "Verdicts on regions, one per region and detection run, by verdict and deciding reason: the guard"
    " (GlobalDrop, DomainWide, RecentRollout, SaviorsNotWarm, ForecastNoLongerFits, NoData, StaleData,"
    " LowExpected), Regional or Uncompared for an Unhealthy verdict (drop shown against the domain, or no"
    " other region to compare with), None for Healthy.",
    ["verdict", "reason"],
)
REGION_SIGNAL = Gauge(
    "regionshift_region_signal",
    "The region's business signal at its last sample, as detection read it; NaN without a sample.",
    ["namespace", "regionfailover", "region"],
)
REGION_EXPECTED = Gauge(
    "regionshift_region_expected",
    "What the forecast expected of the region's signal at its last sample; NaN without a forecast.",
    ["namespace", "regionfailover", "region"],
)
REGION_SHARE_RATIO = Gauge(
    "regionshift_region_share_ratio",
    "A dropping region's share of the domain's total over its expected share (odds against the rest): 1 when"
    " it keeps its share, under shareRatioThreshold for a regional drop; NaN when not dropping or not compared.",
    ["namespace", "regionfailover", "region"],
)
REGION_EVIDENCE_SAMPLES = Gauge(
    "regionshift_region_evidence_samples",
    "Samples a 40 % drop needs to be judged at the region's current expected value (more when it is quiet and"
    " its counting noise large); NaN when it cannot be shown within evidenceWindowSamples.",
    ["namespace", "regionfailover", "region"],
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
EVENT_LOOP_LATENESS_SECONDS = Histogram(
    "regionshift_event_loop_lateness_seconds",
    "Lateness of every tick of the operator's loop watch (every 20 ms): how close the stalls come to 100 ms.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5),
)
GC_PAUSE_SECONDS = Histogram(
    "regionshift_gc_pause_seconds",
    "Pauses of the garbage collector (each holds the GIL, whichever thread it runs in), by generation.",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
EVENT_LOOP_STALLS = Counter(
    "regionshift_event_loop_stalls",
    "Stalls of the operator's event loop longer than 100 ms (a timer's lateness), by whether the loop's own"
    " thread ran most of it (own_work) or waited for the GIL or a CPU (waited).",
    ["kind"],
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


# Evacuation and failback, as this region's operator sees them (set from the RegionFailover's
# status by controllers/regionfailover/observe.py, which also removes the series of routes
# and regions that left the status, so none lingers). Label values are the status's words.
_PHASES = ["Steady", "Evacuating", "Evacuated", "FailingBack"]

REGIONFAILOVER_PHASE = Enum(
    "regionshift_regionfailover_phase",
    "The phase of each failover domain (status.phase): the most urgent of its evacuations, Steady when none.",
    ["namespace", "regionfailover"],
    states=_PHASES,
)
EVACUATION_PHASE = Enum(
    "regionshift_evacuation_phase",
    "Each region's evacuation phase as this region's operator sees it (status.evacuations[].phase; Steady when"
    " the region is not evacuated).",
    ["namespace", "regionfailover", "region"],
    states=_PHASES,
)
REGION_ROLE = Enum(
    "regionshift_region_role",
    "Each region's role while evacuations are under way (status.roles): Evacuated, Savior or Serving"
    " (Serving for every region in Steady).",
    ["namespace", "regionfailover", "region"],
    states=["Serving", "Evacuated", "Savior"],
)
EVACUATION_SHARE = Gauge(
    "regionshift_evacuation_share",
    "Share of its own traffic each region is meant to serve, as this region's evacuations see it: 1 when not"
    " evacuated, 0 once evacuated, rising step by step during its failback (status.evacuations[].share).",
    ["namespace", "regionfailover", "region"],
)
EVACUATION_RECOMMENDED = Gauge(
    "regionshift_evacuation_recommended",
    "1 for a region that an evacuation is recommended or planned for but the mode leaves to a human"
    " (Manual: status.recommendation; DryRun: status.plan); 0 for the other regions of the domain.",
    ["namespace", "regionfailover", "region"],
)
EVACUATION_DEFERRED = Gauge(
    "regionshift_evacuation_deferred",
    "1 for a region that spec.evacuate or an Unhealthy verdict would evacuate but that waits (status.deferred:"
    " the dwell after its last transition, or no other region left serving); 0 for the other regions of the domain.",
    ["namespace", "regionfailover", "region"],
)
EVACUATION_DARK_REPLICAS = Gauge(
    "regionshift_evacuation_dark_replicas",
    "This region's dark replicas in a failover domain, summed over its DarkClusters, by state (ready: ungated"
    " and taking traffic; gated: warm but not serving).",
    ["namespace", "regionfailover", "state"],
)
ROUTE_WEIGHT = Gauge(
    "regionshift_route_weight",
    "Weight per region on each route regionshift manages, as its provider reported it last"
    " (status.weights[].current; an ingress-nginx canary reports this region and \"peers\").",
    ["namespace", "regionfailover", "provider", "route", "region"],
)
ROUTE_HOLDS = Gauge(
    "regionshift_route_holds",
    "1 when a route's provider reports the weights regionshift wants and verified them (status.weights[].holds).",
    ["namespace", "regionfailover", "provider", "route"],
)
ROUTE_CONFLICT = Gauge(
    "regionshift_route_conflict",
    "1 when something else overwrote a route's weights twice within the dwell time and regionshift stopped"
    " setting them again (status.weights[].conflict).",
    ["namespace", "regionfailover", "provider", "route"],
)
EVACUATION_STAGES = ("ungated", "shifted", "settled", "failback_started", "failback_done")
"""The milestones of an evacuation's timeline, in order."""
EVACUATION_STAGE_SECONDS = Histogram(
    "regionshift_evacuation_stage_seconds",
    "Seconds from an evacuation's decision to each of its milestones, by stage (ungated, shifted, settled,"
    " failback_started, failback_done): the timeline's *AfterSeconds.",
    ["stage"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
for _stage in EVACUATION_STAGES:  # every stage exported from the start, at 0: increase() then counts the first one
    EVACUATION_STAGE_SECONDS.labels(_stage)
ACTION_KINDS = ("OpenGates", "CloseGates", "SetWeights", "PostEvent", "Recommend")
"""The actions of the evacuation state machine (decide/evacuation.py)."""
ACTION_RESULTS = ("Done", "Failed", "Skipped")
"""Done: carried out; Failed: the write was refused or raised; Skipped: not carried out (e.g. a later one failed)."""
EVACUATION_ACTIONS = Counter(
    "regionshift_evacuation_actions_total",
    "Actions of the evacuation state machine carried out, by kind (OpenGates, CloseGates, SetWeights, PostEvent,"
    " Recommend) and result (Done, Failed, Skipped).",
    ["kind", "result"],
)
EVACUATIONS = Counter(
    "regionshift_evacuations_total",
    "Evacuations started, by what decided them (actor: Verdict or SpecEvacuate).",
    ["namespace", "regionfailover", "actor"],
)
EVACUATION_TRANSITIONS = Counter(
    "regionshift_evacuation_transitions_total",
    "Transitions of regions' evacuations (status.history), by phase before and after and actor (Verdict,"
    " SpecEvacuate, Failback); an aborted failback is FailingBack to Evacuated by Failback.",
    ["namespace", "regionfailover", "from_phase", "to_phase", "actor"],
)

TRANSPLANT_ACTIONS = Counter(
    "regionshift_transplant_actions_total",
    "Actions of transplants (decide/transplant.py) carried out, by kind (ScaleMain, SetAutoscalerMin,"
    " SetTransplanted, PostEvent) and result (Done, Failed).",
    ["kind", "result"],
)
TRANSPLANTED_REPLICAS = Gauge(
    "regionshift_transplanted_replicas",
    "Dark replicas a transplant moved into a main Deployment (status.transplants[].movedReplicas), by step"
    " (Raising, Transplanted, Returning); 0 once the transplant returned.",
    ["namespace", "regionfailover", "deployment", "step"],
)


def serve_metrics(*, port: int, address: str = "127.0.0.1") -> None:
    """Serve /metrics on ``address:port`` from a background thread."""
    start_http_server(port, addr=address)
