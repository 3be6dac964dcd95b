"""The evacuation's gate against the real control plane: it opens a DarkCluster that a GitOps tool owns.

A DarkCluster written by hand and synced by a GitOps tool (its manifest server-side
applied under the tool's field manager, ``gate: Closed``) gets ``status.evacuationGate:
Open`` through :func:`regionshift.adapters.kube.set_evacuation_gate`, as the
RegionFailover's operator writes it when it evacuates. The dark pods must take traffic
(join the target's Service endpoints), the manifest's spec must stay as its owner wrote it,
the tool's re-apply (identical, or a changed spec) must leave the evacuation's gate in
force, and the evacuation closing its gate must re-gate the pods; an owner who holds the
gate open keeps it open whatever the evacuation does.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from regionshift.adapters import kube as operator_kube
from regionshift.api.models import Gate
from regionshift.controllers.darkcluster import FIELD_MANAGER
from tests.integration.test_dark_cluster import APP, dark_cluster, dark_pods, running
from tests.support.cluster import Kube, eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("running_operator")]

GITOPS_MANAGER = "argocd-controller"
"""The field manager a GitOps tool applies the user's manifest under."""
PROMPTLY = 30.0
"""Seconds within which a woken DarkCluster acts; far below its 600 s resync, so a missed wake fails the test."""


