"""How the regions of a domain learn each other's progress without writing to each other's clusters.

Each region's operator writes only to its own cluster. What the others need to know about
it, it exports on its own ``/metrics``, which the domain's shared Prometheus scrapes (the
same Prometheus the business signal comes from):

* ``regionshift_region_dark_replicas{regionfailover, region, state}``: its warm and Ready
  dark replicas, so that the others split an evacuated region's weight in proportion to
  each savior's Ready capacity, and give none to a savior without it;
* ``regionshift_region_deployments_ready{regionfailover, region}``: whether its own
  Deployments are Ready, which the saviors check before its failback;
* ``regionshift_region_served_share{regionfailover, region}``: the share of its own traffic
  its evacuation says it serves (1 in Steady), so that a savior re-gates its dark pods only
  once the region it saved serves its whole share again.

``regionfailover`` is the RegionFailover's name, the same in every region of a domain.
:func:`export` sets this region's series; :func:`read_peers` reads the others'.

The dark capacity moves fastest of the three during an evacuation (a savior's dark pods
start serving one DarkCluster after the other), and the evacuated region shifts nothing
before it sees some. So it is exported *as it changes*, not once per evacuation run: each
run hands the RegionFailover's DarkClusters and their capacity to :func:`track`, and the
DarkCluster controller, after every status it writes, hands the new figures of one
DarkCluster to :func:`dark_cluster_moved`, which updates the region's sums and exports them
at once. Both are observations only (the state lives in the objects' status); after a
restart the first run starts the table again from the listed statuses. A peer
that exports nothing (its operator down, Prometheus not scraping it) is simply missing:
no capacity, Deployments not known to be Ready, served share unknown, which holds back
what depends on it and never moves traffic onto it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from regionshift.adapters.prometheus import PrometheusClient
from regionshift.decide.evacuation import RegionCapacity
from regionshift.errors import NoData
from regionshift.metrics import REGION_DARK_REPLICAS, REGION_DEPLOYMENTS_READY, REGION_SERVED_SHARE

__all__ = ["PeerProgress", "dark_cluster_moved", "export", "export_capacity", "export_served_share", "forget", "read_peers", "track"]


@dataclass(frozen=True, kw_only=True)
class PeerProgress:
    """What the other regions exported, as the shared Prometheus has it now."""

    capacity: dict[str, RegionCapacity] = field(default_factory=dict)
    deployments_ready: dict[str, bool] = field(default_factory=dict)
    served_share: dict[str, float] = field(default_factory=dict)


def export(*, name: str, region: str, warm: int, ready: int, deployments_ready: bool | None, served_share: float) -> None:
    """Set this region's three series for the peers."""
    export_capacity(name=name, region=region, warm=warm, ready=ready, deployments_ready=deployments_ready)
    export_served_share(name=name, region=region, served_share=served_share)


def export_served_share(*, name: str, region: str, served_share: float) -> None:
    """Set the share of its own traffic this region serves (after the writes that make it: a savior re-gates on it)."""
    REGION_SERVED_SHARE.labels(name, region).set(served_share)


def export_capacity(*, name: str, region: str, warm: int, ready: int, deployments_ready: bool | None) -> None:
    """Set this region's dark capacity and Deployments' readiness, as observed.

    The evacuation exports them as soon as it has observed them, before its writes: the
    peers shift traffic onto Ready dark capacity, and every second the series waits is a
    second they wait. The served share is exported only after the writes that make it
    (:func:`export`): a savior re-gates on it.
    """
    REGION_DARK_REPLICAS.labels(name, region, "warm").set(warm)
    REGION_DARK_REPLICAS.labels(name, region, "ready").set(ready)
    if deployments_ready is not None:
        REGION_DEPLOYMENTS_READY.labels(name, region).set(1 if deployments_ready else 0)


@dataclass
class _Tracked:
    """One RegionFailover's dark capacity, DarkCluster by DarkCluster, and the sums exported."""

    name: str
    region: str
    members: dict[str, tuple[int, int]]
    """DarkCluster name → (warm, ready)."""

    def sums(self) -> tuple[int, int]:
        return sum(w for w, _ in self.members.values()), sum(r for _, r in self.members.values())


