"""The DarkCluster controller's own decisions: when to run again, what a refusal becomes.

Tests whose name says "mock" replace the API adapter with fakes, for failures a real API
server cannot be made to produce on demand (a 409 in the instant between a read and a
create).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from kubernetes import client

from regionshift.controllers import darkcluster
from regionshift.decide.darkcapacity import shadow_deployment


def test_a_reconciled_dark_cluster_rests_for_the_jittered_resync() -> None:
    low = darkcluster.next_delay(reason="Reconciled", streak=5, jitter=0.0)
    high = darkcluster.next_delay(reason="Reconciled", streak=5, jitter=0.999)
    assert low == pytest.approx(0.8 * darkcluster.RESYNC_SECONDS)
    assert high == pytest.approx(1.2 * darkcluster.RESYNC_SECONDS, rel=1e-2)
    assert darkcluster.RESYNC_SECONDS >= 300, "an idle DarkCluster must cost almost no API requests"


@pytest.mark.parametrize("reason", ["TargetNotFound", "ShadowConflict"])
def test_a_blocked_dark_cluster_polls_with_a_capped_backoff(reason: str) -> None:
    low, high = darkcluster.TARGET_POLL_SECONDS
    delays = [darkcluster.next_delay(reason=reason, streak=n, jitter=0.999) for n in range(1, 12)]
    assert delays[0] == pytest.approx(low, rel=1e-2)
    assert delays == sorted(delays)
    assert delays[-1] == pytest.approx(high, rel=1e-2)


def test_routine_refusals_retry_sooner_than_errors() -> None:
    conflict = darkcluster.next_delay(reason="Conflict", streak=1, jitter=0.5)
    forbidden = darkcluster.next_delay(reason="Forbidden", streak=1, jitter=0.5)
    assert conflict < forbidden
    assert darkcluster.next_delay(reason="Forbidden", streak=50, jitter=0.999) <= darkcluster.ERROR_SECONDS[1]


def test_a_409_during_reconcile_is_retried_quietly_mock(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    def conflict(**_: Any) -> None:
        raise client.ApiException(status=409, reason="Conflict")

    monkeypatch.setattr(darkcluster, "reconcile", conflict)
    with caplog.at_level(logging.DEBUG, logger="regionshift"):
        outcome = darkcluster._reconcile_logged(namespace="ns", name="api", causes="pod")
    assert outcome.reason == "Conflict"
    assert [r.levelno for r in caplog.records if r.name.startswith("regionshift")] == [logging.INFO, logging.DEBUG]
    assert not any(r.exc_info for r in caplog.records)


DARK = {"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster",
        "metadata": {"name": "api", "namespace": "ns", "uid": "uid-1"}, "spec": {"targetDeployment": "api"}}
TARGET = {"metadata": {"name": "api", "namespace": "ns", "labels": {"app": "api"}},
          "spec": {"selector": {"matchLabels": {"app": "api"}},
                   "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "c"}]}}}}


def test_a_409_on_create_never_adopts_a_deployment_someone_else_made_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    desired = shadow_deployment(dark_cluster=DARK, target=TARGET, replicas=1)
    foreign = {"metadata": {"name": "api-dark", "namespace": "ns", "uid": "other", "labels": dict(desired["metadata"]["labels"])}}
    writes: list[str] = []

    def create(**_: Any) -> None:
        raise client.ApiException(status=409, reason="AlreadyExists")

    monkeypatch.setattr(darkcluster.kube, "create_deployment", create)
    monkeypatch.setattr(darkcluster.kube, "read_deployment", lambda **_: foreign)
    monkeypatch.setattr(darkcluster.kube, "replace_deployment", lambda **_: writes.append("replace"))
    monkeypatch.setattr(darkcluster.events, "post_event", lambda **_: None)
    assert darkcluster._write_shadow(body=DARK, current=None, desired=desired) is False
    assert writes == []


def test_a_409_on_create_of_our_own_shadow_is_retried_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    desired = shadow_deployment(dark_cluster=DARK, target=TARGET, replicas=1)

    def create(**_: Any) -> None:
        raise client.ApiException(status=409, reason="AlreadyExists")

    monkeypatch.setattr(darkcluster.kube, "create_deployment", create)
    monkeypatch.setattr(darkcluster.kube, "read_deployment", lambda **_: desired)
    with pytest.raises(client.ApiException) as err:
        darkcluster._write_shadow(body=DARK, current=None, desired=desired)
    assert err.value.status == 409


def test_wake_without_a_daemon_says_so() -> None:
    assert darkcluster.wake(namespace="nowhere", name="nothing") is False


def _dark_cluster_event(*, generation: int = 1, forecast: int | None = None, evacuation_gate: str | None = None,
                        ready: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"readyReplicas": ready}
    if forecast is not None:
        status["forecastReplicas"] = forecast
    if evacuation_gate is not None:
        status["evacuationGate"] = evacuation_gate
    return {"metadata": {"name": "api", "namespace": "ns", "generation": generation}, "status": status}


@pytest.mark.parametrize(("event", "wakes", "cause"), [
    (_dark_cluster_event(ready=3), False, None),  # our own status write comes back: nothing to do
    (_dark_cluster_event(generation=2), True, "darkcluster"),  # a spec change
    (_dark_cluster_event(forecast=4), True, "darkcluster"),  # sizing
    (_dark_cluster_event(evacuation_gate="Open"), True, "evacuation"),  # a status-only change by the evacuation
])
async def test_a_dark_cluster_event_wakes_the_daemon_only_when_what_a_run_acts_on_moved(
    event: dict[str, Any], wakes: bool, cause: str | None
) -> None:
    key = ("ns", "api")
    waker = darkcluster._Waker(loop=asyncio.get_running_loop())
    waker.seen = darkcluster.acted_on(_dark_cluster_event())
    darkcluster._wakers[key] = waker
    try:
        darkcluster.dark_cluster_changed(namespace="ns", name="api", body=event, type_="MODIFIED")
        assert waker.event.is_set() is wakes
        assert waker.causes == ({cause} if cause else set())
    finally:
        del darkcluster._wakers[key]


def test_a_forecast_that_moves_inside_the_policys_clamp_wakes_nothing() -> None:
    def event(forecast: int) -> dict[str, Any]:
        body = _dark_cluster_event(forecast=forecast)
        body["spec"] = {"targetDeployment": "api", "replicas": {"source": "Forecast", "minReplicas": 1, "maxReplicas": 3}}
        return body

    assert darkcluster.acted_on(event(1)) == darkcluster.acted_on(event(0)), "both clamp to the minimum"
    assert darkcluster.acted_on(event(7)) == darkcluster.acted_on(event(3)), "both clamp to the maximum"
    assert darkcluster.acted_on(event(2)) != darkcluster.acted_on(event(3))


def test_a_403_becomes_a_condition_and_an_event_mock(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    body = {**DARK, "metadata": {**DARK["metadata"], "generation": 2},
            "status": {"warmReplicas": 2, "forecastReplicas": 5, "conditions": [
                {"type": "Ready", "status": "True", "reason": "Warm", "lastTransitionTime": "t0"}]}}
    applied: list[dict[str, Any]] = []
    posted: list[dict[str, Any]] = []

    def forbidden(**_: Any) -> None:
        raise client.ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(darkcluster, "reconcile", forbidden)
    monkeypatch.setattr(darkcluster.kube, "read_custom", lambda **_: body)
    monkeypatch.setattr(darkcluster.kube, "apply_custom_status", lambda **kw: applied.append(kw))
    monkeypatch.setattr(darkcluster.events, "post_event", lambda **kw: posted.append(kw))
    outcome = darkcluster._reconcile_logged(namespace="ns", name="api", causes="pod")

    assert outcome.reason == "Forbidden"
    (write,) = applied
    assert write["field_manager"] == darkcluster.FIELD_MANAGER
    assert "forecastReplicas" not in write["status"] and write["status"]["warmReplicas"] == 2
    ready = next(c for c in write["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Forbidden")
    assert [(e["type_"], e["reason"]) for e in posted] == [("Warning", "Forbidden")]
    assert not any(r.exc_info for r in caplog.records)


# ---------------------------------------------------------------------------- the gate's fast path


def _listed_dark_cluster(name: str, *, evacuation_gate: str | None, owner: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"evacuationGate": evacuation_gate} if evacuation_gate else {}
    owners = [{"apiVersion": "regionshift.io/v1alpha1", "kind": "RegionFailover", "name": owner, "uid": f"uid-{owner}",
               "controller": True}] if owner else []
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1,
                         "resourceVersion": "10", "ownerReferences": owners},
            "spec": {"targetDeployment": name, "replicas": {"source": "Fixed", "fixedReplicas": 1, "maxReplicas": 1}},
            "status": status}


def _dark_pod(dark_cluster: str) -> dict[str, Any]:
    from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL, dark_cluster_label_value
    from regionshift.decide.gate import SERVING_LABELS_ANNOTATION
    return {"metadata": {"name": f"{dark_cluster}-dark-0", "namespace": "ns", "resourceVersion": "5",
                         "labels": {DARK_CLUSTER_LABEL: dark_cluster_label_value(dark_cluster)},
                         "annotations": {SERVING_LABELS_ANNOTATION: '{"app": "%s"}' % dark_cluster}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


class _FakeApi:
    """The calls the fast path makes, answered from memory and counted."""

    def __init__(self, dark_clusters: list[dict[str, Any]]) -> None:
        self.dark_clusters = dark_clusters
        self.region_failovers: list[dict[str, Any]] = []
        self.lists: list[str] = []
        self.patched: list[str] = []
        self.statuses: list[str] = []
        self.writes: list[str] = []

    def list_custom(self, *, plural: str, **_: Any) -> list[dict[str, Any]]:
        self.lists.append(plural)
        return self.region_failovers if plural == "regionfailovers" else self.dark_clusters

    def list_pods(self, **_: Any) -> list[dict[str, Any]]:
        self.lists.append("pods")
        return [_dark_pod(dc["metadata"]["name"]) for dc in self.dark_clusters]

    def patch_pod_labels(self, *, namespace: str, name: str, labels: Any) -> dict[str, Any]:
        self.patched.append(name)
        self.writes.append("pod")
        pod = _dark_pod(name.removesuffix("-dark-0"))
        pod["metadata"]["labels"].update(labels)
        pod["metadata"]["resourceVersion"] = "6"
        return pod

    def apply_custom_status(self, *, name: str, status: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.statuses.append(name)
        self.writes.append("status")
        return {}


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> _FakeApi:
    api = _FakeApi([_listed_dark_cluster(f"svc-{i}", evacuation_gate="Open") for i in range(20)]
                   + [_listed_dark_cluster("closed", evacuation_gate=None)])
    for call in ("list_custom", "list_pods", "patch_pod_labels", "apply_custom_status"):
        monkeypatch.setattr(darkcluster.kube, call, getattr(api, call))
    darkcluster._listings.clear()
    return api


async def test_woken_together_the_fast_paths_share_one_listing_and_open_every_pod_mock(fake_api: _FakeApi) -> None:
    since = __import__("time").monotonic()
    gated = await asyncio.gather(*(darkcluster.open_gate_fast(namespace="ns", name=f"svc-{i}", since=since)
                                   for i in range(20)))
    assert fake_api.lists == ["darkclusters", "pods"]  # one LIST of each for the twenty (no owner to look up)
    assert sorted(fake_api.patched) == sorted(f"svc-{i}-dark-0" for i in range(20))
    assert all(g is not None and g.written == 1 and g.gate == "Open" for g in gated)
    assert sorted(fake_api.statuses) == sorted(f"svc-{i}" for i in range(20))  # the serving replicas
    assert fake_api.writes == ["pod"] * 20 + ["status"] * 20, "the pods first, then the statuses that report them"
    assert darkcluster._fast_paths == 0


async def test_the_region_failovers_gate_opens_every_dark_cluster_it_owns_and_no_other_mock(
        fake_api: _FakeApi) -> None:
    import time
    fake_api.dark_clusters = [_listed_dark_cluster(f"svc-{i}", evacuation_gate=None, owner="domain") for i in range(5)]
    fake_api.dark_clusters.append(_listed_dark_cluster("other", evacuation_gate=None, owner="elsewhere"))
    fake_api.region_failovers = [
        {"metadata": {"name": "domain", "uid": "uid-domain"}, "status": {"evacuationGate": "Open"}},
        {"metadata": {"name": "elsewhere", "uid": "uid-elsewhere"}, "status": {"evacuationGate": "Closed"}}]
    darkcluster._known_gates.clear()
    since = time.monotonic()
    gated = await asyncio.gather(*(darkcluster.open_gate_fast(namespace="ns", name=n, since=since)
                                   for n in [*(f"svc-{i}" for i in range(5)), "other"]))
    assert [g and g.described for g in gated] == ["opened by its RegionFailover's status.evacuationGate (an evacuation)"] * 5 + [None]
    assert sorted(fake_api.patched) == sorted(f"svc-{i}-dark-0" for i in range(5))
    assert darkcluster.written_status(namespace="ns", name="svc-0")["effectiveGate"] == "Open"
    assert fake_api.lists == ["darkclusters", "regionfailovers", "pods"]

    fake_api.lists.clear()  # the evacuation of this process noted its writes: no LIST of the RegionFailovers
    darkcluster.note_region_failover_gate(uid="uid-domain", gate="Closed", read_at=time.monotonic())
    darkcluster.note_region_failover_gate(uid="uid-elsewhere", gate="Open", read_at=time.monotonic())
    assert await darkcluster.open_gate_fast(namespace="ns", name="svc-0", since=time.monotonic()) is None
    assert (await darkcluster.open_gate_fast(namespace="ns", name="other", since=time.monotonic())) is not None
    assert fake_api.lists == ["darkclusters", "pods"] * 2
    darkcluster._known_gates.clear()


def test_reconciles_share_a_read_of_their_region_failover_that_began_after_they_did(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time
    reads: list[float] = []
    release = threading.Event()

    def read_custom(**_: Any) -> dict[str, Any]:
        reads.append(time.monotonic())
        release.wait(5)
        return {"metadata": {"uid": "uid-domain"}, "status": {"evacuationGate": "Open"}}

    monkeypatch.setattr(darkcluster.kube, "read_custom", read_custom)
    darkcluster._gate_reads.clear()
    darkcluster._known_gates.clear()
    since = time.monotonic()
    out: list[str | None] = []
    threads = [threading.Thread(target=lambda: out.append(darkcluster.read_region_failover_gate(
        namespace="ns", name="domain", since=since))) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert out == ["Open"] * 8 and len(reads) == 1, "one read for the eight"
    later = time.monotonic()
    assert darkcluster.read_region_failover_gate(namespace="ns", name="domain", since=later) == "Open"
    assert len(reads) == 2 and reads[1] >= later, "a reconcile that began after the read never takes it"
    assert darkcluster.region_failover_gate(namespace="ns", owner=("domain", "uid-domain"), since=time.monotonic()) \
        == "Open" and len(reads) == 2, "noted: a resync does not read it again"
    darkcluster.note_region_failover_gate(uid="uid-domain", gate="Closed", read_at=time.monotonic())
    darkcluster.note_region_failover_gate(uid="uid-domain", gate="Open", read_at=since)  # older: ignored
    assert darkcluster.region_failover_gate(namespace="ns", owner=("domain", "uid-domain"), since=0.0) == "Closed"
    assert darkcluster.read_region_failover_gate(namespace="ns", name="domain", since=0.0, uid="uid-other") is None
    darkcluster._known_gates.clear()


async def test_a_fast_path_never_acts_on_a_listing_older_than_its_wake_mock(fake_api: _FakeApi) -> None:
    import time
    await darkcluster.open_gate_fast(namespace="ns", name="svc-0", since=time.monotonic())
    await darkcluster.open_gate_fast(namespace="ns", name="svc-1", since=time.monotonic())
    assert fake_api.lists == ["darkclusters", "pods"] * 2  # woken after the first listing began: a new one


async def test_the_fast_path_only_opens_a_closed_gate_is_the_full_reconciles_mock(fake_api: _FakeApi) -> None:
    import time
    assert await darkcluster.open_gate_fast(namespace="ns", name="closed", since=time.monotonic()) is None
    assert await darkcluster.open_gate_fast(namespace="ns", name="gone", since=time.monotonic()) is None
    assert fake_api.patched == [] and fake_api.statuses == []


async def test_a_pod_event_of_our_own_gate_write_wakes_nothing_mock(fake_api: _FakeApi) -> None:
    import time
    from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL, dark_cluster_label_value
    await darkcluster.open_gate_fast(namespace="ns", name="svc-0", since=time.monotonic())
    key = ("ns", "svc-0")
    waker = darkcluster._Waker(loop=asyncio.get_running_loop())
    darkcluster._wakers[key] = waker
    labels = {DARK_CLUSTER_LABEL: dark_cluster_label_value("svc-0")}
    index = {("ns", dark_cluster_label_value("svc-0")): ["svc-0"]}
    try:
        darkcluster.dark_pod_changed(namespace="ns", labels=labels, darkclusters_by_label=index,
                                     name="svc-0-dark-0", resource_version="6", type_="MODIFIED")
        assert not waker.event.is_set()  # exactly what our write returned
        darkcluster.dark_pod_changed(namespace="ns", labels=labels, darkclusters_by_label=index,
                                     name="svc-0-dark-0", resource_version="7", type_="MODIFIED")
        assert waker.event.is_set() and waker.causes == {"pod"}  # anything after it wakes
    finally:
        del darkcluster._wakers[key]


async def test_with_the_watches_caught_up_the_fast_path_lists_nothing_mock(fake_api: _FakeApi) -> None:
    import time

    from regionshift.controllers import dark_store
    from regionshift.decide.darkcapacity import dark_cluster_label_value
    watch = object()
    dark_store.watch_began(namespace="ns", watch=watch)
    darkcluster._own_writes.clear()  # what earlier tests' writes left (their events never come)
    try:
        names = [f"svc-{i}" for i in range(5)]
        for name in names:
            darkcluster._written.pop(("ns", name), None)  # what earlier tests wrote
            darkcluster.dark_cluster_changed(namespace="ns", name=name, type_="ADDED",
                                             body=_listed_dark_cluster(name, evacuation_gate=None, owner="domain"))
            dark_store.pod_changed(namespace="ns", watch=watch, type_=None, pod=_dark_pod(name))
        dark_store.pods_listed(namespace="ns", watch=watch)
        darkcluster.note_region_failover_gate(uid="uid-domain", gate="Open", read_at=time.monotonic())
        since = time.monotonic()
        gated = await asyncio.gather(*(darkcluster.open_gate_fast(namespace="ns", name=n, since=since) for n in names))
        assert fake_api.lists == [], "no LIST: the DarkClusters, their pods and the gate were known"
        assert sorted(fake_api.patched) == sorted(f"{n}-dark-0" for n in names)
        assert all(g is not None and g.written == 1 and g.seen is not None for g in gated)
        assert fake_api.writes == ["pod"] * 5 + ["status"] * 5
        assert darkcluster.written_status(namespace="ns", name="svc-1")["readyReplicas"] == 1

        # The watch has not yet shown the gate writes above (a close of ours, say): the store is behind them.
        assert darkcluster.own_write(namespace="ns", pod="svc-4-dark-0", resource_version="6")  # svc-4's came
        fake_api.lists.clear()
        assert await darkcluster.open_gate_fast(namespace="ns", name="svc-3", since=time.monotonic()) is not None
        assert fake_api.lists == ["darkclusters", "pods"]
        fake_api.lists.clear()
        assert await darkcluster.open_gate_fast(namespace="ns", name="svc-4", since=time.monotonic()) is not None
        assert fake_api.lists == []

        fake_api.lists.clear()
        dark_store.pod_changed(namespace="ns", watch=watch, type_="ADDED", pod=_dark_pod("late"))
        darkcluster._known_gates.pop("uid-domain")  # a gate this process never read: listed, as before
        fake_api.region_failovers = [{"metadata": {"name": "domain", "uid": "uid-domain"},
                                      "status": {"evacuationGate": "Open"}}]
        fake_api.dark_clusters = [_listed_dark_cluster(n, evacuation_gate=None, owner="domain") for n in names]
        assert await darkcluster.open_gate_fast(namespace="ns", name="svc-2", since=time.monotonic()) is not None
        assert fake_api.lists == ["darkclusters", "regionfailovers", "pods"]
        assert dark_store.dark_pods(namespace="ns", label=dark_cluster_label_value("late")) != []
    finally:
        dark_store.watch_ended(namespace="ns", watch=watch)
        for name in [f"svc-{i}" for i in range(5)]:
            darkcluster.dark_cluster_changed(namespace="ns", name=name, type_="DELETED", body={})
            darkcluster._written.pop(("ns", name), None)
        darkcluster._known_gates.clear()
