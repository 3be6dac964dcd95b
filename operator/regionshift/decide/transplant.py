"""The transplant: one pure step from (what this region saves, the Deployments, the record, now) to actions.

A savior serves an evacuated region's traffic with its ungated dark pods. When that lasts
(an evacuation settled for ``darkCapacity.transplantAfterSeconds``), the capacity is moved
into the main Deployments, where the user's autoscaler, budgets and rollouts see it, and
the dark Deployments shrink back to zero-cost warmth. One Deployment's transplant::

    (none) ──settled long enough──▶ Raising ──main Ready──▶ Transplanted ──evacuation over──▶ Returning ──▶ (none)
                                       └───────────────── evacuation over ─────────────────────▶┘

* **Raising**: the main Deployment's ``spec.replicas`` goes from its recorded value to
  recorded + moved (``moved`` = the dark pods serving now). Where a HorizontalPodAutoscaler
  targets the Deployment, its ``minReplicas`` is raised instead (the autoscaler then scales
  the Deployment; it does so without metrics, since replicas under minReplicas are raised
  first), and never above its ``maxReplicas``: the user's ceiling stays the user's, and
  what does not fit under it is not moved (those dark pods keep serving). maxReplicas is
  never written.
* **Transplanted**: once the main Deployment has ``raised_to`` Ready replicas, the dark one
  is lowered by ``moved`` through its DarkCluster's ``status.transplantedReplicas`` (the
  DarkCluster controller keeps max(0, sized - transplanted) dark replicas). The new main
  pods were Ready before any dark pod went, so the ready serving pods never drop.
* **Returning**: when no evacuation this region takes part in is left (failback done; the
  dark gates are closed by then), ``transplantedReplicas`` goes back to 0 and the dark
  Deployment warms up again (gated); once ``moved`` dark replicas are warm (or after
  :data:`RETURN_PATIENCE_SECONDS`, when sizing shrank the dark cluster meanwhile), the main
  Deployment returns to its recorded replicas, with an autoscaler its recorded
  ``minReplicas`` (the autoscaler decides the rest). A main Deployment whose replicas
  someone else changed since the raise is left as it is: a failover never scales a main
  Deployment below its own spec, and never deletes one. The entry then goes.

Every step is re-asserted from the record (``status.transplants[]``) on every run, so a
restart resumes anywhere and each write is made only while the world differs from the
record. The record of a new transplant is written before its first action by the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from regionshift.api.models import Transplant, TransplantStep

__all__ = [
    "RETURN_PATIENCE_SECONDS",
    "Autoscaler",
    "Participant",
    "PostEvent",
    "ScaleMain",
    "SetAutoscalerMin",
    "SetTransplanted",
    "TransplantAction",
    "TransplantDecision",
    "decide",
    "saving_since",
]

RETURN_PATIENCE_SECONDS = 120.0
"""Returning waits at most this long for the dark replicas to be warm before lowering the main Deployment."""


@dataclass(frozen=True, kw_only=True)
class Autoscaler:
    """The HorizontalPodAutoscaler that targets a main Deployment."""

    name: str
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True, kw_only=True)
class Participant:
    """One participating Deployment and its DarkCluster, as observed now."""

    deployment: str
    dark_cluster: str
    replicas: int
    """The main Deployment's spec.replicas."""
    ready: int
    """The main Deployment's Ready replicas."""
    autoscaler: Autoscaler | None = None
    dark_serving: int = 0
    """Dark pods ungated and Ready (the DarkCluster's status.readyReplicas)."""
    dark_warm: int = 0
    """Dark pods Ready, gated or not (status.warmReplicas)."""
    transplanted: int = 0
    """The DarkCluster's status.transplantedReplicas as it is now."""


@dataclass(frozen=True, kw_only=True)
class ScaleMain:
    """Set a main Deployment's spec.replicas."""

    deployment: str
    replicas: int
    from_replicas: int


@dataclass(frozen=True, kw_only=True)
class SetAutoscalerMin:
    """Set the minReplicas of the autoscaler targeting a main Deployment."""

    autoscaler: str
    deployment: str
    min_replicas: int
    from_min_replicas: int


@dataclass(frozen=True, kw_only=True)
class SetTransplanted:
    """Set a DarkCluster's status.transplantedReplicas."""

    dark_cluster: str
    replicas: int


@dataclass(frozen=True, kw_only=True)
class PostEvent:
    """An Event on the RegionFailover."""

    reason: str
    message: str
    type: str = "Normal"


