"""LISTs are read page by page, so that no single JSON decode of a large answer holds the GIL long."""

from __future__ import annotations

import json
from typing import Any

import pytest

from regionshift.adapters import kube


class _Answer:
    """What the client returns with ``_preload_content=False``: the body's bytes."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()

    def release_conn(self) -> None:
        pass


class _Server:
    """A LIST endpoint that pages ``items`` by ``limit`` and ``_continue``; ``expire`` pages answer 410 once each."""

    def __init__(self, items: list[dict[str, Any]], *, expire: set[int] | None = None) -> None:
        self.items = items
        self.expire = set(expire or ())
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, limit: int, _continue: str | None, **kwargs: Any) -> _Answer:
        self.calls.append({"args": args, "limit": limit, "continue": _continue, **kwargs})
        start = int(_continue or 0)
        if _continue is not None and start in self.expire:
            self.expire.discard(start)
            raise kube.ApiException(status=410, reason="Expired")
        page = self.items[start:start + limit]
        rest = start + limit < len(self.items)
        return _Answer({"metadata": {"continue": str(start + limit)} if rest else {}, "items": page})


def _items(n: int) -> list[dict[str, Any]]:
    return [{"metadata": {"name": f"svc-{i:04d}"}} for i in range(n)]


def test_a_list_of_500_is_read_in_pages_of_page_size() -> None:
    server = _Server(_items(500))
    listed = kube._paged(server, "bench", label_selector="app")
    assert [i["metadata"]["name"] for i in listed] == [f"svc-{i:04d}" for i in range(500)]
    assert len(server.calls) == 500 // kube.PAGE_SIZE
    assert all(call["limit"] == kube.PAGE_SIZE and call["label_selector"] == "app" and call["args"] == ("bench",)
               and call["_preload_content"] is False and call["_request_timeout"] == kube.REQUEST_TIMEOUT
               for call in server.calls)
    assert server.calls[0]["continue"] is None and server.calls[1]["continue"] == str(kube.PAGE_SIZE)


def test_a_short_list_is_one_request() -> None:
    server = _Server(_items(3))
    assert len(kube._paged(server)) == 3
    assert len(server.calls) == 1


def test_an_expired_continue_token_starts_the_list_over_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "PAGE_SIZE", 100)
    server = _Server(_items(250), expire={200})
    listed = kube._paged(server)
    assert [i["metadata"]["name"] for i in listed] == [f"svc-{i:04d}" for i in range(250)]  # no item twice
    assert [c["continue"] for c in server.calls] == [None, "100", "200", None, "100", "200"]


def test_a_continue_token_that_keeps_expiring_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "PAGE_SIZE", 100)
    server = _Server(_items(250))

    def always_expired(*args: Any, limit: int, _continue: str | None, **kwargs: Any) -> _Answer:
        if _continue == "200":
            raise kube.ApiException(status=410, reason="Expired")
        return server(*args, limit=limit, _continue=_continue, **kwargs)

    with pytest.raises(kube.ApiException) as raised:
        kube._paged(always_expired)
    assert raised.value.status == 410


def test_other_refusals_are_raised_at_once() -> None:
    calls = []

    def forbidden(*args: Any, **kwargs: Any) -> _Answer:
        calls.append(kwargs)
        raise kube.ApiException(status=403, reason="Forbidden")

    with pytest.raises(kube.ApiException):
        kube._paged(forbidden)
    assert len(calls) == 1
