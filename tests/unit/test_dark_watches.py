"""The operator's own watches of dark pods, shadows and targets: list, follow, list again; who gets woken."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from regionshift.adapters import kube
from regionshift.controllers import dark_store, dark_watches, darkcluster
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL, ROLE_LABEL, ROLE_SHADOW, ROLE_TARGET


def _pod(name: str, version: str, label: str = "api") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop", "resourceVersion": version,
                         "labels": {DARK_CLUSTER_LABEL: label}}}


class _Answer:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()

    def release_conn(self) -> None:
        pass


class _Stream:
    """A watch answer: the events as JSON lines, split across chunks at odd places."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        text = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.chunks = [text[i:i + 7] for i in range(0, len(text), 7)]
        self.shut = False

    def stream(self, amt: Any = None, decode_content: bool = False) -> Any:
        yield from self.chunks

    def release_conn(self) -> None:
        pass

    def shutdown(self) -> None:
        self.shut = True


class _Server:
    """Answers LISTs from ``listings`` and watches from ``streams``, in order; the watch stops after the last."""

    def __init__(self, listings: list[list[dict[str, Any]]], streams: list[list[dict[str, Any]]]) -> None:
        self.listings, self.streams = listings, streams
        self.calls: list[dict[str, Any]] = []
        self.watch: kube.ObjectWatch | None = None

    def __call__(self, namespace: str, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if kwargs.get("watch"):
            if not self.streams:
                assert self.watch is not None
                self.watch.stop()
                return _Stream([])
            return _Stream(self.streams.pop(0))
        items = self.listings.pop(0)
        return _Answer({"metadata": {"resourceVersion": str(len(self.calls))}, "items": items})


def _watch(monkeypatch: pytest.MonkeyPatch, server: _Server) -> list[tuple[str | None, str]]:
    seen: list[tuple[str | None, str]] = []
    monkeypatch.setitem(kube._WATCHED, "pods", lambda: server)
    watch = kube.ObjectWatch(plural="pods", namespace="shop", label_selector=DARK_CLUSTER_LABEL,
                             on_event=lambda type_, obj: seen.append((type_, obj["metadata"]["name"])),
                             on_listed=lambda: seen.append(("listed", "")))
    server.watch = watch
    runner = threading.Thread(target=watch.run)
    runner.start()
    runner.join(10)
    assert not runner.is_alive()
    return seen


def test_the_listing_then_the_events_from_its_version(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _Server(listings=[[_pod("a", "5"), _pod("b", "6")]],
                     streams=[[{"type": "MODIFIED", "object": _pod("a", "7")},
                               {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
                               {"type": "DELETED", "object": _pod("b", "10")}]])
    assert _watch(monkeypatch, server) == [(None, "a"), (None, "b"), ("listed", ""), ("MODIFIED", "a"), ("DELETED", "b")]
    watches = [c for c in server.calls if c.get("watch")]
    assert watches[0]["resource_version"] == "1" and watches[0]["allow_watch_bookmarks"] is True
    assert watches[0]["label_selector"] == DARK_CLUSTER_LABEL
    assert watches[1]["resource_version"] == "10"  # the next watch goes on from the last version seen


def test_a_version_gone_lists_again_and_reports_what_went_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _Server(listings=[[_pod("a", "5"), _pod("b", "6")], [_pod("a", "20")]],
                     streams=[[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]])
    assert _watch(monkeypatch, server) == [(None, "a"), (None, "b"), ("listed", ""), (None, "a"), ("DELETED", "b"),
                                           ("listed", "")]


def test_a_failing_handler_does_not_end_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _Server(listings=[[_pod("a", "5")]], streams=[[{"type": "MODIFIED", "object": _pod("b", "7")}]])
    seen: list[str] = []

    def handler(type_: str | None, obj: dict[str, Any]) -> None:
        seen.append(obj["metadata"]["name"])
        raise RuntimeError("a bug")

    monkeypatch.setitem(kube._WATCHED, "pods", lambda: server)
    watch = kube.ObjectWatch(plural="pods", namespace="shop", label_selector="x", on_event=handler)
    server.watch = watch
    watch.run()
    assert seen == ["a", "b"]


def test_stop_ends_a_watch_that_waits_to_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(namespace: str, **kwargs: Any) -> Any:
        raise kube.ApiException(status=500, reason="boom")

    monkeypatch.setitem(kube._WATCHED, "pods", lambda: refused)
    monkeypatch.setattr(kube, "WATCH_RETRY_SECONDS", (60.0, 60.0))
    watch = kube.ObjectWatch(plural="pods", namespace="shop", label_selector="x", on_event=lambda *_: None)
    runner = threading.Thread(target=watch.run)
    runner.start()
    watch.stop()
    runner.join(5)
    assert not runner.is_alive()


class _FakeWatch:
    made: list[_FakeWatch] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.stopped = threading.Event()
        _FakeWatch.made.append(self)

    def run(self) -> None:
        self.stopped.wait(10)

    def stop(self) -> None:
        self.stopped.set()


@pytest.fixture()
def fake_watches(monkeypatch: pytest.MonkeyPatch) -> list[_FakeWatch]:
    _FakeWatch.made = []
    monkeypatch.setattr(kube, "ObjectWatch", _FakeWatch)
    monkeypatch.setattr(kube, "list_custom", lambda **_: [{"spec": {"targetDeployment": "listed"}}])
    return _FakeWatch.made


def test_a_namespace_is_watched_while_a_daemon_runs_there(fake_watches: list[_FakeWatch]) -> None:
    with dark_watches.watching(namespace="shop", name="api", target="api-target"):
        with dark_watches.watching(namespace="shop", name="web", target="web-target"):
            assert dark_watches.watched_namespaces() == ["shop"]
            assert dark_watches.by_target[("shop", "api-target")] == ("api",)
            assert dark_watches.by_label[("shop", "web")] == ("web",)
        assert ("shop", "web") not in dark_watches.by_label
        assert len(fake_watches) == 2  # one pod watch, one Deployment watch, shared
        assert {w.kwargs["label_selector"] for w in fake_watches} == {DARK_CLUSTER_LABEL, ROLE_LABEL}
        assert not any(w.stopped.is_set() for w in fake_watches)
    assert dark_watches.watched_namespaces() == []
    assert all(w.stopped.is_set() for w in fake_watches)
    assert not dark_watches.by_target and not dark_watches.by_label


def test_events_wake_the_daemons_of_their_namespace(fake_watches: list[_FakeWatch],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    woken: list[tuple[str, str]] = []
    released: list[str] = []
    monkeypatch.setattr(darkcluster, "wake", lambda *, namespace, name, cause: woken.append((name, cause)) or True)
    monkeypatch.setattr(darkcluster, "release_target", lambda *, namespace, target, leaving: released.append(target))
    monkeypatch.setattr(darkcluster, "_deployments_seen", {})
    with dark_watches.watching(namespace="shop", name="api", target="api-target"):
        watched = dark_watches._namespaces["shop"]
        for _ in range(100):  # the Deployment thread lists the DarkClusters first
            if watched.listed_targets is not None:
                break
            threading.Event().wait(0.05)
        pods, deployments = watched._pod, watched._deployment
        pods("ADDED", _pod("api-dark-1", "3"))
        pods("ADDED", _pod("other-1", "4", label="other"))
        deployments("MODIFIED", {"metadata": {"name": "api-dark", "generation": 2,
                                              "labels": {ROLE_LABEL: ROLE_SHADOW, DARK_CLUSTER_LABEL: "api"}}})
        deployments("MODIFIED", {"metadata": {"name": "api-target", "generation": 5, "labels": {ROLE_LABEL: ROLE_TARGET}}})
        deployments(None, {"metadata": {"name": "listed", "generation": 1, "labels": {ROLE_LABEL: ROLE_TARGET}}})
        deployments(None, {"metadata": {"name": "stale", "generation": 1, "labels": {ROLE_LABEL: ROLE_TARGET}}})
        assert dark_store.dark_pods(namespace="shop", label="api") is None, "the pod watch has not listed yet"
        watched._pods_listed()
        assert [p["metadata"]["name"] for p in dark_store.dark_pods(namespace="shop", label="api") or []] == ["api-dark-1"]
    assert woken == [("api", "pod"), ("api", "shadow"), ("api", "target")]
    assert released == ["stale"]  # "listed" is named by a DarkCluster whose daemon has not started yet
    assert dark_store.dark_pods(namespace="shop", label="api") is None, "forgotten with the namespace's watch"


def test_a_pool_is_started_whole_before_any_work() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from regionshift.controllers.workers import prestart

    pool = ThreadPoolExecutor(max_workers=5, thread_name_prefix="prestart-test")
    try:
        prestart(pool, workers=5)
        assert len(pool._threads) == 5
    finally:
        pool.shutdown(wait=True)


def test_start_all_sets_a_started_default_executor() -> None:
    import asyncio

    from regionshift.controllers import workers

    async def scenario() -> int:
        workers.start_all()
        loop = asyncio.get_running_loop()
        return len(loop._default_executor._threads)  # type: ignore[attr-defined]

    assert asyncio.run(scenario()) == workers.DEFAULT_WORKERS