TransplantAction = ScaleMain | SetAutoscalerMin | SetTransplanted | PostEvent


@dataclass(kw_only=True)
class TransplantDecision:
    """The transplants to record and the actions to carry out, in order."""

    transplants: list[Transplant] = field(default_factory=list)
    actions: list[TransplantAction] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    """Deployments whose transplant starts in this step: record them before acting."""

    @property
    def moving(self) -> bool:
        """True while a transplant waits for something that the next run should check soon."""
        return any(t.step is not TransplantStep.TRANSPLANTED for t in self.transplants)

    @property
    def writes(self) -> bool:
        return any(not isinstance(a, PostEvent) for a in self.actions)


def _stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def saving_since(*, here: str, roles: Mapping[str, str] | None,
                 evacuations: Sequence[tuple[str, str, str | None]]) -> dt.datetime | None:
    """When the evacuations this region saves settled (the latest of them), or None when it saves none settled.

    ``evacuations`` are (region, phase, settledAt) of ``status.evacuations``; this region
    saves when its role is Savior and every evacuation under way is Evacuated (settled):
    none is still shifting or failing back.
    """
    if not roles or roles.get(here) != "Savior" or not evacuations:
        return None
    if any(phase != "Evacuated" or settled is None for _, phase, settled in evacuations):
        return None
    return max(_parse(settled) for _, _, settled in evacuations if settled)


def _start(p: Participant, *, now: dt.datetime) -> tuple[Transplant, TransplantAction, str] | None:
    """A new transplant of ``p``, its first action and its Event text; None when nothing can move."""
    moved = p.dark_serving
    if moved <= 0:
        return None
    if p.autoscaler is None:
        raised = p.replicas + moved
        entry = Transplant(deployment=p.deployment, dark_cluster=p.dark_cluster, step=TransplantStep.RAISING,
                           recorded_replicas=p.replicas, raised_to=raised, moved_replicas=moved, since=_stamp(now))
        return entry, ScaleMain(deployment=p.deployment, replicas=raised, from_replicas=p.replicas), (
            f"transplant {p.deployment}: main {p.replicas}→{raised}, waiting for its new pods to be Ready")
    hpa = p.autoscaler
    base = max(p.replicas, hpa.min_replicas)
    moved = min(moved, max(0, hpa.max_replicas - base))
    if moved <= 0:
        return None
    raised = base + moved
    entry = Transplant(deployment=p.deployment, dark_cluster=p.dark_cluster, step=TransplantStep.RAISING,
                       autoscaler=hpa.name, recorded_replicas=hpa.min_replicas, raised_to=raised,
                       moved_replicas=moved, since=_stamp(now))
    return entry, SetAutoscalerMin(autoscaler=hpa.name, deployment=p.deployment, min_replicas=raised,
                                   from_min_replicas=hpa.min_replicas), (
        f"transplant {p.deployment}: HorizontalPodAutoscaler {hpa.name} minReplicas {hpa.min_replicas}→{raised}"
        f" (maxReplicas {hpa.max_replicas}), waiting for the new pods to be Ready")


def _raise(entry: Transplant, p: Participant) -> list[TransplantAction]:
    """The raise again, when the main Deployment (or its autoscaler) lost it; never a lowering."""
    if entry.autoscaler is not None:
        if p.autoscaler is not None and p.autoscaler.min_replicas < entry.raised_to <= p.autoscaler.max_replicas:
            return [SetAutoscalerMin(autoscaler=p.autoscaler.name, deployment=p.deployment,
                                     min_replicas=entry.raised_to, from_min_replicas=p.autoscaler.min_replicas)]
        return []
    if p.replicas < entry.raised_to:
        return [ScaleMain(deployment=p.deployment, replicas=entry.raised_to, from_replicas=p.replicas)]
    return []


def _lower_main(entry: Transplant, p: Participant) -> tuple[list[TransplantAction], str]:
    """The main Deployment back to its record, unless someone else changed it since the raise."""
    if entry.autoscaler is not None:
        hpa = p.autoscaler
        if hpa is None or hpa.min_replicas != entry.raised_to:
            return [], f"HorizontalPodAutoscaler {entry.autoscaler} minReplicas left as it is (changed since the raise)"
        return ([SetAutoscalerMin(autoscaler=hpa.name, deployment=p.deployment, min_replicas=entry.recorded_replicas,
                                  from_min_replicas=hpa.min_replicas)],
                f"HorizontalPodAutoscaler {hpa.name} minReplicas {hpa.min_replicas}→{entry.recorded_replicas}")
    if p.replicas != entry.raised_to:
        return [], f"main left at {p.replicas} (changed since the raise to {entry.raised_to})"
    return ([ScaleMain(deployment=p.deployment, replicas=entry.recorded_replicas, from_replicas=p.replicas)],
            f"main {p.replicas}→{entry.recorded_replicas}")


