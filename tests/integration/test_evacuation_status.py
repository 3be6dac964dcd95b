"""The real kube-apiserver stores every status the evacuation state machine produces, unpruned.

The state machine is not wired into the operator yet; this proves the generated CRD schema
holds what it decides in every phase (nothing dropped by pruning, nothing refused), written
the way the operator writes status: a server-side apply of the status subresource. No
operator runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from regionshift.api.models import Phase, RegionFailoverStatus
from tests.support.cluster import Kube

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_evacuation import U, UNK, FailbackSignal, Run, make_spec  # noqa: E402

pytestmark = [pytest.mark.integration]

GROUP, VERSION = "regionshift.io", "v1alpha1"


def statuses() -> list[tuple[str, dict[str, Any]]]:
    """A status from every phase and mode, as the state machine writes it."""
    out: list[tuple[str, dict[str, Any]]] = []
    run = Run()
    run.world.verdicts["east"] = U
    run.tick()
    out.append(("evacuating", run.status.wire()))
    run.world.savior_ready()
    run.until(Phase.EVACUATED)
    out.append(("evacuated", run.status.wire()))
    run.world.verdicts["east"] = UNK
    run.world.signal["east"] = FailbackSignal(served=10.0, forecast=100.0)
    run.until(Phase.FAILING_BACK, seconds=301)
    run.tick()
    out.append(("failing-back", run.status.wire()))
    run.tick()
    run.tick(60)
    out.append(("aborted", run.status.wire()))
    run.world.signal["east"] = FailbackSignal(served=100.0, forecast=100.0)
    run.until(Phase.STEADY, seconds=61, limit=40)
    out.append(("steady-after", run.status.wire()))
    manual = Run(spec=make_spec(mode="Manual"))
    manual.world.verdicts["west"] = U
    manual.tick()
    out.append(("manual-recommendation", manual.status.wire()))
    dry = Run(spec=make_spec(mode="DryRun"))
    dry.world.verdicts["east"] = U
    dry.tick()
    out.append(("dry-run-plan", dry.status.wire()))
    return out


def test_every_status_the_state_machine_writes_is_stored_unpruned(kube: Kube) -> None:
    spec = make_spec().wire()
    kube.create_custom({"apiVersion": f"{GROUP}/{VERSION}", "kind": "RegionFailover",
                        "metadata": {"name": "domain"}, "spec": spec})
    for name, status in statuses():
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RegionFailover",
                "metadata": {"name": "domain", "namespace": kube.namespace}, "status": status}
        stored = kube.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, kube.namespace, "regionfailovers", "domain", body,
            field_manager="regionshift-evacuation", force=True, _content_type="application/apply-patch+yaml",
        )["status"]
        # Server-side apply drops an empty associative list (evacuations: []); nothing else may change.
        expected = {k: v for k, v in status.items() if v != []}
        assert {k: v for k, v in stored.items() if v != []} == expected, f"{name}: the API server changed the status"
        assert RegionFailoverStatus.model_validate(stored) == RegionFailoverStatus.model_validate(status), name
