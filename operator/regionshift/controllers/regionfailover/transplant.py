"""The transplant of one RegionFailover, carried out at the end of each evacuation run. Never raises.

The decision is the pure :func:`regionshift.decide.transplant.decide`; this module gathers
its observations (the participating Deployments, the HorizontalPodAutoscalers that target
them, their DarkClusters), calls it, and carries its actions out:

* a main Deployment's ``spec.replicas`` (:func:`regionshift.adapters.kube.scale_deployment`,
  guarded by its uid) or its autoscaler's ``minReplicas``
  (:func:`regionshift.adapters.kube.set_autoscaler_min_replicas`);
* a DarkCluster's ``status.transplantedReplicas``
  (:func:`regionshift.adapters.kube.set_transplanted_replicas`), never its spec;
* Events on the RegionFailover ("transplant web: main 2→4, dark 2→0").

State lives in ``status.transplants[]``, applied under its own field manager
(:data:`regionshift.adapters.kube.TRANSPLANT_FIELD_MANAGER`) with the ``TransplantApplied``
condition, and only when it changed. The record of a transplant that starts is written
before its first action, so a crash never loses the replicas to return to. A failed action
becomes a Warning Event and ``TransplantApplied=False``; the next run re-asserts the record
and tries again; a return whose lowering failed keeps its record.

Nothing is read or written unless a transplant is recorded or one is due (an evacuation this
region saves settled for ``darkCapacity.transplantAfterSeconds``), and nothing in DryRun mode.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from regionshift.adapters import kube
from regionshift.api.models import Mode, RegionFailoverSpec, RegionFailoverStatus, Transplant, TransplantStep
from regionshift.controllers.darkcluster import DARKCLUSTERS
from regionshift.controllers.regionfailover import status as rf_status
from regionshift.controllers.regionfailover.detection import owned_by, participants
from regionshift.decide.transplant import (
    Autoscaler,
    Participant,
    PostEvent,
    ScaleMain,
    SetAutoscalerMin,
    SetTransplanted,
    TransplantAction,
    TransplantDecision,
    decide,
    saving_since,
)
from regionshift.failpoints import failpoint
from regionshift.metrics import TRANSPLANT_ACTIONS, TRANSPLANTED_REPLICAS

__all__ = ["CONDITION", "dark_capacity", "observe_participants", "transplant"]

log = logging.getLogger(__name__)

CONDITION = "TransplantApplied"
"""The condition this module writes: False (TransplantFailed) while a transplant's write is refused."""


def dark_capacity(status: Mapping[str, Any]) -> tuple[int, int]:
    """(warm, ready) of a DarkCluster as savior capacity, counting what a transplant moved into main.

    Transplanted replicas serve the evacuated region's traffic from the main Deployment:
    they stay part of this region's savior capacity (the weight split and the peers must
    not see a savior shrink because its capacity changed house). Capped at what the dark
    cluster was sized for, so the moment when the new main pods and the old dark pods both
    count does not show up as a jump.
    """
    warm, ready = int(status.get("warmReplicas") or 0), int(status.get("readyReplicas") or 0)
    moved = int(status.get("transplantedReplicas") or 0)
    if not moved:
        return warm, ready
    desired = status.get("desiredReplicas")
    cap = None if desired is None else int(desired) + moved
    return (warm + moved if cap is None else min(warm + moved, cap),
            ready + moved if cap is None else min(ready + moved, cap))


def _autoscalers(namespace: str) -> dict[str, dict[str, Any]]:
    """HorizontalPodAutoscalers by the Deployment they target."""
    out = {}
    for hpa in kube.list_horizontal_pod_autoscalers(namespace=namespace):
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") == "Deployment" and str(ref.get("apiVersion", "apps/v1")).startswith("apps/"):
            out[ref.get("name", "")] = hpa
    return out


