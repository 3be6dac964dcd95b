"""RegionFailover status: built from the pydantic models, written by server-side apply.

Three writers share a RegionFailover's status, each under its own field manager, so neither
overwrites the other and neither needs a read-modify-write:

* detection (:data:`DETECTION_MANAGER`) owns ``observedGeneration``, ``lastEvaluatedAt``,
  ``regions``, ``unhealthy``, ``heldBack`` and the conditions ``Detecting`` and
  ``GuardsKnown``; it writes on every run, whatever the outcome, so a stale
  ``lastEvaluatedAt`` (the ``Evaluated`` column) always means the operator is not running;
* sizing (:data:`SIZING_MANAGER`) owns the conditions ``Sizing`` and ``DarkClustersSynced``.

``conditions`` is a list map keyed by ``type``, so each writer's conditions are its own.
* the evacuation (``regionshift-evacuation``, :mod:`.evacuation`) owns ``phase``,
  ``evacuations``, ``roles``, ``weights``, the evacuation gate, ``history``,
  ``recommendation``, ``plan`` and the conditions ``RoutesReady`` and ``ActionsApplied``.
A condition whose status or reason changed posts an Event (through
:func:`regionshift.adapters.events.post_event`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from regionshift.adapters import events, kube
from regionshift.api.conditions import find_condition
from regionshift.api.models import Condition, RegionFailoverStatus, RegionSignalStatus, Verdict
from regionshift.decide.detection import Guard, RegionVerdict

__all__ = [
    "DETECTION_MANAGER",
    "REGIONFAILOVERS",
    "SIZING_MANAGER",
    "describe",
    "detection_status",
    "make_condition",
    "post",
    "post_transitions",
    "previous_verdicts",
    "wire",
    "write",
]

log = logging.getLogger(__name__)

REGIONFAILOVERS = "regionfailovers"
DETECTION_MANAGER = "regionshift-detection"
SIZING_MANAGER = "regionshift-sizing"


def describe(exc: BaseException) -> tuple[str, str]:
    """(reason, message) for a condition, from any failure: an API error says its HTTP status."""
    if isinstance(exc, kube.ApiException):
        names = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 422: "Invalid",
                 429: "TooManyRequests"}
        reason = names.get(exc.status or 0, "ApiUnavailable" if (exc.status or 0) >= 500 else "ApiError")
        detail = exc.reason or ""
        try:
            detail = json.loads(exc.body).get("message", detail) if exc.body else detail
        except (ValueError, AttributeError):
            pass
        return reason, f"HTTP {exc.status} {reason}: {detail}"
    return type(exc).__name__, str(exc) or repr(exc)


def make_condition(
    *, type_: str, ok: bool, reason: str, message: str, now: str, generation: int | None,
    old: Sequence[Mapping[str, Any]] | None,
) -> Condition:
    """A condition whose transition time stays the old one while its status is unchanged."""
    status = "True" if ok else "False"
    before = find_condition(list(old or []), type_)
    since = before.get("lastTransitionTime", now) if before and before.get("status") == status else now
    return Condition(type=type_, status=status, reason=reason, message=message[:1000], last_transition_time=since,
                     observed_generation=generation)


def _moment(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def previous_verdicts(status: Mapping[str, Any]) -> dict[str, RegionVerdict]:
    """The verdicts of the last run, from status, so a drop keeps its start across runs."""
    out = {}
    guards = {g.value: g for g in Guard}
    for item in status.get("regions") or []:
        out[item["name"]] = RegionVerdict(
            region=item["name"], verdict=Verdict(item.get("verdict", "Unknown")), message="",
            unhealthy_since=_moment(item.get("unhealthySince")), drop_started_at=_moment(item.get("dropStartedAt")),
            held_back_by=guards.get(item.get("heldBackBy") or ""),
        )
    return out


def detection_status(
    *, verdicts: Mapping[str, RegionVerdict], regions: Sequence[str], conditions: Sequence[Condition],
    generation: int | None, evaluated_at: str, phase: str | None = None,
    intervals: Mapping[str, Mapping[str, float | None]] | None = None, notes: Mapping[str, str] | None = None,
) -> RegionFailoverStatus:
    """The part of the status detection owns, for a set of verdicts (pure).

    ``intervals`` adds the forecast's bounds per region; ``notes`` says why a region has no
    forecast (it replaces the message of an Unknown verdict).
    """
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    entries = []
    for region in regions:
        verdict = verdicts[region]
        base = verdict.to_status()
        message = verdict.message
        note = (notes or {}).get(region)
        if verdict.verdict == Verdict.UNKNOWN and note:
            message = f"NoForecast: {note}"
        bounds = (intervals or {}).get(region, {})
        drop = verdict.drop_started_at
        entries.append(RegionSignalStatus(
            name=region,
            actual=rounded(base.actual),
            expected=rounded(base.expected),
            expected_lower=rounded(bounds.get("expectedLower")),
            expected_upper=rounded(bounds.get("expectedUpper")),
            ratio=rounded(base.ratio),
            message=message,
            verdict=verdict.verdict,
            unhealthy_since=base.unhealthy_since,
            drop_started_at=drop.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if drop else None,
            held_back_by=base.held_back_by,
            sampled_at=base.sampled_at,
            share_ratio=base.share_ratio,
            evidence_samples=base.evidence_samples,
        ))
    return RegionFailoverStatus(
        observed_generation=generation,
        last_evaluated_at=evaluated_at,
        phase=phase,
        regions=entries,
        unhealthy=[r for r in regions if verdicts[r].verdict == Verdict.UNHEALTHY],
        held_back=[r for r in regions if verdicts[r].verdict == Verdict.HELD_BACK],
        conditions=list(conditions),
    )


def wire(status: RegionFailoverStatus) -> dict[str, Any]:
    """The fields a writer set, camelCase, for a server-side apply (unset and None left out)."""
    return status.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json")


def _write(*, body: Mapping[str, Any], status: RegionFailoverStatus, manager: str) -> None:
    meta = body["metadata"]
    kube.apply_custom_status(plural=REGIONFAILOVERS, kind="RegionFailover", namespace=meta["namespace"],
                             name=meta["name"], status=wire(status), field_manager=manager)


async def write(*, body: Mapping[str, Any], status: RegionFailoverStatus, manager: str) -> bool:
    """Apply this writer's part of the status; a refusal is logged and reported as an Event."""
    try:
        await asyncio.to_thread(_write, body=body, status=status, manager=manager)
    except Exception as exc:  # the next run writes again; never let a status write stop a loop
        reason, message = describe(exc)
        log.warning("status of RegionFailover %s/%s not written (%s): %s", body["metadata"]["namespace"],
                    body["metadata"]["name"], manager, message)
        await post(body=body, type_="Warning", reason=f"StatusNotWritten{reason}", message=message)
        return False
    return True


async def post(*, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Post an Event about the RegionFailover, off the event loop."""
    involved = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind", "RegionFailover"),
                "metadata": body["metadata"]}
    await asyncio.to_thread(events.post_event, involved=involved, type_=type_, reason=reason, message=message)


async def post_transitions(
    *, body: Mapping[str, Any], old: Sequence[Mapping[str, Any]] | None, new: Sequence[Condition],
    events_for: Mapping[str, tuple[str, str]],
) -> None:
    """An Event for each condition whose status or reason changed.

    ``events_for`` maps a condition type to its (good, bad) Event reasons, e.g.
    ``{"Detecting": ("DetectionRunning", "DetectionPaused")}``.
    """
    for cond in new:
        before = find_condition(list(old or []), cond.type) or {}
        if (before.get("status"), before.get("reason")) == (cond.status, cond.reason):
            continue
        if not before and cond.status == "True":
            continue  # the first good news is no news
        good, bad = events_for.get(cond.type, (cond.type, cond.type))
        ok = cond.status == "True"
        await post(body=body, type_="Normal" if ok else "Warning", reason=good if ok else bad,
                   message=f"{cond.reason}: {cond.message}")
