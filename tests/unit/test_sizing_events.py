"""Sizing's Events about the DarkClusters it creates, updates and removes: a few by name, the rest counted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from regionshift.controllers.regionfailover import sizing
from regionshift.controllers.regionfailover.children import Children

BODY = {"apiVersion": "regionshift.io/v1alpha1", "kind": "RegionFailover",
        "metadata": {"name": "domain", "namespace": "shop", "uid": "u-1"}}


def _posted(monkeypatch: pytest.MonkeyPatch, children: Children) -> list[tuple[str, str]]:
    """The Events :func:`sizing._children_events` posts, with a recording stand-in for the poster."""
    posted: list[tuple[str, str]] = []

    async def post(*, body: Any, type_: str, reason: str, message: str) -> None:
        assert type_ == "Normal" and body is BODY
        posted.append((reason, message))

    monkeypatch.setattr(sizing.rf_status, "post", post)
    asyncio.run(sizing._children_events(body=BODY, children=children))
    return posted


def test_five_hundred_new_dark_clusters_make_a_few_events_not_five_hundred(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"svc-{i:03d}" for i in range(500)]
    posted = _posted(monkeypatch, Children(created=names, removed=["old"]))
    created = [message for reason, message in posted if reason == "DarkClusterCreated"]
    assert created[:sizing.MAX_EVENTS_PER_RUN] == [f"created DarkCluster {n}" for n in names[:sizing.MAX_EVENTS_PER_RUN]]
    assert created[sizing.MAX_EVENTS_PER_RUN:] == [f"created {500 - sizing.MAX_EVENTS_PER_RUN} more DarkClusters"]
    assert ("DarkClusterRemoved", "removed DarkCluster old: its Deployment left the selector") in posted
    assert len(posted) == sizing.MAX_EVENTS_PER_RUN + 2


def test_a_few_changes_get_an_event_each(monkeypatch: pytest.MonkeyPatch) -> None:
    posted = _posted(monkeypatch, Children(created=["a", "b"], updated=["c"]))
    assert posted == [("DarkClusterCreated", "created DarkCluster a"), ("DarkClusterCreated", "created DarkCluster b"),
                      ("DarkClusterUpdated", "DarkCluster c follows the darkCapacity policy's min/max")]
