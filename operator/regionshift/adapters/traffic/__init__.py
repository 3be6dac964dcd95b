"""Traffic providers: move a region's traffic share on the routing objects users already run.

One small interface (:class:`~.base.TrafficProvider`: read, apply, verify, restore, and
drift), one module per traffic API, and one factory choosing by ``TrafficProviderKind``:

* :mod:`.gatewayapi`: Gateway API HTTPRoute backendRef weights (local Service and one
  selector-less Service per peer, :mod:`.peers`);
* :mod:`.ingress_nginx`: a canary Ingress owned by the RegionFailover;
* :mod:`.externaldns`: this region's own weighted record in an external-dns DNSEndpoint.

Providers take desired weights as plain data ``{region: int}`` and never compute them;
the arithmetic and its invariants are pure functions in ``decide/``. The RegionFailover
controller reaches them through :mod:`regionshift.controllers.regionfailover.routes`.
"""

from .base import (
    FIELD_MANAGER,
    Backends,
    Drift,
    RouteWeights,
    TrafficProvider,
    Verification,
    Weights,
    conventional_backends,
    peer_service_name,
)
from .factory import provider_for
from .peers import ensure_peer_service

__all__ = [
    "FIELD_MANAGER",
    "Backends",
    "Drift",
    "RouteWeights",
    "TrafficProvider",
    "Verification",
    "Weights",
    "conventional_backends",
    "ensure_peer_service",
    "peer_service_name",
    "provider_for",
]
