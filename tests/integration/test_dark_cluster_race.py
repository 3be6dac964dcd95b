"""One writer per DarkCluster, under fire: the gate never goes back and no status update is lost.

The gate flips 30 times, by the owner's hand (``spec.gate``) or by the evacuation's
(``status.evacuationGate``, a status-only write that must wake the DarkCluster as
promptly), while everything that could race with it runs at once against the real
control plane: resyncs (the daemon is woken as a resync would wake it), pod
events (dark pods deleted and recreated, the shadow scaled up and down) and status writes
of ``forecastReplicas`` by another field manager (what sizing does). A watch records every
dark pod's gate throughout; afterwards the test checks, pod by pod, that once a pod showed
the gate of the latest flip it never showed an older one until the next flip, and that the
other writer's forecast survived every status write of the controller.

A pod's gate is read through :func:`regionshift.decide.gate.pod_gate`, so the test holds for
whichever gate mechanism that module implements.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, config, watch

from regionshift.adapters import kube as operator_kube
from regionshift.api.models import Gate
from regionshift.controllers import darkcluster
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL
from regionshift.decide.gate import pod_gate
from tests.integration.test_dark_cluster import APP, running
from tests.support.cluster import Kube, eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("running_operator")]

FLIPS = 30
SIZING_MANAGER = "test-sizing"
FORECASTS = (3, 4)
PER_FLIP = {"resync": 5, "forecast": 1, "pod_deleted": 1}
"""At least this many of each race between one flip and the next."""


@dataclass(frozen=True)
class Seen:
    """One watch event of a dark pod."""

    uid: str
    gate: Gate | None
    live: bool


class PodWatch:
    """Every dark pod's gate as a watch reports it, in order, from a thread."""

    def __init__(self, kube: Kube, selector: str) -> None:
        self._api = config.new_client_from_config(str(kube.kubeconfig))
        self._kube, self._selector = kube, selector
        self.log: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PodWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._api.close()

    def _run(self) -> None:
        core = client.CoreV1Api(self._api)
        version = core.list_namespaced_pod(self._kube.namespace, label_selector=self._selector).metadata.resource_version
        while not self._stop.is_set():
            stream = watch.Watch()
            for event in stream.stream(core.list_namespaced_pod, self._kube.namespace, label_selector=self._selector,
                                       resource_version=version, timeout_seconds=2, allow_watch_bookmarks=False):
                pod = self._api.sanitize_for_serialization(event["object"])
                version = pod["metadata"]["resourceVersion"]
                live = event["type"] != "DELETED" and not pod["metadata"].get("deletionTimestamp")
                with self._lock:
                    self.log.append(Seen(uid=pod["metadata"]["uid"], gate=pod_gate(pod), live=live))
                if self._stop.is_set():
                    stream.stop()

    def mark(self) -> int:
        with self._lock:
            return len(self.log)

    def state(self) -> tuple[int, dict[str, Seen]]:
        """The log's length and, as of then, the latest event of every pod still there."""
        with self._lock:
            latest: dict[str, Seen] = {}
            for seen in self.log:
                latest[seen.uid] = seen
            return len(self.log), {uid: seen for uid, seen in latest.items() if seen.live}


class Chaos:
    """Everything that races with a gate flip, each in its own thread until stopped."""

    def __init__(self, kube: Kube, name: str) -> None:
        self._api = config.new_client_from_config(str(kube.kubeconfig))
        self._kube, self._name = kube, name
        self._stop = threading.Event()
        self.last_forecast: int | None = None
        self.counts = {"resync": 0, "forecast": 0, "pod_deleted": 0}
        self.errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._guard, args=(f,), daemon=True)
                         for f in (self._resyncs, self._forecasts, self._pod_deletions)]

    def write_forecast(self, value: int) -> None:
        """What sizing does: server-side apply of forecastReplicas under its own field manager."""
        client.CustomObjectsApi(self._api).patch_namespaced_custom_object_status(
            "regionshift.io", "v1alpha1", self._kube.namespace, "darkclusters", self._name,
            {"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster",
             "metadata": {"name": self._name, "namespace": self._kube.namespace}, "status": {"forecastReplicas": value}},
            field_manager=SIZING_MANAGER, force=True, _content_type="application/apply-patch+yaml")
        self.last_forecast = value

    def _guard(self, loop: Any) -> None:
        try:
            loop()
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def _resyncs(self) -> None:
        while not self._stop.wait(random.uniform(0.02, 0.15)):
            if darkcluster.wake(namespace=self._kube.namespace, name=self._name, cause="resync"):
                self.counts["resync"] += 1

    def _forecasts(self) -> None:
        while not self._stop.wait(random.uniform(0.2, 0.6)):
            self.write_forecast(random.choice(FORECASTS))
            self.counts["forecast"] += 1

    def _pod_deletions(self) -> None:
        core = client.CoreV1Api(self._api)
        while not self._stop.wait(random.uniform(0.3, 0.9)):
            pods = [p for p in core.list_namespaced_pod(self._kube.namespace,
                                                        label_selector=f"{DARK_CLUSTER_LABEL}={self._name}").items
                    if not p.metadata.deletion_timestamp]
            if pods:
                try:
                    core.delete_namespaced_pod(random.choice(pods).metadata.name, self._kube.namespace,
                                               grace_period_seconds=0)
                    self.counts["pod_deleted"] += 1
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise

    def start(self) -> Chaos:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._api.close()
        assert not self.errors, self.errors


def flip_gate(kube: Kube, name: str, *, hand: str, gate: Gate) -> None:
    """Flip the gate by the owner's hand (spec.gate) or the evacuation's (status.evacuationGate, a status-only write)."""
    if hand == "spec":
        kube.patch_custom("darkclusters", name, {"spec": {"gate": gate.value}})
    else:
        operator_kube.set_evacuation_gate(namespace=kube.namespace, name=name, gate=gate)


