"""One evacuation run of a RegionFailover: gather, decide, act, then write status. Never raises.

The decision is the pure state machine :func:`regionshift.decide.evacuation.step`; this
module only feeds it and carries its actions out, in this order on every run:

1. read the RegionFailover afresh (the status the last run wrote, not kopf's cached copy,
   so two runs never decide from the same old status);
2. gather the observations: the verdicts detection wrote (Unknown once they are stale),
   this region's DarkClusters and Deployments, every route of ``spec.traffic``
   (:mod:`.routes`), and the peers' progress from the shared Prometheus (:mod:`.progress`);
3. call ``step``;
4. carry the actions out: open or close this region's evacuation gate (one write: this
   RegionFailover's ``status.evacuationGate``, a merge patch of that field alone; its
   DarkClusters' controller reads it, and is woken in this process right after, so
   an ungate of hundreds of DarkClusters costs one write before the dark pods' own; a
   DarkCluster's own ``status.evacuationGate`` that an older regionshift left Open is closed
   with it), set route weights, post Events. The route
   writes of one layer (proxy, then DNS) go out as one batch, a few at a time
   (:data:`~.routes.ROUTE_CONCURRENCY`), every HTTPRoute's backends checked against one
   snapshot of the namespace's Services, and the Events among them follow the batch;
5. write the evacuation's part of the status under its own field manager
   (:data:`EVACUATION_MANAGER`): phase, evacuations, roles, weights, the gate, history,
   recommendation and plan, and the conditions ``RoutesReady`` and ``ActionsApplied``;
6. export this region's progress for the peers (:mod:`.progress`: the dark capacity before the
   writes and as the DarkClusters' statuses move, the served share after the writes);
7. the transplant (:mod:`.transplant`): once an evacuation this region saves has settled for
   ``darkCapacity.transplantAfterSeconds``, its dark capacity moves into the main Deployments.

Actions come before the status that records them: a crash in between makes the next run
decide the same writes again from the same status, and every write is idempotent (a route
already carrying its weights, a gate already open, are left alone). One thing is written
ahead of the actions: the weights a route carried before its first change
(:func:`with_new_records`), which failback restores and which a crash must not lose; and the
evacuation gate, whose write is itself the action (:func:`_write_gate`). In DryRun mode nothing
but the status and Events is written: the routes are read without making sure of the peer
Services, and the step yields no write.

A failed action (a route deleted under us, a refused write) becomes a Warning Event and the
``ActionsApplied=False`` condition; the state machine sees its effect missing and tries
again after ``Tuning.retry_seconds``; every other route, gate and RegionFailover goes on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from regionshift.adapters import kube
from regionshift.api.models import (
    Condition,
    Gate,
    Mode,
    Phase,
    RegionFailoverSpec,
    RegionFailoverStatus,
    TrafficProviderKind,
    Verdict,
)
from regionshift.controllers import darkcluster
from regionshift.controllers.darkcluster import DARKCLUSTERS
from regionshift.controllers.regionfailover import observe
from regionshift.controllers.regionfailover import status as rf_status
from regionshift.controllers.regionfailover.detection import owned_by, participants
from regionshift.controllers.regionfailover.domain import Domain, prometheus_client
from regionshift.controllers.regionfailover import progress
from regionshift.controllers.regionfailover.progress import PeerProgress, read_peers
from regionshift.controllers.regionfailover.routes import (
    ROUTE_CONCURRENCY,
    RouteBook,
    backend_index,
    describe_route_error,
    read_routes,
    set_weights,
)
from regionshift.controllers.regionfailover.transplant import dark_capacity, transplant
from regionshift.decide.evacuation import (
    Action,
    CloseGates,
    DarkClusterObservation,
    Decision,
    FailbackSignal,
    Observations,
    OpenGates,
    PostEvent,
    Recommend,
    RouteReport,
    SetWeights,
    Tuning,
    step,
)
from regionshift.decide.weights import layer_of
from regionshift.errors import TrafficError
from regionshift.failpoints import failpoint

__all__ = ["EVACUATION_MANAGER", "OWNED_FIELDS", "evacuate", "evacuation_payload", "tuning_of", "verdicts_of",
           "with_new_records"]

log = logging.getLogger(__name__)

EVACUATION_MANAGER = "regionshift-evacuation"
"""The field manager of the evacuation's part of a RegionFailover's status."""
OWNED_FIELDS = frozenset({
    "phase", "evacuations", "roles", "weights", "savior_capacity", "evacuation_gate", "evacuation_gate_written_at",
    "deferred", "last_evacuation", "history", "recommendation", "plan", "evacuated_regions",
})
"""The status fields the evacuation writes (by their Python names); detection and sizing own the rest."""
GATE_CONCURRENCY = 16
"""Evacuation-gate writes in flight at once."""
EVENTS = {"RoutesReady": ("RoutesReady", "RoutesNotReady"), "ActionsApplied": ("ActionsApplied", "ActionFailed")}


_writers_instance: ThreadPoolExecutor | None = None


def _writers() -> ThreadPoolExecutor:
    """The threads of the gate and route writes: as many as either runs at once.

    Not ``asyncio.to_thread``: the default executor has ``cpu_count + 4`` threads (6 on a
    2-core machine), shared with every other blocking call, which would cap the
    :data:`GATE_CONCURRENCY` and :data:`~.routes.ROUTE_CONCURRENCY` writes in flight far
    below what they say.
    """
    global _writers_instance
    if _writers_instance is None:
        _writers_instance = ThreadPoolExecutor(max_workers=max(GATE_CONCURRENCY, ROUTE_CONCURRENCY),
                                               thread_name_prefix="evacuation-writes")
    return _writers_instance


def tuning_of(spec: RegionFailoverSpec) -> Tuning:
    """The state machine's timings from the spec (the rest keep their defaults)."""
    return Tuning(
        dwell_seconds=float(spec.detection.dwell_seconds),
        cooldown_seconds=float(spec.failback.cooldown_seconds),
        backoff_seconds=float(spec.failback.backoff_seconds),
        backoff_max_seconds=max(3600.0, float(spec.failback.backoff_seconds)),
    )


