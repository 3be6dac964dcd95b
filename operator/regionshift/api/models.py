"""The custom resources of regionshift, as pydantic models.

These models are the single source of truth for the API: ``regionshift crds`` turns them
into the CRD YAML in ``crds/`` (see :mod:`regionshift.api.crdgen`), and the operator parses
every object it reads through them. Cross-field rules that a JSON schema cannot express
sit next to the fields they constrain as CEL rules (``x-kubernetes-validations``), so the
API server rejects bad input with a message naming the field before the operator ever sees
it. What the API server should enforce on a field itself (list types such as a map keyed by
name or a set, immutability as a CEL transition rule) is declared here as the field's schema
extras too, never added to the YAML by hand.

Field names are camelCase on the wire (the Kubernetes convention) and snake_case in Python;
every field carries its unit in its name (``intervalSeconds``, not ``interval``).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "API_GROUP",
    "PROMETHEUS_TOKEN_LABEL",
    "Actor",
    "EvacuationPlan",
    "Phase",
    "PlannedWeights",
    "Recommendation",
    "RegionEvacuation",
    "Role",
    "RouteWeights",
    "Transition",
    "Transplant",
    "TransplantStep",
    "API_VERSION",
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "Condition",
    "DarkCluster",
    "DarkClusterSpec",
    "DarkClusterStatus",
    "DarkReplicaPolicy",
    "DetectionPolicy",
    "EvacuationTimeline",
    "FailbackPolicy",
    "Gate",
    "HolidayCalendar",
    "LabelSelector",
    "Mode",
    "ModelFit",
    "ObjectMeta",
    "Peer",
    "RegionCalendar",
    "RegionFailover",
    "RegionFailoverSpec",
    "RegionFailoverStatus",
    "RegionSignalStatus",
    "ReplicaSource",
    "SignalSource",
    "DarkCapacityPolicy",
    "TrafficProvider",
    "TrafficProviderKind",
    "Verdict",
    "ROUTES_PER_PROVIDER",
    "TRAFFIC_PROVIDERS",
]

API_GROUP = "regionshift.io"
API_VERSION = "v1alpha1"
PROMETHEUS_TOKEN_LABEL = "regionshift.io/prometheus-token"
"""A Secret whose owner lets the operator read it as ``signal.bearerTokenSecret`` carries this label, value "true"."""

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""An RFC 1123 label: what regionshift accepts as a region name."""

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""An RFC 1123 subdomain: what Kubernetes accepts as a Deployment name (dots allowed)."""

LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
"""What Kubernetes accepts as a label value (at most 63 characters)."""

ROUTES_PER_PROVIDER = 128
"""Routes one traffic provider entry of a RegionFailover names at most.

With :data:`TRAFFIC_PROVIDERS` entries a RegionFailover names at most 1,024 routes: 500 services
with an HTTPRoute and a DNSEndpoint each. No CEL rule walks the route names, so the limit costs
the API server's CEL budget nothing; what bounds it is the size of the object (kopf keeps the
last handled spec in an annotation, and annotations hold at most 256 KiB) and of the status,
which lists every route's weights. A larger domain is split across RegionFailovers whose
selectors and routes do not overlap.
"""

TRAFFIC_PROVIDERS = 8
"""Traffic provider entries a RegionFailover has at most."""

HOST_PORT = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?):[0-9]{1,5}$"
"""host:port, with an IPv6 host in brackets; no scheme, no path."""


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL rule as the API server expects it in ``x-kubernetes-validations``."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def immutable(field: str) -> dict[str, Any]:
    """Schema extras making a field immutable once created (a CEL transition rule)."""
    return {
        "x-kubernetes-validations": [
            cel("self == oldSelf", f"{field} is immutable: delete and recreate the object to change it")
        ]
    }


LIST_MAP_BY_NAME: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
"""Schema extras for a list of objects keyed by ``name``: the API server rejects duplicate names."""

LIST_SET: dict[str, Any] = {"x-kubernetes-list-type": "set"}
"""Schema extras for a list of distinct scalars: the API server rejects duplicates."""


class Model(BaseModel):
    """Base of every resource part: camelCase on the wire, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=True,
    )

    def wire(self) -> dict[str, Any]:
        """This model as the API server stores it: camelCase, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ---------------------------------------------------------------------------- shared


class Condition(Model):
    """A status condition, as in the Kubernetes API conventions (metav1.Condition)."""

    type: str = Field(description="Kind of condition, e.g. Ready, TargetFound, GateOpen.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word saying why the condition is so.")
    message: str = Field(default="", description="A sentence for humans.")
    last_transition_time: str = Field(
        description="RFC 3339 time the status last changed (not the reason or message)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )


class ObjectMeta(Model):
    """The part of metadata the operator reads; the rest stays with the API server."""

    name: str = Field(description="Name of the object, unique in its namespace.")
    namespace: str | None = Field(default=None, description="Namespace of the object.")
    uid: str | None = Field(default=None, description="Unique id the API server gave the object.")
    generation: int | None = Field(default=None, description="Incremented by the API server on every spec change.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the object.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the object.")


class LabelSelector(Model):
    """Selects the Deployments that take part in a failover domain.

    At least one label is required: an empty selector would take every Deployment of the
    namespace, which is never what a failover domain means.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "size(self.matchLabels) > 0",
                    "selector.matchLabels must name at least one label: an empty selector"
                    " would take every Deployment of the namespace",
                    ".matchLabels",
                ),
            ]
        }
    )

    match_labels: dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]] = Field(
        max_length=32,
        description="Labels a Deployment must carry, all of them (at least one).",
    )


