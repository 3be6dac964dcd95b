"""Pure gate decisions: which dark pods need a condition write."""

from __future__ import annotations

from typing import Any

from regionshift.decide.gate import GATE_CONDITION, gate_condition, pods_needing_gate_write


def pod(name: str, status: str | None, *, deleting: bool = False) -> dict[str, Any]:
    conditions = [] if status is None else [{"type": GATE_CONDITION, "status": status}]
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"conditions": conditions}}


def test_new_pods_get_a_write_either_way() -> None:
    pods = [pod("a", None), pod("b", "False"), pod("c", "True")]
    assert pods_needing_gate_write(pods=pods, gate="Closed") == ["a", "c"]
    assert pods_needing_gate_write(pods=pods, gate="Open") == ["a", "b"]


def test_deleting_pods_are_left_alone() -> None:
    assert pods_needing_gate_write(pods=[pod("a", None, deleting=True)], gate="Open") == []


def test_condition_written() -> None:
    opened = gate_condition(gate="Open", now="t")
    assert (opened["type"], opened["status"], opened["reason"], opened["lastTransitionTime"]) == (GATE_CONDITION, "True", "GateOpen", "t")
    assert gate_condition(gate="Closed", now="t")["status"] == "False"
