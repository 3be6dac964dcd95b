"""Status conditions, the Kubernetes way: one entry per type, transition time kept stable.

Pure helpers shared by every status the operator writes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = ["condition", "find_condition", "now_rfc3339", "set_condition"]


def now_rfc3339() -> str:
    """The current time as Kubernetes writes it (RFC 3339, seconds, UTC)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(*, type_: str, status: bool, reason: str, message: str, now: str, generation: int | None = None) -> dict[str, Any]:
    """One condition as a plain dict."""
    out: dict[str, Any] = {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def find_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    """The condition of that type, or None."""
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def set_condition(conditions: list[dict[str, Any]] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """A new list with ``new`` in place of the condition of its type.

    The transition time stays the old one when the status did not change, as the API
    conventions ask.
    """
    old = find_condition(conditions, new["type"])
    if old is not None and old.get("status") == new["status"]:
        new = {**new, "lastTransitionTime": old.get("lastTransitionTime", new["lastTransitionTime"])}
    return [*(c for c in conditions or [] if c.get("type") != new["type"]), new]