# ---------------------------------------------------------------------------- DarkCluster


class Gate(str, enum.Enum):
    """Whether dark pods may take traffic."""

    CLOSED = "Closed"
    OPEN = "Open"


class ReplicaSource(str, enum.Enum):
    """Where the dark replica count comes from."""

    FIXED = "Fixed"
    FORECAST = "Forecast"


class DarkReplicaPolicy(Model):
    """How many dark replicas to keep warm."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must be less than or equal to maxReplicas",
                    ".minReplicas",
                ),
                cel(
                    "self.source != 'Fixed' || has(self.fixedReplicas)",
                    "fixedReplicas is required when source is Fixed",
                    ".fixedReplicas",
                ),
                cel(
                    "!has(self.fixedReplicas) || (self.fixedReplicas >= self.minReplicas"
                    " && self.fixedReplicas <= self.maxReplicas)",
                    "fixedReplicas must lie between minReplicas and maxReplicas",
                    ".fixedReplicas",
                ),
            ]
        }
    )

    source: ReplicaSource = Field(
        default=ReplicaSource.FIXED,
        description="Fixed: keep fixedReplicas. Forecast: keep what the sizing model forecasts"
        " (written to status.forecastReplicas), clamped to minReplicas..maxReplicas."
        " A transplant (status.transplantedReplicas) lowers the count by what it moved into the target.",
    )
    fixed_replicas: int | None = Field(
        default=None, ge=0, le=10000, description="Dark replicas to keep when source is Fixed."
    )
    min_replicas: int = Field(default=0, ge=0, le=10000, description="Never fewer dark replicas.")
    max_replicas: int = Field(default=100, ge=0, le=10000, description="Never more dark replicas.")


class DarkClusterSpec(Model):
    """A shadow of one Deployment: same pod template, warm, gated."""

    target_deployment: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_SUBDOMAIN,
        description="Name of the Deployment (same namespace) whose pods the dark cluster"
        " shadows: a DNS-1123 subdomain of at most 63 characters, dots allowed. The shadow"
        " Deployment's name is derived from it (status.shadowDeployment). Immutable: to shadow"
        " another Deployment, create another DarkCluster.",
        json_schema_extra=immutable("targetDeployment"),
    )
    replicas: DarkReplicaPolicy = Field(
        default_factory=DarkReplicaPolicy, description="How many dark replicas to keep warm."
    )
    gate: Gate = Field(
        default=Gate.CLOSED,
        description="The owner's gate. Closed: dark pods run, warm, without their target's pod labels, so no"
        " Service, PodDisruptionBudget or autoscaler of the target selects them."
        " Open: the operator adds those labels to every dark pod and they take traffic."
        " An evacuation opens the dark pods through its RegionFailover's status.evacuationGate instead, never"
        " through this field; the gate in force (status.effectiveGate) is Open when either is Open.",
    )


class ModelFit(Model):
    """The fitted scaling model replicas = intercept + slope * traffic (ordinary least squares)."""

    intercept: float = Field(description="Replicas at zero traffic.")
    slope_replicas_per_unit: float = Field(description="Replicas per unit of the signal.")
    r_squared: float = Field(description="Coefficient of determination of the fit, 0..1.")
    samples: int = Field(ge=0, description="History samples the fit used.")
    fitted_at: str = Field(description="RFC 3339 time of the fit.")
    method: str | None = Field(
        default=None,
        description="OrdinaryLeastSquares, or Proportional when replicas do not grow with traffic in the history.",
    )


class DarkClusterStatus(Model):
    """What the operator observed and decided for one dark cluster."""

    observed_generation: int | None = Field(default=None, description="Last spec generation acted on.")
    shadow_deployment: str | None = Field(default=None, description="Name of the shadow Deployment.")
    desired_replicas: int | None = Field(default=None, description="Dark replicas asked of the shadow.")
    forecast_replicas: int | None = Field(
        default=None, description="Dark replicas the sizing model forecasts (before min/max)."
    )
    warm_replicas: int | None = Field(
        default=None, description="Dark pods running with all containers ready (gated or not)."
    )
    ready_replicas: int | None = Field(
        default=None, description="Dark pods Ready, i.e. ungated and taking traffic."
    )
    gated: bool | None = Field(default=None, description="True while the gate in force (effectiveGate) is closed.")
    effective_gate: Gate | None = Field(
        default=None,
        description="The gate the operator enforces on the dark pods, written by the DarkCluster controller:"
        " Open when spec.gate, evacuationGate or the owning RegionFailover's status.evacuationGate is Open"
        " (Closed, whatever they say, while the target is missing). The GateOpen condition says which opened it.",
    )
    evacuation_gate: Gate | None = Field(
        default=None,
        description="An evacuation gate held on this dark cluster itself (under the field manager"
        " regionshift-evacuation); evacuations hold theirs on the owning RegionFailover's status.evacuationGate"
        " and close this one when they close theirs. Absent when nothing ever set it.",
    )
    evacuation_gate_since: str | None = Field(
        default=None, description="RFC 3339 time evacuationGate last changed, written with it."
    )
    transplanted_replicas: int | None = Field(
        default=None,
        ge=0,
        description="Dark replicas a transplant moved into the target Deployment, written by the RegionFailover's"
        " operator under the field manager regionshift-transplant (never through the spec): the DarkCluster"
        " controller keeps that many fewer dark replicas (desiredReplicas = max(0, sized - transplantedReplicas));"
        " 0 or absent once the capacity is given back.",
    )
    model_fit: ModelFit | None = Field(default=None, description="The scaling model behind the forecast.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, GateOpen.")


class DarkCluster(Model):
    """Warm, gated capacity for one Deployment: a shadow Deployment <target>-dark with the same
    pod template, whose pods run but take no traffic until the gate opens.

    Written by hand, or created for each participating Deployment by a RegionFailover (which
    then owns it). Deleting it removes the shadow through garbage collection.
    """

    api_version: str = Field(
        default=f"{API_GROUP}/{API_VERSION}", description="Versioned schema of this object."
    )
    kind: Literal["DarkCluster"] = Field(default="DarkCluster", description="The kind: DarkCluster.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: DarkClusterSpec = Field(description="The Deployment to shadow, how many dark replicas, the gate.")
    status: DarkClusterStatus = Field(
        default_factory=DarkClusterStatus, description="What the operator observed and decided; written by it only."
    )


# ---------------------------------------------------------------------------- RegionFailover


class Mode(str, enum.Enum):
    """Who pushes the button."""

    AUTOMATIC = "Automatic"
    MANUAL = "Manual"
    DRY_RUN = "DryRun"


class Verdict(str, enum.Enum):
    """What detection concluded about one region."""

    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    HELD_BACK = "HeldBack"
    UNKNOWN = "Unknown"


class TrafficProviderKind(str, enum.Enum):
    """Which traffic API a provider writes weights through."""

    GATEWAY_API = "GatewayAPI"
    INGRESS_NGINX = "IngressNginx"
    EXTERNAL_DNS = "ExternalDNS"


TIME_ZONE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
"""The shape of an IANA time zone name (``Europe/Paris``, ``America/Argentina/Salta``, ``UTC``)."""


class HolidayCalendar(Model):
    """Public holidays from the `holidays` library (https://pypi.org/project/holidays/)."""

    country: str = Field(
        pattern=r"^[A-Z]{2,3}$", description="ISO 3166-1 country code (alpha-2 or alpha-3), e.g. US, DE, IN."
    )
    subdivision: str | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        pattern=r"^[A-Za-z0-9-]+$",
        description="The library's subdivision code (a state, province or Land), e.g. NY, BY; absent: nationwide"
        " holidays only.",
    )