_tracked: dict[tuple[str, str], _Tracked] = {}
"""(namespace, RegionFailover uid) → its DarkClusters' capacity."""
_lock = threading.Lock()


def track(*, namespace: str, uid: str, name: str, region: str, members: Mapping[str, tuple[int, int]],
          deployments_ready: bool | None) -> tuple[int, int]:
    """An evacuation run's view of its DarkClusters' (warm, ready): kept for :func:`dark_cluster_moved`, and exported.

    Returns the (warm, ready) sums it exported.
    """
    with _lock:
        tracked = _tracked[(namespace, uid)] = _Tracked(name=name, region=region, members=dict(members))
        warm, ready = tracked.sums()
        export_capacity(name=name, region=region, warm=warm, ready=ready, deployments_ready=deployments_ready)
    return warm, ready


def dark_cluster_moved(*, namespace: str, owner_uid: str, dark_cluster: str, warm: int, ready: int) -> bool:
    """One DarkCluster's capacity as its controller just wrote it: the region's sums exported at once.

    Nothing happens for a DarkCluster no run has tracked (yet) as its RegionFailover's; the
    next run lists it. Returns whether the sums were exported. Safe from any thread.
    """
    with _lock:
        tracked = _tracked.get((namespace, owner_uid))
        if tracked is None or dark_cluster not in tracked.members or tracked.members[dark_cluster] == (warm, ready):
            return False
        tracked.members[dark_cluster] = (warm, ready)
        total_warm, total_ready = tracked.sums()
        export_capacity(name=tracked.name, region=tracked.region, warm=total_warm, ready=total_ready,
                        deployments_ready=None)
    return True


def forget(*, name: str, region: str) -> None:
    """Stop exporting a RegionFailover that went away."""
    with _lock:
        for key in [k for k, t in _tracked.items() if (t.name, t.region) == (name, region)]:
            del _tracked[key]
    for state in ("warm", "ready"):
        _remove(REGION_DARK_REPLICAS, name, region, state)
    _remove(REGION_DEPLOYMENTS_READY, name, region)
    _remove(REGION_SERVED_SHARE, name, region)


def _remove(metric: object, *labels: str) -> None:
    try:
        metric.remove(*labels)  # type: ignore[attr-defined]
    except KeyError:
        pass


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


async def _by_region(prom: PrometheusClient, query: str, *, extra: str | None = None) -> dict[tuple[str, str], float]:
    try:
        series = await prom.instant(query)
    except NoData:
        return {}
    out = {}
    for item in series:
        if not item.samples:
            continue
        value = item.samples[-1][1]
        if math.isfinite(value):
            out[(item.labels.get("region", ""), item.labels.get(extra, "") if extra else "")] = value
    return out


async def read_peers(*, prom: PrometheusClient, name: str, peers: Iterable[str]) -> PeerProgress:
    """The peers' exported progress (the freshest sample of each, within Prometheus' lookback)."""
    wanted = set(peers)
    selector = f'regionfailover="{_quote(name)}"'
    dark = await _by_region(prom, f"max by (region, state) (regionshift_region_dark_replicas{{{selector}}})",
                            extra="state")
    ready = await _by_region(prom, f"max by (region) (regionshift_region_deployments_ready{{{selector}}})")
    served = await _by_region(prom, f"min by (region) (regionshift_region_served_share{{{selector}}})")
    capacity = {}
    for region in wanted:
        if (region, "warm") in dark or (region, "ready") in dark:
            capacity[region] = RegionCapacity(warm=int(dark.get((region, "warm"), 0)),
                                              ready=int(dark.get((region, "ready"), 0)))
    return PeerProgress(
        capacity=capacity,
        deployments_ready={r: v >= 1 for (r, _), v in ready.items() if r in wanted},
        served_share={r: v for (r, _), v in served.items() if r in wanted},
    )