def observe_participants(*, namespace: str, uid: str, spec: RegionFailoverSpec,
                         ) -> tuple[list[Participant], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The participants as the decision sees them, and the Deployments and autoscalers by Deployment (blocking)."""
    deployments = {d["metadata"]["name"]: d for d in participants(namespace=namespace, spec=spec)}
    darks = {(dc.get("spec") or {}).get("targetDeployment"): dc
             for dc in kube.list_custom(plural=DARKCLUSTERS, namespace=namespace) if owned_by(dc, uid)}
    hpas = _autoscalers(namespace)
    out = []
    for name, deployment in sorted(deployments.items()):
        dc = darks.get(name)
        if dc is None:
            continue
        dc_status = dc.get("status") or {}
        hpa = hpas.get(name)
        autoscaler = None
        if hpa is not None:
            hpa_spec = hpa.get("spec") or {}
            autoscaler = Autoscaler(name=hpa["metadata"]["name"], min_replicas=int(hpa_spec.get("minReplicas") or 1),
                                    max_replicas=int(hpa_spec.get("maxReplicas") or 1))
        out.append(Participant(
            deployment=name, dark_cluster=dc["metadata"]["name"],
            replicas=int((deployment.get("spec") or {}).get("replicas") or 0),
            ready=int((deployment.get("status") or {}).get("readyReplicas") or 0),
            autoscaler=autoscaler, dark_serving=int(dc_status.get("readyReplicas") or 0),
            dark_warm=int(dc_status.get("warmReplicas") or 0),
            transplanted=int(dc_status.get("transplantedReplicas") or 0)))
    return out, deployments, hpas


def _carry_out_one(action: TransplantAction, *, namespace: str, deployments: Mapping[str, dict[str, Any]],
                   hpas: Mapping[str, dict[str, Any]]) -> None:
    if isinstance(action, ScaleMain):
        uid = deployments[action.deployment]["metadata"]["uid"]
        kube.scale_deployment(namespace=namespace, name=action.deployment, replicas=action.replicas, uid=uid)
    elif isinstance(action, SetAutoscalerMin):
        uid = hpas[action.deployment]["metadata"]["uid"]
        kube.set_autoscaler_min_replicas(namespace=namespace, name=action.autoscaler,
                                         min_replicas=action.min_replicas, uid=uid)
    elif isinstance(action, SetTransplanted):
        kube.set_transplanted_replicas(namespace=namespace, name=action.dark_cluster, replicas=action.replicas)


def _deployment_of(action: TransplantAction) -> str | None:
    if isinstance(action, (ScaleMain, SetAutoscalerMin)):
        return action.deployment
    return None


async def _carry_out(*, body: Mapping[str, Any], decision: TransplantDecision, deployments: Mapping[str, Any],
                     hpas: Mapping[str, Any], dark_of: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every action in order; returns (deployment, sentence) for each that failed."""
    namespace = body["metadata"]["namespace"]
    failed: list[tuple[str, str]] = []
    for action in decision.actions:
        kind = type(action).__name__
        if isinstance(action, PostEvent):
            await rf_status.post(body=body, type_=action.type, reason=action.reason, message=action.message)
            TRANSPLANT_ACTIONS.labels(kind, "Done").inc()
            continue
        try:
            await asyncio.to_thread(_carry_out_one, action, namespace=namespace, deployments=deployments, hpas=hpas)
        except Exception as exc:
            reason, message = rf_status.describe(exc)
            name = _deployment_of(action) or dark_of.get(getattr(action, "dark_cluster", ""), "")
            failed.append((name, f"{kind} for {name}: {reason}: {message}"))
            TRANSPLANT_ACTIONS.labels(kind, "Failed").inc()
        else:
            TRANSPLANT_ACTIONS.labels(kind, "Done").inc()
            failpoint("mid-transplant")
    for _, sentence in failed:
        await rf_status.post(body=body, type_="Warning", reason="TransplantFailed", message=f"transplant: {sentence}")
    return failed


def _payload(transplants: Sequence[Transplant], condition: Any | None) -> dict[str, Any]:
    """The transplant's part of the status (an absent key: server-side apply removes what this manager held)."""
    out: dict[str, Any] = {}
    if transplants:
        out["transplants"] = [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in transplants]
    if condition is not None:
        out["conditions"] = [condition.model_dump(by_alias=True, mode="json", exclude_none=True)]
    return out


def _current_payload(status: RegionFailoverStatus) -> dict[str, Any]:
    condition = next((c for c in status.conditions if c.type == CONDITION), None)
    return _payload(status.transplants, condition)


async def _apply(*, body: Mapping[str, Any], payload: dict[str, Any]) -> None:
    meta = body["metadata"]
    await asyncio.to_thread(kube.apply_custom_status, plural=rf_status.REGIONFAILOVERS, kind="RegionFailover",
                            namespace=meta["namespace"], name=meta["name"], status=payload,
                            field_manager=kube.TRANSPLANT_FIELD_MANAGER)


def _export(*, namespace: str, name: str, before: Sequence[Transplant], after: Sequence[Transplant]) -> None:
    for t in before:
        TRANSPLANTED_REPLICAS.labels(namespace, name, t.deployment, TransplantStep(t.step).value).set(0)
    for t in after:
        TRANSPLANTED_REPLICAS.labels(namespace, name, t.deployment, TransplantStep(t.step).value).set(t.moved_replicas)


async def transplant(*, body: Mapping[str, Any], spec: RegionFailoverSpec, before: RegionFailoverStatus,
                     after: RegionFailoverStatus, now: dt.datetime) -> bool:
    """One transplant run after the evacuation's; True when a transplant moves and the next run should come soon.

    ``before`` is the status the run read (with the recorded transplants), ``after`` the one
    the evacuation state machine decided (phase, roles, evacuations). Never raises.
    """
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    after_seconds = spec.dark_capacity.transplant_after_seconds
    if Mode(spec.mode) is Mode.DRY_RUN or (after_seconds is None and not before.transplants):
        return False
    try:
        evacuated = {e.region for e in after.evacuations}
        since = saving_since(here=spec.region,
                             roles={k: str(getattr(v, "value", v)) for k, v in (after.roles or {}).items()},
                             evacuations=[(e.region, str(getattr(e.phase, "value", e.phase)), e.timeline.settled_at)
                                          for e in after.evacuations])
        if not before.transplants and (since is None or after_seconds is None
                                       or (now - since).total_seconds() < after_seconds):
            return False  # nothing to start or to follow: no reads
        observed, deployments, hpas = await asyncio.to_thread(observe_participants, namespace=namespace, uid=uid,
                                                              spec=spec)
        decision = decide(after_seconds=after_seconds, saving_since=since,
                          taking_part=bool(after.evacuations) and spec.region not in evacuated,
                          participants=observed, transplants=before.transplants, now=now)
        stamp = now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        old_conditions = [c.model_dump(by_alias=True, mode="json") for c in before.conditions]
        generation = meta.get("generation")
        if decision.started:  # the record first: a crash after the raise must not lose what to return to
            ahead = rf_status.make_condition(type_=CONDITION, ok=True, reason="Applied", now=stamp,
                                             generation=generation, old=old_conditions,
                                             message="every transplant write was carried out")
            await _apply(body=body, payload=_payload(decision.transplants, ahead))
        dark_of = {p.dark_cluster: p.deployment for p in observed}
        failed = await _carry_out(body=body, decision=decision, deployments=deployments, hpas=hpas, dark_of=dark_of)
        kept = list(decision.transplants)
        names = {t.deployment for t in kept}
        for t in before.transplants:  # a return whose lowering failed keeps its record
            if t.deployment not in names and any(d == t.deployment for d, _ in failed):
                kept.append(t)
        if failed:
            condition = rf_status.make_condition(type_=CONDITION, ok=False, reason="TransplantFailed", now=stamp,
                                                 generation=generation, old=old_conditions,
                                                 message="; ".join(s for _, s in failed))
        else:
            condition = rf_status.make_condition(type_=CONDITION, ok=True, reason="Applied", now=stamp,
                                                 generation=generation, old=old_conditions,
                                                 message="every transplant write was carried out")
        payload = _payload(sorted(kept, key=lambda t: t.deployment), condition)
        if payload != _current_payload(before) or decision.started:
            await _apply(body=body, payload=payload)
        _export(namespace=namespace, name=name, before=before.transplants, after=kept)
        return decision.moving or bool(failed)
    except Exception as exc:  # a bug or a surprise: say so; the next evacuation run tries again
        log.exception("transplant run of %s/%s failed", namespace, name)
        reason, message = rf_status.describe(exc)
        await rf_status.post(body=body, type_="Warning", reason="TransplantFailed", message=f"{reason}: {message}")
        return False