class RegionCalendar(Model):
    """A region's local time and calendar days, so its forecast follows the local clock and holidays."""

    time_zone: str = Field(
        default="UTC",
        max_length=64,
        pattern=TIME_ZONE,
        description="IANA time zone of the region's users (e.g. America/New_York). The daily and weekly shape"
        " of the signal is learnt and forecast in this local time, so a daylight saving change moves nothing.",
    )
    holidays: HolidayCalendar | None = Field(
        default=None,
        description="Country (and subdivision) whose public holidays are calendar days: forecast as their own"
        " kind of day (like the rest day, at a lower level) and kept out of the ordinary week's shape."
        " Absent: no public holidays.",
    )
    special_days: list[dt.date] = Field(
        default_factory=list,
        max_length=366,
        description="The region's own calendar days (a launch, a sale), local dates YYYY-MM-DD, each once;"
        " treated like public holidays.",
        json_schema_extra=LIST_SET,
    )
    reduced_days: list[dt.date] = Field(
        default_factory=list,
        max_length=366,
        description="Working days with fewer users than usual (the working days between Christmas and the"
        " first Friday of January, the day after Thanksgiving), local dates YYYY-MM-DD, each once: forecast"
        " with their own weekday's shape at a lower level and kept out of the ordinary week's shape."
        " A date that is also a holiday or special day counts as that.",
        json_schema_extra=LIST_SET,
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Paris") from exc
        return value


class Peer(Model):
    """Another region of the failover domain."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.gatewayAddress) || !(self.gatewayAddress.startsWith('127.')"
                    " || self.gatewayAddress.startsWith('[::1]') || self.gatewayAddress.startsWith('0.0.0.0:')"
                    " || self.gatewayAddress.startsWith('169.254.') || self.gatewayAddress.startsWith('localhost:'))",
                    "gatewayAddress must not be a loopback, unspecified or link-local address: the peer's"
                    " Services list it in an EndpointSlice, which the API server refuses for those",
                    ".gatewayAddress",
                ),
            ]
        }
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL, description="Region name.")
    gateway_address: str | None = Field(
        default=None,
        max_length=261,
        pattern=HOST_PORT,
        description="host:port of the peer's gateway (no scheme), the target when traffic is proxied there.",
    )
    dns_record: str | None = Field(
        default=None, min_length=1, max_length=253, description="The peer's weighted DNS record name."
    )
    calendar: RegionCalendar = Field(
        default_factory=RegionCalendar,
        description="The peer's time zone and calendar days, for its forecast (default UTC, none).",
    )


class SignalSource(Model):
    """Where the business signal comes from."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.query.contains('{region}')", "query must contain the {region} placeholder", ".query"),
            ]
        }
    )

    prometheus_url: str = Field(
        min_length=1, pattern=r"^https?://", description="Base URL of the Prometheus HTTP API."
    )
    query: str = Field(
        min_length=1,
        description="PromQL for one region's signal, with {region} where the region name goes.",
    )
    step_seconds: int = Field(
        default=60, ge=1, le=3600, description="Seconds between detection samples (and between detection runs)."
    )
    history_days: int = Field(default=14, ge=1, le=90, description="Days of history the forecast fits.")
    history_step_seconds: int = Field(
        default=60, ge=1, le=3600, description="Resolution of the history the forecast and the sizing fit."
    )
    refit_interval_seconds: int = Field(
        default=3600, ge=10, description="Seconds between refits of the forecast and the sizing model."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Per-query timeout.")
    bearer_token_secret: str | None = Field(
        default=None,
        description="Secret (same namespace, key 'token') with a bearer token for Prometheus. Read only while it "
                    "carries the label regionshift.io/prometheus-token: \"true\" (its owner opts in).",
    )
    insecure_skip_tls_verify: bool = Field(default=False, description="Skip TLS verification.")


class DetectionPolicy(Model):
    """When a region counts as failing, and what holds an evacuation back."""

    ratio_threshold: float = Field(
        default=0.7, gt=0, lt=1, description="Unhealthy when actual/expected stays below this."
    )
    consecutive_samples: int = Field(
        default=3, ge=1, le=100, description="Samples in a row under the threshold."
    )
    minimum_expected: float = Field(
        default=1.0, ge=0, description="Ignore samples whose expected value is below this floor."
    )
    global_drop_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Hold back when at least this share of all regions drops together.",
    )
    rollout_guard_seconds: int = Field(
        default=900, ge=0, description="Hold back when a Deployment rolled out this recently."
    )
    stale_after_seconds: int = Field(
        default=300, ge=1, description="Data older than this counts as missing."
    )
    dwell_seconds: int = Field(
        default=60, ge=0, le=86400,
        description="No verdict starts an evacuation of a region within this long of that region's last"
        " transition (no flapping); spec.evacuate is not held back by it.",
    )
    counts_per_unit: float = Field(
        default=1.0, ge=0, le=1e6,
        description="Counted events one unit of the signal stands for each second (1 for a per-second rate of"
        " events such as stream starts/s, 1/60 for a per-minute count): expected × stepSeconds × this is the"
        " count behind a sample, whose counting noise widens the threshold, so a quiet region needs more"
        " samples of evidence than a busy one. 0 turns the noise allowance off (the plain ratio test).",
    )
    overdispersion: float = Field(
        default=2.0, ge=1, le=100,
        description="Variance of the counts behind a sample over their mean: 1 for Poisson counting, more for"
        " bursty traffic (negative-binomial); it scales the noise allowance.",
    )
    noise_sigmas: float = Field(
        default=3.0, ge=0, le=10,
        description="How many standard deviations of counting noise the pooled actual/expected of a run must lie"
        " under ratioThreshold (and each sample of the run at most above it) to count as a drop.",
    )
    evidence_window_samples: int = Field(
        default=36, ge=1, le=1000,
        description="The most recent samples a run may pool: a region too quiet to show a drop within this many"
        " samples is never judged Unhealthy (status reports the samples each region needs).",
    )
    share_ratio_threshold: float = Field(
        default=0.8, gt=0, le=1,
        description="Evidence against the domain: a region's share of the domain's total over its expected share"
        " (as odds: the region against the rest) must also lie under this, beyond the counting noise, for a drop"
        " to be regional; a drop every region shares is held back (DomainWide).",
    )
    no_longer_fits_after_seconds: int = Field(
        default=10800, ge=60, le=2592000,
        description="A drop without evidence of a regional outage (the domain moved alike, or no other region to"
        " compare with) that lasts longer than this turns Unknown (ForecastNoLongerFits) and its samples are"
        " learnt by the forecast's refit; a drop shown against the domain stays Unhealthy.",
    )