@pytest.mark.parametrize("hand", ["spec", "evacuation"])
def test_the_gate_never_goes_back_and_no_status_update_is_lost(
    kube: Kube, caplog: pytest.LogCaptureFixture, hand: str
) -> None:
    name = "api"
    kube.apply(APP)
    kube.apply({"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": name},
                "spec": {"targetDeployment": "api", "gate": Gate.CLOSED.value,
                         "replicas": {"source": "Forecast", "minReplicas": 0, "maxReplicas": 10}}})
    chaos = Chaos(kube, name)
    chaos.write_forecast(FORECASTS[0])
    eventually(lambda: len(running(kube.pods(f"{DARK_CLUSTER_LABEL}={name}"))) == FORECASTS[0],
               what="the forecast's dark pods running")

    pods = PodWatch(kube, f"{DARK_CLUSTER_LABEL}={name}").start()
    flips: list[tuple[Gate, int, int]] = []  # (gate, log position at the flip, log position once settled)
    caplog.set_level(logging.INFO, logger="regionshift")
    chaos.start()
    try:
        for i in range(FLIPS):
            gate = Gate.OPEN if i % 2 == 0 else Gate.CLOSED
            flipped_at = pods.mark()
            flip_gate(kube, name, hand=hand, gate=gate)

            def settled(gate: Gate = gate) -> int | None:
                mark, state = pods.state()
                return mark if state and all(seen.gate == gate for seen in state.values()) else None

            settled_at = eventually(settled, timeout_seconds=60, interval_seconds=0.02,
                                    what=f"flip {i + 1}: every dark pod carries gate {gate.value}")
            flips.append((gate, flipped_at, settled_at))
            # Let every kind of race happen in every epoch, however fast the flips settle.
            before = dict(chaos.counts)
            eventually(lambda: all(chaos.counts[k] >= before[k] + need for k, need in PER_FLIP.items()),
                       timeout_seconds=60, interval_seconds=0.05, what=f"flip {i + 1}: the races ran meanwhile")
            forecast = kube.get_custom("darkclusters", name)["status"].get("forecastReplicas")
            assert forecast in FORECASTS, f"flip {i + 1}: forecastReplicas lost from status ({forecast!r})"
    finally:
        chaos.stop()
        time.sleep(1)
        pods.stop()

    # The gate never went back: within a flip's epoch, a pod that showed the new gate never
    # showed the old one again, and once the flip settled no pod showed an open gate against
    # a closed one. Every dark pod is born gated, so Closed counts as a gate applied to a pod
    # only once the pod was open before: a pod born after a flip to Closed may still be opened
    # by the run that started before the flip (it was never closed by the operator), and is
    # closed by the next run, before the flip settles.
    log = pods.log
    ever_open: set[str] = set()
    for n, (gate, start, settled_at) in enumerate(flips):
        end = flips[n + 1][1] if n + 1 < len(flips) else len(log)
        applied: set[str] = set()
        for position in range(start, end):
            seen = log[position]
            if seen.gate == Gate.OPEN:
                ever_open.add(seen.uid)
            if seen.gate == gate and (gate == Gate.OPEN or seen.uid in ever_open):
                applied.add(seen.uid)
            elif seen.gate is not None and seen.live:
                assert seen.uid not in applied, f"flip {n + 1}: pod {seen.uid} went back from {gate.value} to {seen.gate.value}"
                assert position < settled_at or seen.gate == Gate.CLOSED, \
                    f"flip {n + 1}: pod {seen.uid} showed {seen.gate.value} after the flip to {gate.value} settled"

    # Nothing was lost: the other writer's forecast is the last one it wrote, it still owns
    # it, and the controller's counts converge on it.
    assert chaos.last_forecast in FORECASTS
    final_gate = flips[-1][0]

    def converged() -> dict[str, Any] | None:
        dc = kube.get_custom("darkclusters", name)
        status = dc["status"]
        want = chaos.last_forecast
        serving = want if final_gate == Gate.OPEN else 0
        ok = (status.get("forecastReplicas") == want and status.get("desiredReplicas") == want
              and status.get("warmReplicas") == want and status.get("readyReplicas") == serving
              and status.get("gated") == (final_gate == Gate.CLOSED)
              and kube.deployment(f"{name}-dark")["spec"]["replicas"] == want)
        return dc if ok else None

    dc = eventually(converged, timeout_seconds=60, what="status converges on the last forecast and the last gate")
    owners = {entry["manager"]: entry for entry in dc["metadata"]["managedFields"] if entry.get("subresource") == "status"}
    assert "f:forecastReplicas" in owners[SIZING_MANAGER]["fieldsV1"]["f:status"]
    assert "f:forecastReplicas" not in owners[darkcluster.FIELD_MANAGER]["fieldsV1"]["f:status"]
    assert "f:warmReplicas" in owners[darkcluster.FIELD_MANAGER]["fieldsV1"]["f:status"]
    assert "f:evacuationGate" not in owners[darkcluster.FIELD_MANAGER]["fieldsV1"]["f:status"]
    if hand == "evacuation":
        assert "f:evacuationGate" in owners[operator_kube.EVACUATION_FIELD_MANAGER]["fieldsV1"]["f:status"]
        assert (dc["status"]["evacuationGate"], dc["spec"]["gate"]) == (final_gate.value, Gate.CLOSED.value)

    assert all(chaos.counts[k] >= FLIPS * need for k, need in PER_FLIP.items()), chaos.counts
    errors = [r for r in caplog.records if r.name.startswith("regionshift") and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
