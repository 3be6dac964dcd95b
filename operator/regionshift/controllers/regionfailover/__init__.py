"""RegionFailover: read the signal, judge every region, evacuate and fail back, size the dark clusters.

One kopf daemon per RegionFailover (:func:`serve`) runs three loops:

* detection (:mod:`.detection`), every ``signal.stepSeconds``, at the same moments of the
  wall clock in every region (:func:`regionshift.decide.detection.next_detection_at`): each region's recent signal
  against its seasonal forecast, with this region's rollouts and warm dark capacity as
  guards; verdicts and ``lastEvaluatedAt`` go to status on every run, whatever happened;
* evacuation (:mod:`.evacuation`), a task of its own, woken by every detection run and
  every second while an evacuation or a failback moves: the pure state machine of
  :mod:`regionshift.decide.evacuation` decides, and this region's gates and routes follow;
* sizing (:mod:`.sizing`), a task of its own every ``signal.refitIntervalSeconds``, and at
  once when the spec or the participating Deployments change: the DarkClusters follow the
  domain (:mod:`.children`) and each is sized from the scaling fit and the forecast peaks.

Detection never waits for sizing, and neither stops on an error: every failure becomes a
condition and an Event (:mod:`.status`). Forecasts and histories live in memory per
RegionFailover (:mod:`.domain`, keyed by what they depend on, refreshed by increments,
released when the RegionFailover goes) and in a ConfigMap cache for Prometheus outages and
restarts; everything else the next run needs is in the resource's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from regionshift.controllers.regionfailover import observe, progress
from regionshift.controllers.regionfailover.detection import detect
from regionshift.controllers.regionfailover.domain import REGIONFAILOVER_LABEL, Domain, domain_of, expand, forget
from regionshift.controllers.regionfailover.evacuation import evacuate
from regionshift.controllers.regionfailover.sizing import size
from regionshift.decide.detection import next_detection_at

__all__ = ["REGIONFAILOVER_LABEL", "detect", "domain_of", "evacuate", "expand", "forget", "serve", "size"]

log = logging.getLogger(__name__)
RETRY_SECONDS = 30.0
"""Wait before another sizing run when the last could not list the participants or failed."""
MOVING_INTERVAL_SECONDS = 1.0
"""Seconds between evacuation runs while an evacuation or a failback is moving."""


class Stopped(Protocol):
    """kopf's ``stopped`` flag of a daemon."""

    def __bool__(self) -> bool: ...

    async def wait(self, timeout: float | None = None) -> Any: ...


def _snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """The RegionFailover as it is now (kopf swaps the live body whole, so this is consistent)."""
    return dict(body)


def _sizing_due(body: Mapping[str, Any], domain: Domain) -> bool:
    """The spec or the participants changed since the last sizing run."""
    if domain.sized is None or domain.participants is None:
        return False
    generation, participants = domain.sized
    return generation != body["metadata"].get("generation") or participants != domain.participants


async def _size_forever(*, body: Mapping[str, Any], uid: str) -> None:
    while True:
        snapshot = _snapshot(body)
        domain = domain_of(uid=uid)
        domain.wake.clear()
        await size(body=snapshot, domain=domain)
        interval = float(snapshot.get("spec", {}).get("signal", {}).get("refitIntervalSeconds", 3600))
        if domain.retry_soon:
            interval = min(interval, RETRY_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(domain_of(uid=uid).wake.wait(), timeout=interval)


async def _evacuate_forever(*, body: Mapping[str, Any], uid: str) -> None:
    while True:
        domain = domain_of(uid=uid)
        domain.evacuation_wake.clear()
        moving = await evacuate(body=_snapshot(body), domain=domain)
        interval = float(_snapshot(body).get("spec", {}).get("signal", {}).get("stepSeconds", 60))
        if moving:
            interval = min(interval, MOVING_INTERVAL_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(domain_of(uid=uid).evacuation_wake.wait(), timeout=interval)


def _restarted(task: asyncio.Task[None], start: Any, what: str, uid: str) -> asyncio.Task[None]:
    """The task, or a new one when it ended (its run functions never raise; should one, say why)."""
    if not task.done():
        return task
    log.error("%s task of %s ended: %r; restarting it", what, uid, task.exception() if not task.cancelled() else None)
    return asyncio.create_task(start(), name=f"{what} {uid}")


async def serve(*, body: Mapping[str, Any], stopped: Stopped) -> None:
    """Detect every step; size and evacuate in tasks of their own until kopf stops the daemon."""
    uid = body["metadata"]["uid"]

    def sizing_task() -> Any:
        return _size_forever(body=body, uid=uid)

    def evacuation_task() -> Any:
        return _evacuate_forever(body=body, uid=uid)

    sizing = asyncio.create_task(sizing_task(), name=f"sizing {uid}")
    evacuation = asyncio.create_task(evacuation_task(), name=f"evacuation {uid}")
    try:
        while not stopped:
            snapshot = _snapshot(body)
            domain = domain_of(uid=uid)
            await detect(body=snapshot, domain=domain)
            domain.evacuation_wake.set()
            if _sizing_due(snapshot, domain):
                domain.wake.set()
            sizing = _restarted(sizing, sizing_task, "sizing", uid)
            evacuation = _restarted(evacuation, evacuation_task, "evacuation", uid)
            step = float(snapshot.get("spec", {}).get("signal", {}).get("stepSeconds", 60))
            now = time.time()
            await stopped.wait(next_detection_at(now=now, step_seconds=step) - now)
    finally:
        for task in (sizing, evacuation):
            task.cancel()
        await asyncio.gather(sizing, evacuation, return_exceptions=True)
        forget(uid=uid)
        meta = body["metadata"]
        observe.forget(namespace=meta["namespace"], name=meta["name"])
        progress.forget(name=meta["name"], region=str(body.get("spec", {}).get("region", "")))
