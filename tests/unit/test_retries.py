"""Retries of refused writes: the policy as a pure function, then against a mock API server."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from regionshift.adapters import kube, retries
from regionshift.api.models import Gate
from regionshift.controllers import darkcluster
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL
from regionshift.decide.gate import SERVING_LABELS_ANNOTATION


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503, 504, None])
def test_routine_refusals_are_retried_with_growing_capped_delays(status: int | None) -> None:
    delays = [retries.retry_delay(attempt=n, status=status, jitter=0.0) for n in range(1, retries.MAX_ATTEMPTS)]
    assert all(d is not None and d > 0 for d in delays)
    assert delays == sorted(delays)
    assert max(d for d in delays if d is not None) <= retries.CAP_SECONDS
    assert retries.retry_delay(attempt=retries.MAX_ATTEMPTS, status=status, jitter=0.0) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_refusals_a_retry_cannot_fix_are_not_retried(status: int) -> None:
    assert retries.retry_delay(attempt=1, status=status, jitter=0.5) is None


def test_jitter_spreads_the_delay_over_its_upper_half() -> None:
    low = retries.retry_delay(attempt=3, status=429, jitter=0.0)
    high = retries.retry_delay(attempt=3, status=429, jitter=0.999)
    ceiling = retries.BASE_SECONDS * 4
    assert low == pytest.approx(ceiling / 2)
    assert high == pytest.approx(ceiling, rel=1e-2)


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    assert retries.retry_delay(attempt=1, status=429, jitter=0.0, retry_after=0.5) == 0.5
    assert retries.retry_delay(attempt=1, status=429, jitter=0.0, retry_after=60) == retries.CAP_SECONDS


def test_call_retries_then_returns_and_logs_quietly(caplog: pytest.LogCaptureFixture) -> None:
    answers: list[Any] = [client.ApiException(status=409, reason="Conflict"),
                          client.ApiException(status=503, reason="Unavailable"), "done"]
    slept: list[float] = []

    def fn() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    with caplog.at_level(logging.INFO):
        assert retries.call(fn, what="a write", sleep=slept.append) == "done"
    assert len(slept) == 2
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
    assert not any(r.exc_info for r in caplog.records)


# ---------------------------------------------------------------------------- mock API server


POD_PATH = "/api/v1/namespaces/ns/pods/p"
"""The one object the mock API server answers for: the gated pod of these tests."""


class _MockApiServer:
    """An HTTP server that answers pod patches from a script of statuses."""

    def __init__(self, script: list[int]) -> None:
        self.script = script
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PATCH(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self.path.startswith(POD_PATH):
                    # Another writer of this process (an operator the integration tests left
                    # running in-process) shares the swapped client: refuse it, count nothing.
                    self.send_error(503)
                    return
                outer.requests.append(self.path)
                status = outer.script.pop(0) if outer.script else 200
                body = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "ns"}} \
                    if status == 200 else {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _MockApiServer:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mock_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def start(script: list[int]) -> _MockApiServer:
        server = _MockApiServer(script).__enter__()
        started.append(server)
        configuration = client.Configuration(host=f"http://127.0.0.1:{server.server.server_port}")
        monkeypatch.setattr(kube, "_configuration", configuration)
        monkeypatch.setattr(kube, "_api", client.ApiClient(configuration))
        return server

    started: list[_MockApiServer] = []
    yield start
    for server in started:
        server.__exit__()


GATED_POD = {"metadata": {"name": "p", "namespace": "ns", "labels": {DARK_CLUSTER_LABEL: "api"},
                          "annotations": {SERVING_LABELS_ANNOTATION: '{"app":"api"}'}}}
"""A gated dark pod: its serving label waits in the annotation, so opening writes it."""


def test_gate_write_retries_429_503_409_from_a_mock_api_server(mock_api: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = mock_api([429, 503, 409])
    with caplog.at_level(logging.INFO):
        written = darkcluster._write_gates(namespace="ns", pods=[GATED_POD], gate=Gate.OPEN.value)
    assert written == 1
    assert server.requests == ["/api/v1/namespaces/ns/pods/p"] * 4
    # Only this pod's retries: an operator the integration tests left running in-process logs too.
    ours = [r for r in caplog.records if "ns/p" in r.getMessage() or r.name == retries.__name__]
    assert not [r for r in ours if r.levelno >= logging.WARNING or r.exc_info]
    assert sum("retry" in r.getMessage() for r in ours) == 3


def test_gate_write_gives_up_on_a_mock_api_server_that_keeps_failing(mock_api: Any) -> None:
    server = mock_api([503] * 20)
    with pytest.raises(client.ApiException) as err:
        darkcluster._write_gates(namespace="ns", pods=[GATED_POD], gate=Gate.OPEN.value)
    assert err.value.status == 503
    assert len(server.requests) == retries.MAX_ATTEMPTS


def test_gate_write_refused_403_by_a_mock_api_server_is_not_retried(mock_api: Any) -> None:
    server = mock_api([403])
    with pytest.raises(client.ApiException):
        darkcluster._write_gates(namespace="ns", pods=[GATED_POD], gate=Gate.OPEN.value)
    assert len(server.requests) == 1
