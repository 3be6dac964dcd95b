"""Weight arithmetic for evacuation and failback, with the safety invariants checked before every write.

A route (an HTTPRoute rule, a canary Ingress, a set of weighted DNS records) carries one
weight per region: the local backend, one backend per peer region, or one weighted record
per region. Weights are proportional, not percentages (Gateway API: share of the sum,
0..1,000,000; ingress-nginx: out of ``canary-weight-total``; Route 53: 0..255).

Evacuating a region moves the weight it had before the first change (the *recorded*
weights) to the saviors, in proportion to their Ready dark capacity; a savior without
warm capacity gets nothing. During failback the evacuated region keeps ``share`` of its
recorded weight and the rest stays with the saviors; at share 1 for every region the
recorded weights come back exactly, byte for byte.

Two layers behave differently:

* **Proxy** routes (Gateway API, ingress-nginx) are this region's own: every backend lives
  in the route, a savior's backend may be added (a selector-less Service per peer), and the
  route must never end with every weight 0. Small weights are scaled up (proportions kept)
  so a split among saviors has a resolution of at least 1/1000.
* **DNS** routes hold the weighted records this operator sees; other regions' records live
  in their own clusters. Records are never added or scaled (a DNS weight is compared with
  records elsewhere), and the evacuated region's record may go to 0 as long as some savior
  serves somewhere in the domain.

When no savior can take the moved weight, it stays where it was: a struggling region still
serves better than no region at all. Pure functions only; no I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Set as AbstractSet
from fractions import Fraction

from regionshift.api.models import TrafficProviderKind

__all__ = [
    "Layer",
    "MAX_BACKEND_REFS",
    "MAX_WEIGHT",
    "RESOLUTION",
    "WeightInvariantError",
    "apportion",
    "check_invariants",
    "failback_share",
    "layer_of",
    "target_weights",
    "unplaced",
]

MAX_WEIGHT = 1_000_000
"""Gateway API's upper bound for a backendRef weight (the strictest bound regionshift writes)."""

MAX_BACKEND_REFS = 16
"""Gateway API's limit of backendRefs per rule."""

RESOLUTION = 1000
"""A proxy route whose weights sum to less is scaled up before a split (proportions kept)."""


class Layer(str, enum.Enum):
    """Which layer of traffic a route belongs to: proxy routes move first, DNS follows."""

    PROXY = "Proxy"
    DNS = "DNS"


def layer_of(kind: TrafficProviderKind | str) -> Layer:
    """The layer of a traffic provider."""
    return Layer.DNS if TrafficProviderKind(kind) == TrafficProviderKind.EXTERNAL_DNS else Layer.PROXY


class WeightInvariantError(ValueError):
    """Weights that must never be written; the message lists every violation."""

    def __init__(self, route: str, violations: list[str]) -> None:
        self.route = route
        self.violations = tuple(violations)
        super().__init__(f"refusing weights on {route}: " + "; ".join(violations))