class DarkCapacityPolicy(Model):
    """How dark clusters are sized from the forecast."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must be less than or equal to maxReplicas",
                    ".minReplicas",
                ),
                cel(
                    "self.replicasQuery.contains('{deployment}')",
                    "replicasQuery must contain the {deployment} placeholder: without it every"
                    " Deployment would be sized from the same history",
                    ".replicasQuery",
                ),
            ]
        }
    )

    headroom_ratio: float = Field(default=1.2, ge=1, le=10, description="Multiply the need by this.")
    min_replicas: int = Field(default=0, ge=0, le=10000, description="Never fewer dark replicas.")
    max_replicas: int = Field(default=100, ge=0, le=10000, description="Never more dark replicas.")
    horizon_seconds: int = Field(
        default=3600, ge=60, description="How far ahead the forecast peak is taken."
    )
    replicas_query: str = Field(
        default='kube_deployment_spec_replicas{namespace="{namespace}",deployment="{deployment}"}',
        min_length=1,
        description="PromQL for a Deployment's replica history in this region, with {namespace} and"
        " {deployment} (and optionally {region}) placeholders; the sizing model regresses it on the signal.",
    )
    transplant_after_seconds: int | None = Field(
        default=None,
        ge=0,
        le=604800,
        description="Transplant: once an evacuation this region saves has been settled this long, move the"
        " serving dark replicas into the main Deployments (raise each main Deployment, or the minReplicas of"
        " the HorizontalPodAutoscaler that targets it, never above its maxReplicas; wait until the new pods"
        " are Ready; then lower the dark one through its status.transplantedReplicas), so that the ready"
        " serving pods never drop. When the evacuation ends (failback done) the dark capacity is given back"
        " and each main Deployment returns to the replicas (or minReplicas) recorded before the transplant."
        " Absent (the default): never transplant; the dark pods serve until the failback.",
    )


class TrafficProvider(Model):
    """One traffic API and the routes of it this operator owns."""

    kind: TrafficProviderKind = Field(description="GatewayAPI, IngressNginx or ExternalDNS.")
    routes: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        min_length=1,
        max_length=ROUTES_PER_PROVIDER,
        description=f"Names of the HTTPRoutes, Ingresses or DNSEndpoints it owns (each name once, at most"
        f" {ROUTES_PER_PROVIDER}; a RegionFailover has at most {TRAFFIC_PROVIDERS} providers).",
        json_schema_extra=LIST_SET,
    )


class FailbackPolicy(Model):
    """How traffic comes back to a healed region, step by step."""

    step_percent: int = Field(default=10, ge=1, le=100, description="Share added per step.")
    step_interval_seconds: int = Field(default=120, ge=1, description="Seconds between steps.")
    ratio_threshold: float = Field(
        default=0.9, gt=0, le=1, description="Go on only while served/expected stays above this."
    )
    cooldown_seconds: int = Field(
        default=300, ge=0, le=86400,
        description="An automatic failback starts no sooner than this after the evacuation settled"
        " (a region taken out of spec.evacuate fails back at once).",
    )
    backoff_seconds: int = Field(
        default=300, ge=1, le=86400,
        description="Wait after an aborted failback before the next attempt; doubles with every further abort"
        " (at most an hour, or this value when it is larger).",
    )


class RegionFailoverSpec(Model):
    """A failover domain as seen from one region."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.evacuate) || self.evacuate.all(r, r == self.region || self.peers.exists(p, p.name == r))",
                    "every name in evacuate must be this region or one of the peers",
                    ".evacuate",
                ),
                cel(
                    "self.peers.all(p, p.name != self.region)",
                    "a peer must not have this region's name",
                    ".peers",
                ),
                cel(
                    "!has(self.evacuate) || size(self.evacuate) <= size(self.peers)",
                    "evacuate must leave at least one region of the domain serving",
                    ".evacuate",
                ),
            ]
        }
    )

    region: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="This region's name. Immutable: a RegionFailover belongs to its region.",
        json_schema_extra=immutable("region"),
    )
    peers: list[Peer] = Field(
        min_length=1,
        max_length=32,
        description="The other regions of the domain, keyed by name (each name once).",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    calendar: RegionCalendar = Field(
        default_factory=RegionCalendar,
        description="This region's time zone and calendar days, for its forecast (default UTC, none);"
        " each peer declares its own.",
    )
    signal: SignalSource = Field(description="The business signal, per region.")
    detection: DetectionPolicy = Field(
        default_factory=DetectionPolicy,
        description="When a region counts as failing, and the guards that hold an evacuation back.",
    )
    selector: LabelSelector = Field(
        description="Deployments of this namespace that take part (each gets a DarkCluster);"
        " required, with at least one label.",
    )
    dark_capacity: DarkCapacityPolicy = Field(
        default_factory=DarkCapacityPolicy, description="How the DarkClusters of the participating Deployments are sized."
    )
    traffic: list[TrafficProvider] = Field(
        default_factory=list, max_length=TRAFFIC_PROVIDERS, description="Traffic providers and the routes they own."
    )
    mode: Mode = Field(
        default=Mode.DRY_RUN,
        description="Who pushes the button. DryRun (the default): decide and report, never act."
        " Manual: act only on spec.evacuate; an Unhealthy verdict is a recommendation."
        " Automatic: an Unhealthy verdict evacuates too.",
    )
    evacuate: list[Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]] = Field(
        default_factory=list,
        max_length=32,
        description="Regions to evacuate now, by hand or from a GitOps commit (each name once)."
        " Takes precedence over the verdicts; taking a region out starts its failback.",
        json_schema_extra=LIST_SET,
    )
    failback: FailbackPolicy = Field(
        default_factory=FailbackPolicy, description="How traffic comes back to a healed region, step by step."
    )


