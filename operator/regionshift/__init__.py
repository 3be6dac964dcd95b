"""regionshift: evacuate a failing region in seconds.

A Kubernetes operator on kopf. It detects a regional outage from a business signal that
falls off its forecast, keeps pre-scaled dark capacity warm and gated (its pods without
their target's labels) in every savior region, ungates it at once and shifts traffic
through weighted routes.

The public names are re-exported here; the modules hold one responsibility each.
"""

from __future__ import annotations

from regionshift.errors import (
    BuildError,
    ClusterError,
    NoData,
    NotANumber,
    PrometheusUnavailable,
    QueryRejected,
    ReconcileError,
    RegionshiftError,
    SignalError,
    StartupError,
    TargetNotFound,
)
from regionshift.api.models import (
    API_GROUP,
    API_VERSION,
    DarkCluster,
    DarkClusterSpec,
    DarkClusterStatus,
    Gate,
    Mode,
    RegionFailover,
    RegionFailoverSpec,
    RegionFailoverStatus,
    Verdict,
)
from regionshift.adapters.prometheus import PrometheusClient, Series

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "BuildError",
    "ClusterError",
    "DarkCluster",
    "DarkClusterSpec",
    "DarkClusterStatus",
    "Gate",
    "Mode",
    "NoData",
    "NotANumber",
    "PrometheusClient",
    "PrometheusUnavailable",
    "QueryRejected",
    "ReconcileError",
    "RegionFailover",
    "RegionFailoverSpec",
    "RegionFailoverStatus",
    "RegionshiftError",
    "Series",
    "SignalError",
    "StartupError",
    "TargetNotFound",
    "Verdict",
]