def apportion(total: int, capacity: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` into integers in proportion to ``capacity`` (largest remainder, ties by name).

    Regions with capacity 0 or less get nothing; the parts always sum to ``total``.
    """
    positive = {r: c for r, c in capacity.items() if c > 0}
    if total < 0:
        raise ValueError(f"cannot apportion a negative total {total}")
    if not positive:
        if total:
            raise ValueError("nothing to apportion to: no region has capacity")
        return {}
    whole = sum(positive.values())
    exact = {r: Fraction(total * c, whole) for r, c in positive.items()}
    parts = {r: math.floor(x) for r, x in exact.items()}
    left = total - sum(parts.values())
    by_remainder = sorted(positive, key=lambda r: (-(exact[r] - parts[r]), r))
    for region in by_remainder[:left]:
        parts[region] += 1
    return parts


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def failback_share(*, step: int, step_percent: int) -> float:
    """The share a region serves after ``step`` failback steps of ``step_percent`` each (at most 1)."""
    if step < 0 or not 1 <= step_percent <= 100:
        raise ValueError(f"bad failback step {step} of {step_percent}%")
    if step * step_percent >= 100:
        return 1.0
    return step * step_percent / 100


def target_weights(
    *,
    recorded: Mapping[str, int],
    shares: Mapping[str, float],
    capacity: Mapping[str, int],
    resolvable: AbstractSet[str],
    layer: Layer,
) -> dict[str, int]:
    """The weights a route should carry.

    ``recorded``: the route's weights before the first change, per region. ``shares``: for
    each region being evacuated, the share of its recorded weight it keeps (0 evacuated, 1
    untouched). ``capacity``: Ready dark replicas of each region that may take traffic (the
    caller leaves out evacuated and Unhealthy regions). ``resolvable``: regions whose backend
    resolves on this route (proxy layer; the local backend counts as resolving).

    Returns ``recorded`` itself (same keys, same values) when every share is 1.
    """
    for region, weight in recorded.items():
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"recorded weight of {region} is {weight!r}, not an integer in 0..{MAX_WEIGHT}")
    for region, share in shares.items():
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share of {region} must lie in 0..1, got {share}")
    moving = _moving(recorded, shares)
    if not moving:
        return dict(recorded)
    saviors = _saviors(shares, capacity)
    receivers = _receivers(recorded, shares, capacity, resolvable, layer)
    scale = 1
    if layer is Layer.PROXY:
        total = sum(recorded.values())
        scale = max(1, math.ceil(RESOLUTION / total)) if total else 1
        scale = max(1, min(scale, MAX_WEIGHT // max(recorded.values())))

    if not receivers and not (layer is Layer.DNS and saviors):
        return dict(recorded)  # nowhere to go: the weight stays where it was
    out = {r: w * scale for r, w in recorded.items()}
    moved = 0
    for region, share in moving.items():
        keep = _round_half_up(out[region] * share)
        moved += out[region] - keep
        out[region] = keep
    for region, extra in apportion(moved, receivers).items() if receivers else ():
        out[region] = out.get(region, 0) + extra
    return out


def unplaced(
    *,
    recorded: Mapping[str, int],
    shares: Mapping[str, float],
    capacity: Mapping[str, int],
    resolvable: AbstractSet[str],
    layer: Layer,
) -> list[str]:
    """Regions that should give weight away on this route but cannot: no savior can take it.

    Same arguments as :func:`target_weights`, which leaves their weight where it was; the
    caller must not treat such a route as shifted.
    """
    moving = _moving(recorded, shares)
    if not moving or _receivers(recorded, shares, capacity, resolvable, layer) or (
        layer is Layer.DNS and _saviors(shares, capacity)
    ):
        return []
    return sorted(moving)


def _moving(recorded: Mapping[str, int], shares: Mapping[str, float]) -> dict[str, Fraction]:
    return {r: Fraction(shares[r]) for r in recorded if r in shares and shares[r] < 1.0 and recorded[r] > 0}


def _saviors(shares: Mapping[str, float], capacity: Mapping[str, int]) -> dict[str, int]:
    return {r: c for r, c in capacity.items() if c > 0 and r not in shares}


def _receivers(recorded: Mapping[str, int], shares: Mapping[str, float], capacity: Mapping[str, int],
               resolvable: AbstractSet[str], layer: Layer) -> dict[str, int]:
    saviors = _saviors(shares, capacity)
    if layer is Layer.PROXY:
        return {r: c for r, c in saviors.items() if r in resolvable}
    return {r: c for r, c in saviors.items() if r in recorded}


def check_invariants(
    *,
    route: str,
    weights: Mapping[str, int],
    layer: Layer,
    local: str,
    resolvable: AbstractSet[str],
    serving_elsewhere: bool,
) -> None:
    """Raise :class:`WeightInvariantError` unless ``weights`` are safe to write on ``route``.

    Checked: every weight an integer within 0..1,000,000; at most 16 backends on a proxy
    route; not every weight 0 (on a DNS route only while no region elsewhere serves, as
    ``serving_elsewhere`` says); on a proxy route a peer gets a non-zero weight only when its
    backend resolves.
    """
    violations: list[str] = []
    for region, weight in sorted(weights.items()):
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= MAX_WEIGHT:
            violations.append(f"weight of {region} is {weight!r}, not an integer in 0..{MAX_WEIGHT}")
    if layer is Layer.PROXY and len(weights) > MAX_BACKEND_REFS:
        violations.append(f"{len(weights)} backends, more than the {MAX_BACKEND_REFS} a rule may hold")
    if not any(isinstance(w, int) and w > 0 for w in weights.values()):
        if layer is Layer.PROXY or not serving_elsewhere:
            violations.append("every weight would be 0: no region would serve")
    if layer is Layer.PROXY:
        for region, weight in sorted(weights.items()):
            if region != local and isinstance(weight, int) and weight > 0 and region not in resolvable:
                violations.append(f"{region} would get weight {weight} but its backend does not resolve")
    if violations:
        raise WeightInvariantError(route, violations)