class RegionSignalStatus(Model):
    """The latest signal and verdict for one region."""

    name: str = Field(description="Region name.")
    actual: float | None = Field(default=None, description="Latest signal sample.")
    expected: float | None = Field(default=None, description="Forecast for that sample's time.")
    expected_lower: float | None = Field(default=None, description="Lower bound of the prediction interval.")
    expected_upper: float | None = Field(default=None, description="Upper bound of the prediction interval.")
    ratio: float | None = Field(default=None, description="actual / expected.")
    message: str | None = Field(default=None, description="Why the verdict is what it is, in one sentence.")
    verdict: Verdict = Field(default=Verdict.UNKNOWN, description="Healthy, Unhealthy, HeldBack, Unknown.")
    unhealthy_since: str | None = Field(default=None, description="When the verdict turned Unhealthy.")
    drop_started_at: str | None = Field(
        default=None, description="First sample of the current run under the threshold, while a drop lasts."
    )
    held_back_by: str | None = Field(default=None, description="The guard holding an evacuation back.")
    sampled_at: str | None = Field(default=None, description="Time of the latest sample.")
    share_ratio: float | None = Field(
        default=None,
        description="The region's share of the domain's total over its expected share (as odds against the"
        " rest), over the samples judged; 1 when it keeps its share.",
    )
    evidence_samples: int | None = Field(
        default=None,
        description="Samples a 40 % drop needs to be judged at this region's current expected value (more for a"
        " quiet region, whose counting noise is larger); absent when it could not be shown within"
        " evidenceWindowSamples.",
    )


