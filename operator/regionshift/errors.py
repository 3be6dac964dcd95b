"""Every exception regionshift raises on purpose, in one tree.

Callers catch the narrowest class that tells them what to do next; handlers turn the
ones caused by a resource's content into a status condition and an Event, never a crash.

    RegionshiftError                 root of everything raised here on purpose
    ├── ClusterError                 the local control plane could not be built, started or reached
    │   ├── BuildError               compiling the pinned Go modules failed
    │   └── StartupError             a component exited or did not become healthy in time
    ├── ReconcileError               a resource cannot be acted on as it stands
    │   ├── TargetNotFound           a DarkCluster's target Deployment does not exist (yet)
    │   └── TrafficError             a traffic provider cannot act on a route as it stands
    │       ├── RouteNotFound        the HTTPRoute, Ingress or DNSEndpoint does not exist
    │       ├── ServiceNotFound      a Service the route needs (the local one or a peer's) does not exist
    │       ├── LocalBackendMissing  the route has nothing for this region (no local backendRef, no own record)
    │       ├── ForeignCanary        another canary Ingress already serves the same host and path
    │       ├── PeerUnreachable      no usable gateway address for a peer, or its Service name is taken
    │       ├── WeightUnparsable     a weight on the object is missing or not a valid integer
    │       ├── InvalidWeights       the desired weights break an invariant (range, all zero, unknown region)
    │       └── WriteConflict        the object kept changing: every guarded retry met a newer version
    └── SignalError                  the business signal cannot be read
        ├── PrometheusUnavailable    Prometheus did not answer (connection, timeout, 5xx) after retries
        ├── QueryRejected            Prometheus refused the query (bad PromQL, 4xx)
        ├── NoData                   the query matched no series or returned no samples
        ├── NotANumber               the samples are NaN or infinite
        └── TokenSecretNotOptedIn    signal.bearerTokenSecret names a Secret without the opt-in label
"""

from __future__ import annotations

__all__ = [
    "BuildError",
    "ClusterError",
    "NoData",
    "NotANumber",
    "PrometheusUnavailable",
    "QueryRejected",
    "ReconcileError",
    "RegionshiftError",
    "SignalError",
    "StartupError",
    "TargetNotFound",
    "TokenSecretNotOptedIn",
    "TrafficError",
    "RouteNotFound",
    "ServiceNotFound",
    "LocalBackendMissing",
    "ForeignCanary",
    "PeerUnreachable",
    "WeightUnparsable",
    "InvalidWeights",
    "WriteConflict",
]


class RegionshiftError(Exception):
    """Root of every exception regionshift raises on purpose."""


class ClusterError(RegionshiftError):
    """The local control plane could not be built, started or reached."""


class BuildError(ClusterError):
    """Compiling the pinned Go modules failed."""


class StartupError(ClusterError):
    """A control-plane component exited or did not become healthy in time."""


class ReconcileError(RegionshiftError):
    """A resource cannot be acted on as it stands; the reason goes into its status."""

    reason: str = "ReconcileError"


class TargetNotFound(ReconcileError):
    """A DarkCluster's target Deployment does not exist (yet)."""

    reason = "TargetNotFound"


class TrafficError(ReconcileError):
    """A traffic provider cannot act on a route as it stands; nothing was written.

    ``kind`` and ``name`` say which object (an HTTPRoute, Ingress, DNSEndpoint or Service).
    """

    reason = "TrafficError"

    def __init__(self, message: str, *, kind: str = "", name: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


class RouteNotFound(TrafficError):
    """The HTTPRoute, Ingress or DNSEndpoint a provider owns does not exist."""

    reason = "RouteNotFound"


class ServiceNotFound(TrafficError):
    """A Service the route needs does not exist: the local Service, or a peer's before it gets weight."""

    reason = "ServiceNotFound"


class LocalBackendMissing(TrafficError):
    """The route has nothing for this region, so there is no weight to shift.

    An HTTPRoute without a rule whose backendRefs include the local Service, or a
    DNSEndpoint without a record whose setIdentifier is this region.
    """

    reason = "LocalBackendMissing"


class ForeignCanary(TrafficError):
    """Another canary Ingress already serves the same host and path (ingress-nginx allows one)."""

    reason = "ForeignCanary"


class PeerUnreachable(TrafficError):
    """A peer that would get traffic cannot be reached: its gateway address is missing or not
    host:port, or the Service meant to reach it exists and was not created by regionshift."""

    reason = "PeerUnreachable"


class WeightUnparsable(TrafficError):
    """A weight on the object is missing or not a valid integer; never read as 0."""

    reason = "WeightUnparsable"


class InvalidWeights(TrafficError):
    """The desired weights break an invariant: out of range, all zero, or a region without a backend."""

    reason = "InvalidWeights"


class WriteConflict(TrafficError):
    """The object changed under every guarded write (resourceVersion conflict) until the retries ran out."""

    reason = "WriteConflict"


class SignalError(RegionshiftError):
    """The business signal cannot be read."""


class PrometheusUnavailable(SignalError):
    """Prometheus did not answer (connection refused, timeout, 5xx) after every retry.

    Also raised at once, without retrying, when what answered is not the Prometheus API
    (a proxy's login page, a body that is not a Prometheus result).
    """


class QueryRejected(SignalError):
    """Prometheus refused the query: bad PromQL or another 4xx answer.

    Also raised when the answer cannot be used as asked: several series where one value is
    needed, or a string. Never retried: the query has to change.
    """


class NoData(SignalError):
    """The query matched no series, or the series has no samples in the window."""


class NotANumber(SignalError):
    """The samples are NaN or infinite, so no ratio can be taken."""


class TokenSecretNotOptedIn(SignalError):
    """``signal.bearerTokenSecret`` names a Secret that does not carry the opt-in label.

    The operator sends a token only from a Secret labelled ``regionshift.io/prometheus-token:
    "true"``: whoever may write a RegionFailover chooses the Prometheus URL, and must not be
    able to have the operator send any other Secret's ``token`` there. Nothing is sent.
    """
