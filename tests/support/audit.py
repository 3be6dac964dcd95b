"""The writes an operator made, read back from the API server's audit log.

A region started with ``audited_operator`` logs every request of the operator's identity
(:data:`regionshift.local.cluster.launcher.OPERATOR_USER`), writes at Request level (the
body sent) and reads at Metadata level. Tests use it to prove what the operator wrote and
what it did not: DryRun writes nothing but the RegionFailover's status and Events; a
crashed and restarted operator makes each write once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

__all__ = ["WRITE_VERBS", "Write", "writes"]

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class Write:
    """One write request the API server completed, as its audit log records it."""

    verb: str
    resource: str
    """The resource, with the subresource after a slash: ``regionfailovers/status``."""
    namespace: str
    name: str
    field_manager: str
    code: int
    """The HTTP status answered."""
    body: Any
    """What was sent (the patch or the object), parsed."""
    at: str

    @property
    def succeeded(self) -> bool:
        return 200 <= self.code < 300

    def key(self) -> tuple[str, str, str]:
        return self.resource, self.namespace, self.name


def writes(log: Path, *, namespace: str | None = None, since: str | None = None) -> list[Write]:
    """The completed writes in the log, oldest first; only ``namespace``'s and those after ``since`` when given."""
    out = []
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or event.get("verb") not in WRITE_VERBS:
            continue
        ref = event.get("objectRef") or {}
        if namespace is not None and ref.get("namespace") != namespace:
            continue
        at = event.get("requestReceivedTimestamp", "")
        if since is not None and at < since:
            continue
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        query = parse_qs(urlparse(event.get("requestURI", "")).query)
        out.append(Write(verb=event["verb"], resource=resource, namespace=ref.get("namespace", ""),
                         name=ref.get("name", ""), field_manager=(query.get("fieldManager") or [""])[0],
                         code=int((event.get("responseStatus") or {}).get("code") or 0),
                         body=event.get("requestObject"), at=at))
    return out
