"""RegionFailover: read the signal, judge every region, size the dark clusters.

One kopf daemon per RegionFailover (:func:`serve`) runs two loops, as in the talk:

* detection (:mod:`.detection`), every ``signal.stepSeconds``: each region's recent signal
  against its seasonal forecast, with this region's rollouts and warm dark capacity as
  guards; verdicts and ``lastEvaluatedAt`` go to status on every run, whatever happened;
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
from collections.abc import Mapping
from typing import Any, Protocol

from regionshift.controllers.regionfailover.detection import detect
from regionshift.controllers.regionfailover.domain import REGIONFAILOVER_LABEL, Domain, domain_of, expand, forget
from regionshift.controllers.regionfailover.sizing import size

__all__ = ["REGIONFAILOVER_LABEL", "detect", "domain_of", "expand", "forget", "serve", "size"]

log = logging.getLogger(__name__)
RETRY_SECONDS = 30.0
"""Wait before another sizing run when the last could not list the participants or failed."""


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


async def serve(*, body: Mapping[str, Any], stopped: Stopped) -> None:
    """Detect every step and size in the background until kopf stops the daemon."""
    uid = body["metadata"]["uid"]
    sizing = asyncio.create_task(_size_forever(body=body, uid=uid), name=f"sizing {uid}")
    try:
        while not stopped:
            snapshot = _snapshot(body)
            domain = domain_of(uid=uid)
            await detect(body=snapshot, domain=domain)
            if _sizing_due(snapshot, domain):
                domain.wake.set()
            if sizing.done():  # size() never raises; should it ever, start it again and say why
                log.error("sizing task of %s ended: %r; restarting it", uid, sizing.exception())
                sizing = asyncio.create_task(_size_forever(body=body, uid=uid), name=f"sizing {uid}")
            await stopped.wait(float(snapshot.get("spec", {}).get("signal", {}).get("stepSeconds", 60)))
    finally:
        sizing.cancel()
        await asyncio.gather(sizing, return_exceptions=True)
        forget(uid=uid)
