"""A RegionFailover's spec and status mid-evacuation, as the operator writes them, for the kubectl plugin's tests.

Three regions, us-east seen from its own operator: us-west Unhealthy and Evacuating (gates
open, proxy routes shifted, DNS not yet), eu-west held back by a recent rollout, the DNS
route in Conflict. Valid against :class:`regionshift.api.models.RegionFailoverStatus`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MID_EVACUATION", "SPEC"]

SPEC: dict[str, Any] = {
    "region": "us-east",
    "peers": [{"name": "us-west"}, {"name": "eu-west"}],
    "mode": "Automatic",
    "evacuate": [],
}

MID_EVACUATION: dict[str, Any] = {
    "observedGeneration": 3,
    "lastEvaluatedAt": "2026-11-29T02:59:57Z",
    "phase": "Evacuating",
    "evacuatedRegions": "us-west (Evacuating)",
    "regions": [
        {"name": "us-east", "actual": 1234.5, "expected": 1180.2, "ratio": 1.046, "verdict": "Healthy",
         "sampledAt": "2026-11-29T02:59:57Z"},
        {"name": "us-west", "actual": 12.0, "expected": 1150.0, "ratio": 0.0104, "verdict": "Unhealthy",
         "unhealthySince": "2026-11-29T02:59:40Z", "message": "3 samples under 0.7 of the forecast"},
        {"name": "eu-west", "actual": 51234.0, "expected": 90000.0, "ratio": 0.569, "verdict": "HeldBack",
         "heldBackBy": "RecentRollout", "message": "a Deployment rolled out 40 s ago"},
    ],
    "unhealthy": ["us-west"],
    "heldBack": ["eu-west"],
    "evacuations": [{
        "region": "us-west", "phase": "Evacuating", "actor": "Verdict", "reason": "us-west is Unhealthy",
        "share": 0.0, "lastTransitionAt": "2026-11-29T02:59:45Z", "waitingFor": "DNS weights to hold",
        "timeline": {"region": "us-west", "actor": "Verdict", "reason": "us-west is Unhealthy",
                     "decidedAt": "2026-11-29T02:59:45Z", "ungatedAt": "2026-11-29T02:59:46Z",
                     "ungatedAfterSeconds": 1.21, "shiftedAt": "2026-11-29T02:59:48Z", "shiftedAfterSeconds": 3.4},
    }],
    "roles": {"us-east": "Savior", "us-west": "Evacuated", "eu-west": "Savior"},
    "weights": [
        {"provider": "GatewayAPI", "route": "web", "current": {"us-east": 50, "eu-west": 50, "us-west": 0},
         "desired": {"us-east": 50, "eu-west": 50, "us-west": 0}, "holds": True},
        {"provider": "ExternalDNS", "route": "web-dns", "current": {"us-east": 33, "us-west": 34, "eu-west": 33},
         "desired": {"us-east": 50, "us-west": 0, "eu-west": 50}, "holds": False, "conflict": True},
    ],
    "evacuationGate": "Open",
    "history": [{"region": "us-west", "fromPhase": "Steady", "toPhase": "Evacuating", "actor": "Verdict",
                 "reason": "us-west is Unhealthy", "at": "2026-11-29T02:59:45Z"}],
    "conditions": [
        {"type": "Detecting", "status": "True", "reason": "Running", "lastTransitionTime": "2026-11-29T00:00:00Z"},
        {"type": "RoutesReady", "status": "False", "reason": "Conflict",
         "message": "web-dns: another writer set the weights", "lastTransitionTime": "2026-11-29T02:59:50Z"},
    ],
}
