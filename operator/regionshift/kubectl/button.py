"""The button: ``spec.evacuate`` of a RegionFailover edited as a set, with no lost update.

``kubectl regionshift evacuate REGION`` adds the region to ``spec.evacuate`` and ``failback
REGION`` takes it out. The patch is a JSON merge patch of the whole list, computed from the
object as read, and carries that object's ``metadata.resourceVersion``: the API server
refuses it with 409 Conflict if anyone changed the object in between (a merge patch of a list
replaces it, so without the precondition a concurrent edit of the list would be lost). The
caller reads again and recomputes.

Pure functions over the object as a dict; the API calls are in :mod:`regionshift.kubectl.main`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["ButtonError", "EvacuateEdit", "evacuate_edit", "gitops_snippet"]


class ButtonError(ValueError):
    """The edit asked for cannot be made (unknown region, or the last serving region)."""


@dataclass(frozen=True)
class EvacuateEdit:
    """The edit of ``spec.evacuate`` one command makes."""

    before: list[str]
    """``spec.evacuate`` as read."""
    after: list[str]
    """``spec.evacuate`` after the edit."""
    patch: dict[str, Any] | None
    """The merge patch (with the resourceVersion precondition), None when nothing changes."""


def evacuate_edit(*, obj: Mapping[str, Any], region: str, evacuate: bool) -> EvacuateEdit:
    """The edit that adds ``region`` to (``evacuate``) or removes it from ``spec.evacuate`` of ``obj``.

    The order of the other names is kept; a name is added at the end. Refuses a region that is
    neither ``spec.region`` nor a peer, and evacuating the last region still serving (the API
    server refuses both too, but with less to say).
    """
    spec = obj.get("spec") or {}
    before = list(spec.get("evacuate") or [])
    regions = [spec.get("region")] + [peer.get("name") for peer in spec.get("peers") or []]
    known = [name for name in regions if name]
    if evacuate:
        if region not in known:
            raise ButtonError(f"{region!r} is not a region of this RegionFailover (regions: {', '.join(known)})")
        after = before if region in before else [*before, region]
        if set(known) <= set(after):
            raise ButtonError(f"evacuating {region!r} would leave no region serving (evacuate: {', '.join(after)})")
    else:
        after = [name for name in before if name != region]
    if after == before:
        return EvacuateEdit(before=before, after=after, patch=None)
    metadata = obj.get("metadata") or {}
    patch: dict[str, Any] = {"spec": {"evacuate": after}}
    if metadata.get("resourceVersion"):
        patch["metadata"] = {"resourceVersion": metadata["resourceVersion"]}
    return EvacuateEdit(before=before, after=after, patch=patch)


def gitops_snippet(*, name: str, namespace: str, evacuate: list[str]) -> str:
    """The YAML a GitOps user commits to the RegionFailover instead of running the command."""
    names = yaml.safe_dump(list(evacuate), default_flow_style=True).strip()  # [us-west, eu-west]
    return "\n".join([
        "apiVersion: regionshift.io/v1alpha1",
        "kind: RegionFailover",
        "metadata:",
        f"  name: {name}",
        f"  namespace: {namespace}",
        "spec:",
        f"  evacuate: {names}",
    ])
