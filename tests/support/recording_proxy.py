"""A pass-through HTTP proxy in front of the test Prometheus that records what it is asked.

The operator talks to the real Prometheus through it; the test reads back which queries and
time ranges the operator asked for (a refresh that fetches only what is new must ask for a
short range). Nothing is answered by the proxy itself.
"""

from __future__ import annotations

import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

import httpx

__all__ = ["RecordedQuery", "RecordingProxy"]


@dataclass(frozen=True)
class RecordedQuery:
    """One API call the proxy passed on: its path and form or query parameters."""

    path: str
    params: dict[str, str]

    @property
    def span_seconds(self) -> float | None:
        """``end - start`` of a range query, None for other calls."""
        if "start" not in self.params or "end" not in self.params:
            return None
        return float(self.params["end"]) - float(self.params["start"])


class RecordingProxy:
    """``with RecordingProxy(upstream=url) as proxy:`` then point a client at ``proxy.url``."""

    def __init__(self, *, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._lock = threading.Lock()
        self._recorded: list[RecordedQuery] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parsed = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(parsed.query))
                if body:
                    params.update(urllib.parse.parse_qsl(body.decode()))
                proxy._record(RecordedQuery(path=parsed.path, params=params))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept",
                                                                                     "authorization")}
                answer = httpx.request(method, proxy._upstream + self.path, content=body, headers=headers, timeout=30)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def log_message(self, format: str, *args: object) -> None:
                """Keep the calls out of the test output."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="recording-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _record(self, query: RecordedQuery) -> None:
        with self._lock:
            self._recorded.append(query)

    def recorded(self) -> list[RecordedQuery]:
        """Every call passed on so far, oldest first."""
        with self._lock:
            return list(self._recorded)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