def gitops_apply(kube: Kube, manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply of the user's manifest, forced, as Argo CD or Flux sync it."""
    return kube.custom.patch_namespaced_custom_object(  # type: ignore[no-any-return]
        "regionshift.io", "v1alpha1", kube.namespace, "darkclusters", manifest["metadata"]["name"], manifest,
        field_manager=GITOPS_MANAGER, force=True, _content_type="application/apply-patch+yaml",
    )


def status(kube: Kube, name: str = "api") -> dict[str, Any]:
    return kube.get_custom("darkclusters", name).get("status") or {}


def gate_condition(kube: Kube, name: str = "api") -> dict[str, Any]:
    return next((c for c in status(kube, name).get("conditions", []) if c["type"] == "GateOpen"), {})


def status_fields_of(obj: dict[str, Any], manager: str) -> set[str]:
    """The top-level status fields a field manager owns on the status subresource."""
    owned: set[str] = set()
    for entry in obj["metadata"].get("managedFields") or []:
        if entry["manager"] == manager and entry.get("subresource") == "status":
            owned |= {key[2:] for key in (entry.get("fieldsV1") or {}).get("f:status", {}) if key.startswith("f:")}
    return owned


def gate_open(kube: Kube, hand: str, name: str = "api") -> float | None:
    """The in-process operator's regionshift_darkcluster_gate_open for one hand."""
    return REGISTRY.get_sample_value("regionshift_darkcluster_gate_open",
                                     {"namespace": kube.namespace, "darkcluster": name, "hand": hand})


def fast_paths(source: str) -> float:
    """The in-process operator's regionshift_gate_fast_path_listings_total for one source."""
    return REGISTRY.get_sample_value("regionshift_gate_fast_path_listings_total", {"source": source}) or 0.0


def serving_dark_pods(kube: Kube, expected: int) -> set[str] | None:
    """The names of ``expected`` running dark pods, each carrying its serving label, or None."""
    pods = running(dark_pods(kube))
    if len(pods) != expected or not all(p["metadata"]["labels"].get("app") == "api" for p in pods):
        return None
    return {p["metadata"]["name"] for p in pods}


def test_an_evacuation_opens_a_gitops_owned_dark_cluster_without_fighting_its_manifest(kube: Kube) -> None:
    kube.apply(APP)
    manifest = dark_cluster(replicas=3, gate=Gate.CLOSED.value)
    gitops_apply(kube, manifest)
    main = eventually(lambda: len(kube.ready_endpoint_pods("api")) == 2 and kube.ready_endpoint_pods("api"),
                      what="main pods in the EndpointSlice")
    eventually(lambda: status(kube).get("warmReplicas") == 3, what="3 warm, gated dark replicas")
    assert kube.ready_endpoint_pods("api") == main
    assert status(kube)["effectiveGate"] == Gate.CLOSED.value
    before = kube.get_custom("darkclusters", "api")
    stored = fast_paths("stored")

    # The evacuation opens its gate: a status-only write, which must wake the DarkCluster promptly.
    operator_kube.set_evacuation_gate(namespace=kube.namespace, name="api", gate=Gate.OPEN)
    dark = eventually(lambda: serving_dark_pods(kube, 3), timeout_seconds=PROMPTLY, what="dark pods labelled to serve")
    assert fast_paths("stored") > stored, "the fast path took the DarkCluster and its pods from the watches, no LIST"
    eventually(lambda: kube.ready_endpoint_pods("api") == main | dark, timeout_seconds=PROMPTLY,
               what="dark pods ready in the target's Service endpoints")
    opened = eventually(lambda: (s := status(kube)).get("readyReplicas") == 3 and s, what="status counts 3 serving")
    assert (opened["evacuationGate"], opened["effectiveGate"], opened["gated"]) == ("Open", "Open", False)
    assert gate_condition(kube)["message"].startswith("opened by status.evacuationGate")
    eventually(lambda: (gate_open(kube, "spec"), gate_open(kube, "evacuation"), gate_open(kube, "effective"))
               == (0, 1, 1), what="the gate metric by hand")
    eventually(lambda: any(e.reason == "GateOpened" and "evacuationGate" in e.message for e in kube.events("api")),
               what="a GateOpened Event naming the evacuation's gate")

    # Nothing of the owner's: the spec and its generation are as the GitOps tool applied them.
    after = kube.get_custom("darkclusters", "api")
    assert after["spec"] == before["spec"] and after["spec"]["gate"] == Gate.CLOSED.value
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    # Each writer owns its own status fields: the evacuation its two, the controller none of them.
    assert status_fields_of(after, operator_kube.EVACUATION_FIELD_MANAGER) == {"evacuationGate", "evacuationGateSince"}
    assert not status_fields_of(after, FIELD_MANAGER) & {"evacuationGate", "evacuationGateSince"}
    assert "effectiveGate" in status_fields_of(after, FIELD_MANAGER)

    # Idempotent: the same gate again writes nothing, so its time stays when it opened.
    operator_kube.set_evacuation_gate(namespace=kube.namespace, name="api", gate=Gate.OPEN)
    again = kube.get_custom("darkclusters", "api")
    assert again["status"]["evacuationGateSince"] == opened["evacuationGateSince"]
    assert status_fields_of(again, operator_kube.EVACUATION_FIELD_MANAGER) == {"evacuationGate", "evacuationGateSince"}

    # The GitOps tool syncs the unchanged manifest (gate: Closed): no drift, nothing closes.
    resynced = gitops_apply(kube, manifest)
    assert resynced["spec"] == before["spec"]
    assert resynced["status"]["evacuationGate"] == Gate.OPEN.value
    assert resynced["status"]["evacuationGateSince"] == opened["evacuationGateSince"]

    # The owner changes the manifest (one more replica, still gate: Closed) and the tool syncs it:
    # the controller reconciles the new spec and the evacuation's gate opens the new pod too.
    grown = copy.deepcopy(manifest)
    grown["spec"]["replicas"]["fixedReplicas"] = 4
    generation = gitops_apply(kube, grown)["metadata"]["generation"]
    assert generation > before["metadata"]["generation"]
    eventually(lambda: (s := status(kube)).get("observedGeneration") == generation and s.get("readyReplicas") == 4,
               timeout_seconds=60, what="the new spec reconciled with 4 dark pods serving")
    dark = eventually(lambda: serving_dark_pods(kube, 4), what="4 dark pods labelled to serve")
    eventually(lambda: kube.ready_endpoint_pods("api") == main | dark, what="4 dark pods in the endpoints")
    assert status(kube)["evacuationGate"] == Gate.OPEN.value
    assert kube.get_custom("darkclusters", "api")["spec"]["gate"] == Gate.CLOSED.value

    # The evacuation closes its gate: the owner's Closed is in force again, the pods leave the endpoints.
    operator_kube.set_evacuation_gate(namespace=kube.namespace, name="api", gate=Gate.CLOSED)
    eventually(lambda: kube.ready_endpoint_pods("api") == main, timeout_seconds=PROMPTLY,
               what="dark pods leave the endpoints")
    eventually(lambda: all("app" not in p["metadata"]["labels"] for p in dark_pods(kube)), what="serving labels removed")
    closed = eventually(lambda: (s := status(kube)).get("readyReplicas") == 0 and s.get("effectiveGate") == "Closed" and s,
                        what="status counts none serving")
    assert (closed["evacuationGate"], closed["gated"]) == ("Closed", True)
    assert gate_condition(kube)["reason"] == "GateClosed"
    assert len(running(dark_pods(kube))) == 4, "closing the gate keeps the dark pods warm"


def test_the_owners_open_gate_stays_open_when_the_evacuation_closes_its_own(kube: Kube) -> None:
    kube.apply(APP)
    # The main pods first: with the owner's gate open, the dark pods join the same EndpointSlice.
    main = eventually(lambda: len(kube.ready_endpoint_pods("api")) == 2 and kube.ready_endpoint_pods("api"),
                      what="main pods in the EndpointSlice")
    gitops_apply(kube, dark_cluster(replicas=2, gate=Gate.OPEN.value))
    dark = eventually(lambda: serving_dark_pods(kube, 2), what="2 dark pods serving by the owner's gate")
    eventually(lambda: kube.ready_endpoint_pods("api") == main | dark, what="dark pods in the endpoints")
    assert gate_condition(kube)["message"].startswith("opened by spec.gate (its owner);")

    operator_kube.set_evacuation_gate(namespace=kube.namespace, name="api", gate=Gate.OPEN)
    eventually(lambda: "and status.evacuationGate" in gate_condition(kube).get("message", ""),
               timeout_seconds=PROMPTLY, what="both hands hold the gate open")
    operator_kube.set_evacuation_gate(namespace=kube.namespace, name="api", gate=Gate.CLOSED)
    # The controller saw the close (the message names only the owner again) and left the gate open.
    eventually(lambda: gate_condition(kube).get("message", "").startswith("opened by spec.gate (its owner);"),
               timeout_seconds=PROMPTLY, what="the owner's hand alone holds the gate open")
    current = status(kube)
    assert (current["evacuationGate"], current["effectiveGate"], current["gated"]) == ("Closed", "Open", False)
    assert serving_dark_pods(kube, 2) == dark
    assert kube.ready_endpoint_pods("api") == main | dark
    assert not any(e.reason == "GateClosed" for e in kube.events("api"))


def test_the_evacuation_gate_of_a_missing_dark_cluster_is_a_404(kube: Kube) -> None:
    with pytest.raises(client.ApiException) as err:
        operator_kube.set_evacuation_gate(namespace=kube.namespace, name="nothing", gate=Gate.OPEN)
    assert err.value.status == 404



def test_a_dark_cluster_written_between_the_read_and_the_apply_is_read_again_mock(
    kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apply carries the resourceVersion it read: the real API server refuses a stale one (409) and
    set_evacuation_gate reads again. Only the race is staged: the first read returns a copy from
    before another write, which a real race produces only by chance."""
    kube.apply(APP)
    gitops_apply(kube, dark_cluster(replicas=0))
    stale = kube.get_custom("darkclusters", "api")
    kube.custom.patch_namespaced_custom_object_status(
        "regionshift.io", "v1alpha1", kube.namespace, "darkclusters", "api",
        {"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": "api"},
         "status": {"forecastReplicas": 1}},
        field_manager="test-sizing", _content_type="application/apply-patch+yaml")
    reads: list[str] = []
    real_read = operator_kube.read_custom
    caller = threading.get_ident()

    def read_custom(**kwargs: Any) -> dict[str, Any] | None:
        if threading.get_ident() != caller:  # the in-process operator's own reads stay real
            return real_read(**kwargs)
        reads.append(kwargs["name"])
        return stale if len(reads) == 1 else real_read(**kwargs)

    monkeypatch.setattr(operator_kube, "read_custom", read_custom)
    operator_kube.set_evacuation_gate(namespace=kube.namespace, name="api", gate=Gate.OPEN)
    assert len(reads) == 2, "the stale apply was refused and the DarkCluster read again"
    written = status(kube)
    assert (written["evacuationGate"], written["forecastReplicas"]) == ("Open", 1)