def verdicts_of(*, spec: RegionFailoverSpec, status: RegionFailoverStatus, now: dt.datetime) -> dict[str, Verdict]:
    """Detection's verdicts from status; all Unknown when detection has not run lately (never act on stale data)."""
    evaluated = status.last_evaluated_at
    fresh_for = max(3.0 * spec.signal.step_seconds, 30.0)
    if evaluated is None or (now - dt.datetime.fromisoformat(evaluated.replace("Z", "+00:00"))).total_seconds() > fresh_for:
        return {}
    return {r.name: Verdict(r.verdict) for r in status.regions}


def _capacity_of(status: Mapping[str, Any], *, written: Mapping[str, Any] | None) -> tuple[int, int]:
    """(warm, ready) of a DarkCluster: its controller's latest own fields (``written``) over the listed status.

    Transplanted replicas still count as savior capacity (:func:`.transplant.dark_capacity`).
    """
    if written is not None:
        status = {**status, **{k: v for k, v in written.items() if k not in ("evacuationGate", "transplantedReplicas")}}
    return dark_capacity(status)


def _dark_cluster_status(namespace: str, name: str, meta: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    """The DarkCluster controller wrote a status: its RegionFailover's dark capacity is exported at once."""
    warm, ready = dark_capacity(status)
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "RegionFailover" and owner.get("uid"):
            progress.dark_cluster_moved(namespace=namespace, owner_uid=owner["uid"], dark_cluster=name,
                                        warm=warm, ready=ready)


darkcluster.on_status(_dark_cluster_status)


def _dark_clusters(*, namespace: str, uid: str,
                   listed: dict[str, dict[str, Any]] | None = None) -> list[DarkClusterObservation]:
    """This RegionFailover's DarkClusters as the state machine sees them; ``listed`` gets their bodies by name.

    The capacity of each is the freshest this process knows: what its controller last wrote,
    over what the LIST returned.
    """
    out = []
    for dc in kube.list_custom(plural=DARKCLUSTERS, namespace=namespace):
        if not owned_by(dc, uid):
            continue
        if listed is not None:
            listed[dc["metadata"]["name"]] = dc
        status = dc.get("status") or {}
        warm, ready = _capacity_of(status, written=darkcluster.written_status(namespace=namespace,
                                                                              name=dc["metadata"]["name"]))
        out.append(DarkClusterObservation(
            name=dc["metadata"]["name"], evacuation_gate=Gate(status.get("evacuationGate") or Gate.CLOSED.value),
            warm=warm, ready=ready))
    return sorted(out, key=lambda d: d.name)


def _deployments_ready(*, namespace: str, spec: RegionFailoverSpec) -> bool:
    deployments = participants(namespace=namespace, spec=spec)
    return bool(deployments) and all(
        int((d.get("status") or {}).get("readyReplicas") or 0) >= int((d.get("spec") or {}).get("replicas") or 0)
        for d in deployments)


async def _peers(*, spec: RegionFailoverSpec, namespace: str, name: str) -> tuple[PeerProgress, str | None]:
    try:
        async with await prometheus_client(spec=spec, namespace=namespace) as prom:
            return await read_peers(prom=prom, name=name, peers=[p.name for p in spec.peers]), None
    except Exception as exc:  # the peers' progress unknown: nothing moves onto them, say why
        reason, message = rf_status.describe(exc)
        return PeerProgress(), f"{reason}: {message}"


def _book(domain: Domain, *, namespace: str, spec: RegionFailoverSpec, owner: Mapping[str, Any]) -> RouteBook:
    key = spec.model_dump_json(include={"region", "peers", "traffic"})
    if domain.route_book is None or domain.route_book_key != key:
        domain.route_book = RouteBook(api=kube.api_client(), namespace=namespace, spec=spec, owner=owner)
        domain.route_book_key = key
    return domain.route_book


async def _observe(
    *, fresh: Mapping[str, Any], spec: RegionFailoverSpec, status: RegionFailoverStatus, domain: Domain,
    now: dt.datetime, listed: dict[str, dict[str, Any]] | None = None,
) -> tuple[Observations, list[str], list[Exception], bool | None]:
    """The observations, the problems met reading them, the route errors, and this region's readiness.

    ``listed`` receives the DarkClusters' bodies as listed, by name: the evacuation-gate
    writes of the run start from them instead of reading each again.
    """
    meta = fresh["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    owner = {"apiVersion": fresh["apiVersion"], "kind": fresh["kind"], "name": name, "uid": uid,
             "controller": True, "blockOwnerDeletion": False}
    act = Mode(spec.mode) is not Mode.DRY_RUN
    book = _book(domain, namespace=namespace, spec=spec, owner=owner)
    problems: list[str] = []

    async def guarded(what: str, call: Any, default: Any) -> Any:
        try:
            return await asyncio.to_thread(call)
        except Exception as exc:
            reason, message = rf_status.describe(exc)
            problems.append(f"{what} unreadable: {message}")
            return default

    (dark, ready, (reports, errors), (peers, peer_problem)) = await asyncio.gather(
        guarded("DarkClusters", lambda: _dark_clusters(namespace=namespace, uid=uid, listed=listed), []),
        guarded("Deployments", lambda: _deployments_ready(namespace=namespace, spec=spec), None),
        guarded("routes", lambda: read_routes(book, status=status, act=act), ([], [])),
        _peers(spec=spec, namespace=namespace, name=name),
    )
    if peer_problem:
        problems.append(f"peers' progress unreadable from Prometheus: {peer_problem}")
    if not reports and spec.traffic:
        reports = [RouteReport(provider=t.kind, route=r, weights=None, verified=False, error="unreadable")
                   for t in spec.traffic for r in t.routes]
    deployments_ready = dict(peers.deployments_ready)
    if ready is not None:
        deployments_ready[spec.region] = ready
    signal = {r.name: FailbackSignal(served=r.actual, forecast=r.expected) for r in status.regions}
    observations = Observations(
        verdicts=verdicts_of(spec=spec, status=status, now=now), dark_clusters=dark, capacity=peers.capacity,
        deployments_ready=deployments_ready, routes=reports, signal=signal, served_share=peers.served_share)
    return observations, problems, errors, ready


async def _set_gates(*, namespace: str, names: Sequence[str], gate: Gate,
                     listed: Mapping[str, Mapping[str, Any]] | None = None) -> list[tuple[str, BaseException]]:
    """DarkClusters' own evacuation gates (those an older regionshift opened), :data:`GATE_CONCURRENCY` at a time."""
    limit = asyncio.Semaphore(GATE_CONCURRENCY)
    bodies = listed or {}
    loop = asyncio.get_running_loop()

    async def one(name: str) -> tuple[str, BaseException] | None:
        async with limit:
            try:
                await loop.run_in_executor(_writers(), functools.partial(
                    kube.set_evacuation_gate, namespace=namespace, name=name, gate=gate, listed=bodies.get(name)))
            except Exception as exc:
                return name, exc
        return None

    return [r for r in await asyncio.gather(*(one(n) for n in names)) if r is not None]


def _write_gate(*, namespace: str, name: str, gate: Gate, at: str | None) -> None:
    """The evacuation gate alone, the write that opens or closes every DarkCluster of the RegionFailover.

    A merge patch of its two fields under :data:`EVACUATION_MANAGER`, not an apply of the
    whole evacuation status (hundreds of route entries): it is the savior's first write of
    an evacuation, and every dark pod waits for it. The status applied after the actions
    carries the same two fields, so the apply keeps owning them.
    """
    kube.patch_custom_status(plural=rf_status.REGIONFAILOVERS, namespace=namespace, name=name,
                             status={"evacuationGate": gate.value, "evacuationGateWrittenAt": at},
                             field_manager=EVACUATION_MANAGER)


def _wake_dark_clusters(*, namespace: str, names: Sequence[str]) -> None:
    """The RegionFailover's gate moved: every DarkCluster it concerns looks at once (their controller reads it)."""
    for name in names:
        darkcluster.wake(namespace=namespace, name=name, cause="evacuation")


def _batches(actions: Sequence[Action]) -> list[list[Action]]:
    """The actions in order, with each run of route writes of one layer (and the Events among them) as one batch.

    The proxy routes come before DNS (the state machine orders them so); the writes of one
    batch go out together, and its Events after them.
    """
    out: list[list[Action]] = []
    layer = None
    for action in actions:
        if isinstance(action, SetWeights):
            if layer is not layer_of(action.provider):
                out.append([])
                layer = layer_of(action.provider)
            out[-1].append(action)
        elif isinstance(action, PostEvent) and layer is not None:
            out[-1].append(action)
        else:
            layer = None
            out.append([action])
    return out


async def _set_weights(
    *, book: RouteBook, actions: Sequence[SetWeights], status: RegionFailoverStatus, failing_back: bool,
    several: bool,
) -> list[tuple[SetWeights, BaseException]]:
    """One batch of route writes: the first alone (the crash tests' failpoint follows it), the rest
    :data:`~.routes.ROUTE_CONCURRENCY` at a time, every HTTPRoute checked against one snapshot of the
    namespace's Services. Returns the writes refused, with why."""
    try:
        index = await asyncio.to_thread(backend_index, book)
    except Exception:  # the snapshot unreadable: each write checks its own backends instead
        index = None
    limit = asyncio.Semaphore(ROUTE_CONCURRENCY)
    loop = asyncio.get_running_loop()

    async def one(action: SetWeights) -> tuple[SetWeights, BaseException] | None:
        async with limit:
            try:
                await loop.run_in_executor(_writers(), functools.partial(
                    set_weights, book, action=action, status=status, index=index))
            except Exception as exc:
                observe.record_action(kind="SetWeights", result="Failed")
                return action, exc
        observe.record_action(kind="SetWeights", result="Done")
        return None

    refused = []
    first, rest = actions[0], actions[1:]
    if (outcome := await one(first)) is not None:
        refused.append(outcome)
    elif several:
        failpoint("mid-failback" if failing_back else "mid-shift")
    refused.extend(r for r in await asyncio.gather(*(one(a) for a in rest)) if r is not None)
    return refused


async def _post_events(*, fresh: Mapping[str, Any], events: Sequence[PostEvent]) -> None:
    limit = asyncio.Semaphore(ROUTE_CONCURRENCY)

    async def one(action: PostEvent) -> None:
        async with limit:
            await rf_status.post(body=fresh, type_=action.type, reason=action.reason, message=action.message)
        observe.record_action(kind="PostEvent", result="Done")

    await asyncio.gather(*(one(e) for e in events))


async def _carry_out(
    *, fresh: Mapping[str, Any], decision: Decision, book: RouteBook,
    dark_clusters: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Every action in order; returns what failed, each in one sentence (the rest goes on)."""
    namespace, name = fresh["metadata"]["namespace"], fresh["metadata"]["name"]
    failed: list[str] = []
    if decision.writes:
        failpoint("after-decision")
    failing_back = decision.status.phase is Phase.FAILING_BACK
    several = sum(isinstance(a, SetWeights) for a in decision.actions) > 1
    for batch in _batches(decision.actions):
        writes = [a for a in batch if isinstance(a, SetWeights)]
        if writes:
            refused = await _set_weights(book=book, actions=writes, status=decision.status,
                                         failing_back=failing_back, several=several)
            several = False  # the failpoint follows the first route write of the run only
            for action, exc in refused:
                reason, message = rf_status.describe(exc)
                failed.append(f"weights on {action.provider.value} {action.route}: {reason}: {message}")
            await _post_events(fresh=fresh, events=[a for a in batch if isinstance(a, PostEvent)])
            continue
        action = batch[0]
        kind = type(action).__name__
        if isinstance(action, (OpenGates, CloseGates)):
            gate = Gate.OPEN if isinstance(action, OpenGates) else Gate.CLOSED
            refused = False
            try:  # the RegionFailover's gate: one write opens or closes every DarkCluster it owns
                write_at = time.monotonic()
                await asyncio.to_thread(_write_gate, namespace=namespace, name=name, gate=gate,
                                        at=decision.status.evacuation_gate_written_at)
            except Exception as exc:  # the status written after the actions carries it too; else the next run
                refused = True
                failed.append(f"evacuation gate {gate.value} of RegionFailover {name}: {rf_status.describe(exc)[1]}")
            else:
                darkcluster.note_region_failover_gate(uid=fresh["metadata"]["uid"], gate=gate.value, read_at=write_at)
                _wake_dark_clusters(namespace=namespace, names=action.dark_clusters)
                if gate is Gate.OPEN:
                    failpoint("mid-ungate")
            if isinstance(action, CloseGates) and action.held:
                gates_refused = await _set_gates(namespace=namespace, names=action.held, gate=gate,
                                                 listed=dark_clusters)
                refused |= bool(gates_refused)
                for held, exc in gates_refused:
                    failed.append(f"evacuation gate {gate.value} on DarkCluster {held}: {rf_status.describe(exc)[1]}")
            observe.record_action(kind=kind, result="Failed" if refused else "Done")
        elif isinstance(action, PostEvent):
            await rf_status.post(body=fresh, type_=action.type, reason=action.reason, message=action.message)
            observe.record_action(kind=kind, result="Done")
        elif isinstance(action, Recommend):
            await rf_status.post(body=fresh, type_="Warning", reason="EvacuationRecommended", message=action.message)
            observe.record_action(kind=kind, result="Done")
    for sentence in failed:
        await rf_status.post(body=fresh, type_="Warning", reason="ActionFailed", message=sentence)
    return failed


def _conditions(
    *, old: RegionFailoverStatus, new: RegionFailoverStatus, generation: int | None, now: str,
    problems: Sequence[str], errors: Sequence[Exception], failed: Sequence[str],
) -> list[Condition]:
    old_conditions = [c.model_dump(by_alias=True, mode="json") for c in old.conditions]
    fought = [f"{TrafficProviderKind(w.provider).value} {w.route}" for w in new.weights if w.conflict]
    if fought:
        routes = (False, "Conflict", f"something else keeps setting the weights of {', '.join(fought)}: regionshift"
                  " stopped setting them again (exclude the weights from the other writer, e.g. Argo CD"
                  " ignoreDifferences); it writes again when its desired weights change")
    elif errors:
        first = errors[0]
        reason = type(first).__name__ if isinstance(first, TrafficError) else rf_status.describe(first)[0]
        routes = (False, reason, "; ".join(describe_route_error(e) for e in errors))
    elif problems:
        routes = (False, "ObservationsIncomplete", "; ".join(problems))
    else:
        routes = (True, "Read", "every route of spec.traffic, the dark clusters and the peers' progress were read")
    actions = (False, "ActionFailed", "; ".join(failed)) if failed else (True, "Applied", "every action was carried out")
    return [
        rf_status.make_condition(type_="RoutesReady", ok=routes[0], reason=routes[1], message=routes[2], now=now,
                                 generation=generation, old=old_conditions),
        rf_status.make_condition(type_="ActionsApplied", ok=actions[0], reason=actions[1], message=actions[2], now=now,
                                 generation=generation, old=old_conditions),
    ]


def _kept_conditions(status: RegionFailoverStatus) -> list[Condition]:
    """The evacuation's conditions as they are (a write ahead of the actions must not drop them)."""
    return [c for c in status.conditions if c.type in EVENTS]


def evacuation_payload(status: RegionFailoverStatus, conditions: Sequence[Condition]) -> dict[str, Any]:
    """The evacuation's part of the status, camelCase, for its server-side apply (None fields left out)."""
    payload = status.model_dump(by_alias=True, mode="json", include=set(OWNED_FIELDS), exclude_none=True)
    payload["conditions"] = [c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in conditions]
    return payload


def with_new_records(before: RegionFailoverStatus, after: RegionFailoverStatus) -> RegionFailoverStatus | None:
    """The old status plus the weights ``after`` records for the first time, or None when it records none.

    Failback restores the weights recorded before the first change, so the record must be
    in the status before that change is made: written after it, a crash in between would
    leave a restarted operator to record the evacuation's weights as the originals. This is
    the one part of the status written ahead of the actions; everything else follows them.
    """
    old = {(w.provider, w.route): w for w in before.weights}
    new = [w for w in after.weights
           if w.recorded and not (old.get((w.provider, w.route)) and old[(w.provider, w.route)].recorded)]
    if not new:
        return None
    ahead = before.model_copy(deep=True)
    kept = {(w.provider, w.route): w for w in ahead.weights}
    for state in new:
        entry = kept.get((state.provider, state.route))
        if entry is None:
            entry = type(state)(provider=state.provider, route=state.route, current=state.current)
            ahead.weights.append(entry)
            kept[(state.provider, state.route)] = entry
        entry.recorded = dict(state.recorded or {})
    return ahead


def _parse(fresh: Mapping[str, Any]) -> tuple[RegionFailoverSpec, RegionFailoverStatus]:
    return RegionFailoverSpec.model_validate(fresh["spec"]), RegionFailoverStatus.model_validate(fresh.get("status") or {})


def _apply_status(*, namespace: str, name: str, status: RegionFailoverStatus, conditions: Sequence[Condition]) -> None:
    """The evacuation's part of the status, built and applied in one blocking call (run it in a thread)."""
    kube.apply_custom_status(plural=rf_status.REGIONFAILOVERS, kind="RegionFailover", namespace=namespace, name=name,
                             status=evacuation_payload(status, conditions), field_manager=EVACUATION_MANAGER)


def _served_share(status: RegionFailoverStatus, region: str) -> float:
    for evac in status.evacuations:
        if evac.region == region:
            return float(evac.share)
    return 1.0


async def evacuate(*, body: Mapping[str, Any], domain: Domain, now: dt.datetime | None = None) -> bool:
    """One run; True when an evacuation is moving and the next run should come soon. Never raises."""
    meta = body["metadata"]
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    try:
        read_at = time.monotonic()
        fresh = await asyncio.to_thread(kube.read_custom, plural=rf_status.REGIONFAILOVERS, namespace=namespace,
                                        name=name)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return False
        darkcluster.note_region_failover_gate(uid=fresh["metadata"]["uid"], read_at=read_at,
                                              gate=(fresh.get("status") or {}).get("evacuationGate"))
        # Parsing, deciding and building the status of hundreds of routes is CPU work: in a
        # thread, so that the event loop (detection, the DarkClusters' daemons) goes on meanwhile.
        spec, status = await asyncio.to_thread(_parse, fresh)
        moment = now or dt.datetime.now(dt.timezone.utc)
        dark_clusters: dict[str, dict[str, Any]] = {}
        observations, problems, errors, ready = await _observe(fresh=fresh, spec=spec, status=status, domain=domain,
                                                               now=moment, listed=dark_clusters)
        # The capacity the peers shift traffic on, exported before this run's writes and then, DarkCluster by
        # DarkCluster, as their controller writes it (progress.track); the served share after the writes.
        progress.track(namespace=namespace, uid=fresh["metadata"]["uid"], name=name, region=spec.region,
                       members={d.name: (d.warm, d.ready) for d in observations.dark_clusters},
                       deployments_ready=ready)
        decision = await asyncio.to_thread(step, spec=spec, status=status, observations=observations, now=moment,
                                           tuning=tuning_of(spec))
        ahead = await asyncio.to_thread(with_new_records, status, decision.status) if decision.writes else None
        if ahead is not None:  # the record first: see with_new_records
            await asyncio.to_thread(_apply_status, namespace=namespace, name=name, status=ahead,
                                    conditions=_kept_conditions(status))
        failed = await _carry_out(fresh=fresh, decision=decision, book=domain.route_book,  # type: ignore[arg-type]
                                  dark_clusters=dark_clusters)
        stamp = moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = _conditions(old=status, new=decision.status, generation=fresh["metadata"].get("generation"), now=stamp,
                                 problems=problems, errors=errors, failed=failed)
        write_at = time.monotonic()
        await asyncio.to_thread(_apply_status, namespace=namespace, name=name, status=decision.status,
                                conditions=conditions)
        if decision.status.evacuation_gate is not None:
            darkcluster.note_region_failover_gate(uid=fresh["metadata"]["uid"], read_at=write_at,
                                                  gate=Gate(decision.status.evacuation_gate).value)
            if decision.status.evacuation_gate != status.evacuation_gate:  # moved (again, if the action's write failed)
                _wake_dark_clusters(namespace=namespace, names=[d.name for d in observations.dark_clusters])
        await rf_status.post_transitions(body=fresh, old=[c.model_dump(by_alias=True, mode="json")
                                                          for c in status.conditions],
                                         new=conditions, events_for=EVENTS)
        observe.record_progress(namespace=namespace, name=name, before=status, after=decision.status)
        observe.record_status(namespace=namespace, name=name, status=decision.status)
        observe.record_dark_capacity(namespace=namespace, name=name, dark_clusters=observations.dark_clusters)
        progress.export_served_share(name=name, region=spec.region,
                                     served_share=_served_share(decision.status, spec.region))
        # Transplant (issue 7 item 7): after the evacuation's own status, in a module of its own.
        transplanting = await transplant(body=fresh, spec=spec, before=status, after=decision.status, now=moment)
        domain.last_run_error = None
        moving = decision.status.phase in (Phase.EVACUATING, Phase.FAILING_BACK)
        return bool(moving or decision.writes or failed or transplanting)
    except Exception as exc:  # a bug or a surprise: say so, keep the daemon alive; the next run tries again
        log.exception("evacuation run of %s/%s failed", namespace, name)
        reason, message = rf_status.describe(exc)
        if domain.last_run_error != message:
            domain.last_run_error = message
            await rf_status.post(body=body, type_="Warning", reason="EvacuationRunFailed",
                                 message=f"{reason}: {message}")
        return False