def decide(
    *, after_seconds: int | None, saving_since: dt.datetime | None, taking_part: bool,
    participants: Sequence[Participant], transplants: Sequence[Transplant], now: dt.datetime,
) -> TransplantDecision:
    """The next transplants and actions (pure; calling it again with its output and the world it made is a no-op).

    ``after_seconds``: ``darkCapacity.transplantAfterSeconds`` (None: never start one).
    ``saving_since``: :func:`saving_since`. ``taking_part``: an evacuation is under way in
    which this region is not evacuated (while it is, a transplant holds; once it is not, every
    transplant returns).
    """
    out = TransplantDecision()
    by_name = {p.deployment: p for p in participants}
    recorded = {t.deployment: t for t in transplants}
    due = (after_seconds is not None and saving_since is not None and taking_part
           and (now - saving_since).total_seconds() >= after_seconds)

    for name in sorted(set(by_name) | set(recorded)):
        p, entry = by_name.get(name), recorded.get(name)
        if entry is None:
            if p is None or not due:
                continue
            started = _start(p, now=now)
            if started is None:
                continue
            entry, action, message = started
            out.transplants.append(entry)
            out.actions.append(action)
            out.actions.append(PostEvent(reason="TransplantStarted", message=message))
            out.started.append(name)
            continue
        entry = entry.model_copy(deep=True)
        if p is None:  # the Deployment left the domain: its DarkCluster goes, nothing left to give back
            out.actions.append(PostEvent(reason="TransplantDropped", type="Warning", message=(
                f"transplant {name}: the Deployment no longer takes part; its record is dropped and its replicas"
                f" ({entry.raised_to}) are left as they are")))
            continue
        step = TransplantStep(entry.step)
        if step is not TransplantStep.RETURNING and not taking_part:
            entry.step, entry.since, step = TransplantStep.RETURNING, _stamp(now), TransplantStep.RETURNING
            out.actions.append(PostEvent(reason="TransplantReturning", message=(
                f"transplant {name}: the evacuation is over, giving the dark capacity back"
                f" (dark {p.dark_warm}→{p.dark_warm + p.transplanted})")))
        entry.waiting_for = None
        if step is TransplantStep.RAISING:
            out.actions.extend(_raise(entry, p))
            if p.ready >= entry.raised_to:
                entry.step, entry.since = TransplantStep.TRANSPLANTED, _stamp(now)
                out.actions.append(SetTransplanted(dark_cluster=entry.dark_cluster, replicas=entry.moved_replicas))
                dark_after = max(0, p.dark_serving - entry.moved_replicas)
                out.actions.append(PostEvent(reason="Transplanted", message=(
                    f"transplant {name}: main {entry.recorded_replicas}→{entry.raised_to}"
                    f"{' (minReplicas of ' + entry.autoscaler + ')' if entry.autoscaler else ''},"
                    f" dark {p.dark_serving}→{dark_after}")))
            else:
                entry.waiting_for = f"main Deployment Ready {p.ready}/{entry.raised_to}"
            out.transplants.append(entry)
        elif step is TransplantStep.TRANSPLANTED:
            out.actions.extend(_raise(entry, p))
            if p.transplanted != entry.moved_replicas:
                out.actions.append(SetTransplanted(dark_cluster=entry.dark_cluster, replicas=entry.moved_replicas))
            out.transplants.append(entry)
        else:
            if p.transplanted != 0:
                out.actions.append(SetTransplanted(dark_cluster=entry.dark_cluster, replicas=0))
            waited = (now - _parse(entry.since)).total_seconds()
            if p.transplanted != 0 or (p.dark_warm < entry.moved_replicas and waited < RETURN_PATIENCE_SECONDS):
                entry.waiting_for = f"dark replicas warm {p.dark_warm}/{entry.moved_replicas}"
                out.transplants.append(entry)
                continue
            lower, said = _lower_main(entry, p)
            out.actions.extend(lower)
            out.actions.append(PostEvent(reason="TransplantReturned", message=(
                f"transplant {name} returned: dark capacity {p.dark_warm} warm, {said}")))
    return out