class Phase(str, enum.Enum):
    """Where a failover domain, or one region's evacuation, stands (see decide/evacuation.py)."""

    STEADY = "Steady"
    EVACUATING = "Evacuating"
    EVACUATED = "Evacuated"
    FAILING_BACK = "FailingBack"


class Actor(str, enum.Enum):
    """What caused a transition of an evacuation."""

    VERDICT = "Verdict"
    SPEC_EVACUATE = "SpecEvacuate"
    FAILBACK = "Failback"


class Role(str, enum.Enum):
    """A region's part in the evacuations under way, as this region's operator sees it."""

    SERVING = "Serving"
    EVACUATED = "Evacuated"
    SAVIOR = "Savior"


class EvacuationTimeline(Model):
    """The milestones of one evacuation: each an RFC 3339 time and its seconds since the decision."""

    region: str = Field(description="The region evacuated.")
    actor: Actor = Field(description="What decided the evacuation: Verdict or SpecEvacuate.")
    reason: str = Field(default="", description="Why the evacuation was decided, in one sentence.")
    decided_at: str = Field(description="When the evacuation was decided.")
    ungated_at: str | None = Field(
        default=None,
        description="When savior dark capacity was ungated and Ready (this region's own, when it is a savior).",
    )
    shifted_at: str | None = Field(default=None, description="When every proxy route held the evacuation's weights.")
    settled_at: str | None = Field(default=None, description="When every route, DNS included, held them.")
    failback_started_at: str | None = Field(default=None, description="When the last failback attempt started.")
    failback_done_at: str | None = Field(
        default=None, description="When the recorded weights were restored and held again."
    )
    ungated_after_seconds: float | None = Field(default=None, description="Seconds from the decision to ungatedAt.")
    shifted_after_seconds: float | None = Field(default=None, description="Seconds from the decision to shiftedAt.")
    settled_after_seconds: float | None = Field(default=None, description="Seconds from the decision to settledAt.")
    failback_started_after_seconds: float | None = Field(
        default=None, description="Seconds from the decision to failbackStartedAt."
    )
    failback_done_after_seconds: float | None = Field(
        default=None, description="Seconds from the decision to failbackDoneAt."
    )


class RegionEvacuation(Model):
    """One region's evacuation under way, from its decision to the end of its failback."""

    region: str = Field(description="The region evacuated.")
    phase: Phase = Field(description="Evacuating, Evacuated or FailingBack.")
    actor: Actor = Field(description="What caused the last transition: Verdict, SpecEvacuate or Failback.")
    reason: str = Field(default="", description="Why the last transition happened, in one sentence.")
    share: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of its own traffic the region is meant to serve now: 1 until the shift, 0 once"
        " evacuated, rising step by step during failback.",
    )
    failback_step: int = Field(default=0, ge=0, description="Failback steps taken in the current attempt.")
    step_held_at: str | None = Field(
        default=None, description="When every route held the current failback step's weights."
    )
    aborts: int = Field(default=0, ge=0, description="Failback attempts aborted so far (sets the backoff).")
    backoff_until: str | None = Field(
        default=None, description="No failback attempt before this time (after an aborted one)."
    )
    last_transition_at: str = Field(description="When the phase last changed (the dwell counts from it).")
    waiting_for: str | None = Field(default=None, description="What the evacuation waits for now, if anything.")
    timeline: EvacuationTimeline = Field(description="The milestones of this evacuation.")


class RouteWeights(Model):
    """The weights of one route regionshift manages, per region (backend or weighted record)."""

    provider: TrafficProviderKind = Field(description="GatewayAPI, IngressNginx or ExternalDNS.")
    route: str = Field(description="Name of the HTTPRoute, Ingress or DNSEndpoint.")
    current: dict[str, int] | None = Field(default=None, description="Weights the provider reported last.")
    recorded: dict[str, int] | None = Field(
        default=None,
        description="Weights in force before the first change; failback restores exactly these.",
    )
    desired: dict[str, int] | None = Field(default=None, description="Weights regionshift wants now.")
    written: dict[str, int] | None = Field(default=None, description="Weights regionshift wrote last.")
    written_at: str | None = Field(default=None, description="When it wrote them.")
    holds: bool = Field(
        default=False, description="True when the provider reports the desired weights and verified them."
    )
    drifted_at: str | None = Field(
        default=None, description="When something else last changed a weight regionshift had set here."
    )
    conflict: bool = Field(
        default=False,
        description="True when something else overwrote the weights twice within the dwell time: regionshift"
        " stops writing the same weights again until the route holds them or its desired weights change.",
    )


class TransplantStep(str, enum.Enum):
    """Where the transplant of one Deployment stands (see decide/transplant.py)."""

    RAISING = "Raising"
    TRANSPLANTED = "Transplanted"
    RETURNING = "Returning"


class Transplant(Model):
    """The transplant of one participating Deployment: dark capacity moved into the main Deployment."""

    deployment: str = Field(description="The main Deployment (the DarkCluster's targetDeployment).")
    dark_cluster: str = Field(description="The DarkCluster whose dark replicas moved.")
    step: TransplantStep = Field(
        description="Raising: the main Deployment (or its autoscaler's minReplicas) was raised, waiting for its"
        " new pods to be Ready. Transplanted: the dark one was lowered. Returning: the evacuation ended, the"
        " dark capacity is given back, then the main Deployment returns to its recorded replicas."
    )
    autoscaler: str | None = Field(
        default=None, description="The HorizontalPodAutoscaler targeting the Deployment, if one did."
    )
    recorded_replicas: int = Field(
        ge=0,
        description="The main Deployment's spec.replicas before the transplant (with an autoscaler: its"
        " minReplicas); the return restores exactly this.",
    )
    raised_to: int = Field(ge=0, description="The replicas (or minReplicas) the transplant set.")
    moved_replicas: int = Field(ge=0, description="Dark replicas moved into the main Deployment.")
    since: str = Field(description="RFC 3339 time the current step started.")
    waiting_for: str | None = Field(default=None, description="What the transplant waits for now, if anything.")


class Transition(Model):
    """One transition of one region's evacuation."""

    region: str = Field(description="The region whose evacuation changed phase.")
    from_phase: Phase = Field(description="Phase before the transition.")
    to_phase: Phase = Field(description="Phase after the transition.")
    reason: str = Field(default="", description="Why, in one sentence.")
    actor: Actor = Field(description="Verdict, SpecEvacuate or Failback.")
    at: str = Field(description="RFC 3339 time of the transition.")


class PlannedWeights(Model):
    """A weight change an evacuation would make on one route."""

    provider: TrafficProviderKind = Field(description="GatewayAPI, IngressNginx or ExternalDNS.")
    route: str = Field(description="Name of the route.")
    from_weights: dict[str, int] = Field(default_factory=dict, description="Weights now, per region.")
    to_weights: dict[str, int] = Field(default_factory=dict, description="Weights after the shift, per region.")


class EvacuationPlan(Model):
    """What evacuating some regions would do here (DryRun, or a recommendation in Manual mode)."""

    regions: list[str] = Field(default_factory=list, description="The regions the plan evacuates.")
    ungate: list[str] = Field(
        default_factory=list, description="DarkClusters of this region whose gate the plan would open."
    )
    weights: list[PlannedWeights] = Field(
        default_factory=list, description="Weight changes on this region's routes, proxy routes before DNS."
    )
    message: str = Field(default="", description="The plan in one or two sentences.")


class Recommendation(Model):
    """Manual mode: regions whose verdict is Unhealthy, waiting for spec.evacuate."""

    regions: list[str] = Field(default_factory=list, description="Regions recommended for evacuation.")
    reason: str = Field(default="", description="Why, in one sentence.")
    since: str = Field(description="RFC 3339 time the recommendation took its current form.")


class RegionFailoverStatus(Model):
    """What the operator observed and decided for one failover domain."""

    observed_generation: int | None = Field(default=None, description="Last spec generation acted on.")
    last_evaluated_at: str | None = Field(
        default=None,
        description="RFC 3339 time of the last detection run, whatever its outcome: an old time means a stale status.",
    )
    phase: Phase | None = Field(
        default=None,
        description="Steady, Evacuating, Evacuated or FailingBack: the most urgent phase of the evacuations"
        " under way (Evacuating, then FailingBack, then Evacuated), Steady when there is none.",
    )
    evacuated_regions: str | None = Field(
        default=None,
        max_length=4096,
        description="The regions under evacuation in one line, for the EVACUATED column of kubectl get:"
        " an Evacuated region by name, one still Evacuating or FailingBack with its phase (and the share it"
        " serves again), e.g. 'us-west, eu-west (FailingBack 30%)'. Derived from evacuations by the state"
        " machine (decide/summary.py); absent in Steady.",
    )
    regions: list[RegionSignalStatus] = Field(default_factory=list, description="Per-region signal.")
    unhealthy: list[str] = Field(default_factory=list, description="Regions whose verdict is Unhealthy.")
    held_back: list[str] = Field(
        default_factory=list, description="Regions that look unhealthy but a guard holds the evacuation back."
    )
    evacuations: list[RegionEvacuation] = Field(
        default_factory=list,
        description="Evacuations under way, one per evacuated region (keyed by region).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["region"]},
    )
    roles: dict[str, Role] | None = Field(
        default=None, description="Each region's role while evacuations are under way: Evacuated, Savior or Serving"
        " (absent in Steady; empty maps are never written: server-side apply would store them as null).",
    )
    weights: list[RouteWeights] = Field(
        default_factory=list, description="Weights of every route regionshift manages, per region."
    )
    savior_capacity: dict[str, int] | None = Field(
        default=None,
        description="Ready dark replicas per savior that the weight split uses (refreshed when a savior joins,"
        " leaves, or its capacity moves by more than a fifth).",
    )
    evacuation_gate: Gate | None = Field(
        default=None,
        description="The gate evacuations hold on every DarkCluster this RegionFailover owns (one write opens them"
        " all; their controller combines it with each one's spec.gate).",
    )
    evacuation_gate_written_at: str | None = Field(
        default=None, description="When the evacuation gate was last written."
    )
    deferred: dict[str, str] | None = Field(
        default=None,
        description="Regions that spec.evacuate or an Unhealthy verdict would evacuate but that wait, and why"
        " (the dwell after a change, or no region left to serve).",
    )
    last_evacuation: EvacuationTimeline | None = Field(
        default=None, description="The timeline of the last evacuation that ended (failback done)."
    )
    history: list[Transition] = Field(
        default_factory=list, max_length=20, description="The last transitions, oldest first (at most 20)."
    )
    recommendation: Recommendation | None = Field(
        default=None, description="Manual mode: the evacuation the verdicts recommend, waiting for spec.evacuate."
    )
    plan: EvacuationPlan | None = Field(
        default=None, description="DryRun and Manual mode: what an evacuation would do here, written nowhere else."
    )
    transplants: list[Transplant] = Field(
        default_factory=list,
        description="Transplants under way, one per participating Deployment (keyed by deployment), written"
        " under the field manager regionshift-transplant; see darkCapacity.transplantAfterSeconds.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["deployment"]},
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Detecting and GuardsKnown (written by detection), Sizing and DarkClustersSynced (by sizing),"
        " RoutesReady and ActionsApplied (by the evacuation), TransplantApplied (by a transplant).",
    )


class RegionFailover(Model):
    """A failover domain as seen from this cluster's region: the regions, the business signal
    that tells a failing region, the Deployments that take part, and who pushes the button.

    The operator compares each region's signal with its forecast and keeps a DarkCluster
    sized for every participating Deployment. A new RegionFailover only reports (mode
    DryRun) until its owner changes the mode.
    """

    api_version: str = Field(
        default=f"{API_GROUP}/{API_VERSION}", description="Versioned schema of this object."
    )
    kind: Literal["RegionFailover"] = Field(default="RegionFailover", description="The kind: RegionFailover.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: RegionFailoverSpec = Field(
        description="The regions, the signal, detection, the participating Deployments and the mode."
    )
    status: RegionFailoverStatus = Field(
        default_factory=RegionFailoverStatus, description="What the operator observed and decided; written by it only."
    )
