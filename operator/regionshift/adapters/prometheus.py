"""Read the business signal from Prometheus, with errors that say what to do next.

Detection, forecasting and sizing all start from PromQL answers, and they must react to
failures very differently: Prometheus being down pauses detection and sends sizing to its
cache; a rejected query is the user's to fix and belongs in status; no data and NaN must
never be mistaken for a region serving nothing (never evacuate on no data). This module is
the one place that talks to Prometheus, so every caller gets the same timeouts, retries
with backoff, authentication and TLS, and the same distinct exceptions from
:mod:`regionshift.errors`:

- :class:`~regionshift.errors.PrometheusUnavailable`: no usable answer after every retry
  (connection refused, timeout, HTTP 5xx or 429), or an answer that is not from the
  Prometheus API at all (a proxy's login page, say);
- :class:`~regionshift.errors.QueryRejected`: Prometheus refused the query (HTTP 4xx, or
  ``errorType`` ``bad_data``/``execution``), never retried; also a query whose answer
  cannot be used as asked (a string, several series where one is needed);
- :class:`~regionshift.errors.NoData`: the query matched nothing;
- :class:`~regionshift.errors.NotANumber`: a NaN or infinite sample where a number is needed.

Range queries longer than Prometheus' limit of 11,000 points per series are split into
consecutive windows and joined again, so fourteen days of one-minute history is one call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
import numpy as np

from regionshift.errors import NoData, NotANumber, PrometheusUnavailable, QueryRejected

__all__ = ["MAX_POINTS_PER_SERIES", "PrometheusClient", "Sample", "Series"]

log = logging.getLogger(__name__)

Sample = tuple[float, float]
"""One point of a series: (unix time in seconds, value)."""

MAX_POINTS_PER_SERIES = 11_000
"""Prometheus rejects a range query whose (end - start) / step exceeds this."""

_REJECTING_ERROR_TYPES = frozenset({"bad_data", "execution"})
"""``errorType`` values that mean the query itself is at fault (Prometheus answers 400/422)."""


@dataclass(frozen=True, slots=True)
class Series:
    """One time series of a query's answer: its labels and its samples in time order."""

    labels: dict[str, str]
    samples: tuple[Sample, ...]


class PrometheusClient:
    """An async client for the Prometheus HTTP API (``/api/v1/query`` and ``query_range``).

    Use it as an async context manager, or call :meth:`aclose` when done. Every request is
    one attempt of at most ``timeout_seconds`` (connect, TLS, send and read together), and
    is tried ``1 + retries`` times on connection errors, timeouts, HTTP 5xx and 429, waiting
    ``backoff_seconds``, then twice that, and so on, between attempts. ``verify_tls`` is
    ``True`` (system CAs), ``False`` (no verification) or the path of a CA bundle in PEM.
    ``transport`` replaces the network, for tests; ``verify_tls`` then has no effect.
    """

    def __init__(
        self,
        *,
        base_url: str,
        timeout_seconds: float = 10.0,
        retries: int = 3,
        backoff_seconds: float = 0.5,
        bearer_token: str | None = None,
        verify_tls: bool | str = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, not {timeout_seconds}")
        if retries < 0:
            raise ValueError(f"retries must be zero or more, not {retries}")
        if backoff_seconds < 0:
            raise ValueError(f"backoff_seconds must be zero or more, not {backoff_seconds}")
        self._base_url = base_url
        self._timeout_seconds = timeout_seconds
        self._retries = retries
        self._backoff_seconds = backoff_seconds
        headers = {"Accept": "application/json"}
        if bearer_token is not None:
            headers["Authorization"] = f"Bearer {bearer_token}"
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            verify=_ssl_verify(verify_tls) if base_url.lower().startswith("https:") else _plain_context(),
            timeout=None,  # the whole attempt is bounded by asyncio.timeout in _post
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def instant(self, query: str, *, at: datetime | None = None) -> list[Series]:
        """Evaluate ``query`` at one instant (``at``, timezone-aware; default: now).

        Each series of a vector answer has one sample, stamped with the evaluation time,
        not the time the sample was scraped: ask for ``timestamp(...)`` to see its age. A
        scalar answer is one series without labels. Raises :class:`NoData` rather than
        returning an empty list. NaN and infinite values are returned as they are.
        """
        params = {"query": query}
        if at is not None:
            params["time"] = _number(_unix_seconds(at, name="at"))
        series = _parse(await self._post("api/v1/query", params, query=query), query=query)
        if not series:
            when = "now" if at is None else at.isoformat()
            raise NoData(f"the query {query!r} matched no series at {when}")
        return series

    async def range(
        self, query: str, *, start: datetime, end: datetime, step_seconds: float
    ) -> list[Series]:
        """Evaluate ``query`` at ``start``, ``start + step_seconds``, ... up to ``end``.

        ``start`` and ``end`` are timezone-aware. A window with more points than
        Prometheus allows per query is fetched in consecutive parts and joined per series.
        Raises :class:`NoData` rather than returning an empty list. NaN and infinite values
        are returned as they are.
        """
        start_seconds, end_seconds = _span(start=start, end=end, step_seconds=step_seconds)
        joined: dict[frozenset[tuple[str, str]], tuple[dict[str, str], list[Sample]]] = {}
        for window_start, window_end in _windows(start_seconds, end_seconds, step_seconds):
            params = {
                "query": query,
                "start": _number(window_start),
                "end": _number(window_end),
                "step": _number(step_seconds),
            }
            data = await self._post("api/v1/query_range", params, query=query)
            for part in await asyncio.to_thread(_parse, data, query=query):
                key = frozenset(part.labels.items())
                joined.setdefault(key, (part.labels, []))[1].extend(part.samples)
        if not joined:
            raise NoData(
                f"the query {query!r} matched no series between "
                f"{start.isoformat()} and {end.isoformat()}"
            )
        return [
            Series(labels=labels, samples=tuple(samples)) for labels, samples in joined.values()
        ]

    async def range_points(
        self, query: str, *, start: datetime, end: datetime, step_seconds: float
    ) -> np.ndarray:
        """The one series ``query`` yields over the window, as a ``(n, 2)`` float64 array of (time, value).

        What :meth:`range` answers, for long histories: each part of the answer goes from
        JSON to an array in the worker thread that decodes it, without a tuple per sample
        (weeks of samples for hundreds of Deployments made millions of short-lived objects,
        and the garbage collector's full passes over them held the GIL for hundreds of
        milliseconds). Raises :class:`NoData` when nothing matches and
        :class:`QueryRejected` when the query yields several series (aggregate it first).
        NaN and infinite values are returned as they are.
        """
        start_seconds, end_seconds = _span(start=start, end=end, step_seconds=step_seconds)
        parts: list[np.ndarray] = []
        labels: dict[str, str] | None = None
        for window_start, window_end in _windows(start_seconds, end_seconds, step_seconds):
            params = {
                "query": query,
                "start": _number(window_start),
                "end": _number(window_end),
                "step": _number(step_seconds),
            }
            found = await self._post(
                "api/v1/query_range", params, query=query, then=functools.partial(_matrix_points, query=query)
            )
            if found is None:
                continue
            if labels is not None and found[0] != labels:
                raise QueryRejected(
                    f"the query {query!r} returned 2 series where one is needed ({labels}, {found[0]}); "
                    "aggregate it, e.g. sum(...)"
                )
            labels = found[0]
            parts.append(found[1])
        if not parts:
            raise NoData(
                f"the query {query!r} matched no series between "
                f"{start.isoformat()} and {end.isoformat()}"
            )
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def instant_value(self, query: str, *, at: datetime | None = None) -> float:
        """The one finite number ``query`` evaluates to at ``at`` (default: now).

        Raises :class:`NoData` when nothing matches, :class:`QueryRejected` when the query
        yields several series or a range vector (aggregate it first, e.g. ``sum(...)``), and
        :class:`NotANumber` when the value is NaN or infinite.
        """
        series = _single(await self.instant(query, at=at), query=query)
        if len(series.samples) != 1:
            raise QueryRejected(
                f"the query {query!r} returned a range vector of {len(series.samples)} samples "
                "where one value is needed; wrap it in an *_over_time function"
            )
        timestamp, value = series.samples[0]
        _require_finite(value, timestamp=timestamp, query=query)
        return value

    async def range_values(
        self, query: str, *, start: datetime, end: datetime, step_seconds: float
    ) -> tuple[Sample, ...]:
        """The samples of the one series ``query`` yields over the window, all finite.

        Raises :class:`NoData` when nothing matches, :class:`QueryRejected` when the query
        yields several series (aggregate it first), and :class:`NotANumber` at the first
        NaN or infinite sample.
        """
        answer = await self.range(query, start=start, end=end, step_seconds=step_seconds)
        series = _single(answer, query=query)
        for timestamp, value in series.samples:
            _require_finite(value, timestamp=timestamp, query=query)
        return series.samples

    async def _post(
        self, path: str, params: Mapping[str, str], *, query: str, then: Callable[[Any], Any] | None = None
    ) -> Any:
        """POST one API call with retries; return its ``data`` or raise the matching error.

        ``then`` is applied to the ``data`` in the worker thread that decodes it, so a large
        answer's lists never outlive that thread's call (see :meth:`range_points`).
        """
        attempts = 1 + self._retries
        failure = ""
        for attempt in range(1, attempts + 1):
            try:
                async with asyncio.timeout(self._timeout_seconds):
                    response = await self._http.post(path, data=params)
            except TimeoutError:
                failure = f"no answer within {self._timeout_seconds:g} s"
            except httpx.TransportError as error:
                failure = type(error).__name__ + (f": {error}" if str(error) else "")
            else:
                if response.status_code < 500 and response.status_code != 429:
                    # Decoding weeks of samples takes tens of milliseconds: off the event loop.
                    return await asyncio.to_thread(self._data, response, query=query, then=then)
                failure = f"HTTP {response.status_code}: {_error_text(response)}"
            if attempt < attempts:
                delay = self._backoff_seconds * 2 ** (attempt - 1)
                log.warning(
                    "Prometheus attempt %d of %d for %r failed (%s); retrying in %g s",
                    attempt, attempts, query, failure, delay,
                )
                await asyncio.sleep(delay)
        raise PrometheusUnavailable(
            f"Prometheus at {self._base_url} did not answer the query {query!r} "
            f"after {attempts} attempt(s); last failure: {failure}"
        )

    def _data(self, response: httpx.Response, *, query: str, then: Callable[[Any], Any] | None = None) -> Any:
        """The ``data`` of a final (non-retried) answer (``then(data)`` if given), or the error it stands for."""
        body = _json_object(response)
        error_type = body.get("errorType") if body is not None else None
        if 400 <= response.status_code < 500 or error_type in _REJECTING_ERROR_TYPES:
            kind = f"{error_type}, " if error_type else ""
            raise QueryRejected(
                f"Prometheus rejected the query {query!r}: {_error_text(response)} "
                f"({kind}HTTP {response.status_code})"
            )
        if body is None or body.get("status") != "success" or "data" not in body:
            raise PrometheusUnavailable(
                f"{self._base_url} answered the query {query!r} with HTTP "
                f"{response.status_code} and a body that is not a Prometheus API answer: "
                f"{response.text[:200]!r}"
            )
        for warning in body.get("warnings", ()):
            log.warning("Prometheus warns about the query %r: %s", query, warning)
        return body["data"] if then is None else then(body["data"])


def _ssl_verify(verify_tls: bool | str) -> ssl.SSLContext:
    """The SSL context for ``verify_tls``, made once and shared by every client.

    Loading a CA bundle is tens of milliseconds of C code that holds the GIL: made anew for
    each client (one per detection and sizing run), it stalled the event loop every time.
    A CA bundle file is read again when it changes on disk. A plain-HTTP URL needs none.
    """
    if isinstance(verify_tls, str):
        return _context_for(verify_tls, os.stat(verify_tls).st_mtime_ns)
    return _context_for(verify_tls, 0)


@functools.cache
def _plain_context() -> ssl.SSLContext:
    """What httpx is given for a plain-HTTP Prometheus: no CA bundle to load, never used."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


@functools.lru_cache(maxsize=8)
def _context_for(verify_tls: bool | str, _version: int) -> ssl.SSLContext:
    if isinstance(verify_tls, str):
        return ssl.create_default_context(cafile=verify_tls)
    return httpx.create_ssl_context(verify=verify_tls)


def _span(*, start: datetime, end: datetime, step_seconds: float) -> tuple[float, float]:
    """A range query's start and end in unix seconds; ValueError for a bad step or an inverted window."""
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive, not {step_seconds}")
    start_seconds = _unix_seconds(start, name="start")
    end_seconds = _unix_seconds(end, name="end")
    if end_seconds < start_seconds:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    return start_seconds, end_seconds


def _unix_seconds(moment: datetime, *, name: str) -> float:
    """Unix seconds of a timezone-aware datetime; a naive one is refused, not guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not {moment.isoformat()}")
    return moment.timestamp()


def _number(value: float) -> str:
    """A float as the API takes it: seconds, to the millisecond Prometheus keeps."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _windows(start: float, end: float, step: float) -> list[tuple[float, float]]:
    """Split [start, end] on the step grid into windows of at most MAX_POINTS_PER_SERIES."""
    points = int((end - start) // step) + 1
    return [
        (start + first * step, start + (min(first + MAX_POINTS_PER_SERIES, points) - 1) * step)
        for first in range(0, points, MAX_POINTS_PER_SERIES)
    ]


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error_text(response: httpx.Response) -> str:
    """Prometheus' own error message, or the start of whatever else came back."""
    body = _json_object(response)
    error = body.get("error") if body is not None else None
    if isinstance(error, str):
        return error
    return response.text[:200] or response.reason_phrase


def _parse(data: Any, *, query: str) -> list[Series]:
    """The series of an API ``data`` object (vector, matrix or scalar)."""
    try:
        result_type, result = data["resultType"], data["result"]
        if result_type == "scalar":
            return [Series(labels={}, samples=(_sample(result),))]
        if result_type == "vector":
            return [
                Series(labels=dict(item["metric"]), samples=(_sample(item["value"]),))
                for item in result
            ]
        if result_type == "matrix":
            return [
                Series(
                    labels=dict(item["metric"]),
                    samples=tuple(_sample(point) for point in item["values"]),
                )
                for item in result
            ]
    except (KeyError, TypeError, ValueError) as error:
        raise PrometheusUnavailable(
            f"Prometheus answered the query {query!r} with a result that cannot be read "
            f"({type(error).__name__}: {error})"
        ) from error
    raise QueryRejected(f"the query {query!r} returns a {result_type}, not numbers")


def _matrix_points(data: Any, *, query: str) -> tuple[dict[str, str], np.ndarray] | None:
    """The labels and ``(n, 2)`` points of a range answer's one series (None: no series)."""
    try:
        result_type, result = data["resultType"], data["result"]
    except (KeyError, TypeError) as error:
        raise PrometheusUnavailable(
            f"Prometheus answered the query {query!r} with a result that cannot be read "
            f"({type(error).__name__}: {error})"
        ) from error
    if result_type != "matrix":
        return _matrix_points({"resultType": "matrix", "result": [
            {"metric": s.labels, "values": s.samples} for s in _parse(data, query=query)]}, query=query)
    if not result:
        return None
    _single([Series(labels=dict(item.get("metric") or {}), samples=()) for item in result], query=query)
    try:
        # The values are [unix_seconds, "value"] pairs; NumPy reads the strings, NaN and ±Inf included.
        points = np.array(result[0]["values"], dtype=np.float64).reshape(-1, 2)
        return dict(result[0]["metric"]), points
    except (KeyError, TypeError, ValueError) as error:
        raise PrometheusUnavailable(
            f"Prometheus answered the query {query!r} with a result that cannot be read "
            f"({type(error).__name__}: {error})"
        ) from error


def _sample(point: Any) -> Sample:
    """One ``[unix_seconds, "value"]`` pair; the value string may be NaN or ±Inf."""
    timestamp, value = point
    return float(timestamp), float(value)


def _single(series: list[Series], *, query: str) -> Series:
    """The only series of an answer; several are refused with their labels."""
    if len(series) != 1:
        labels = ", ".join(str(one.labels) for one in series[:3])
        raise QueryRejected(
            f"the query {query!r} returned {len(series)} series where one is needed "
            f"({labels}{', ...' if len(series) > 3 else ''}); aggregate it, e.g. sum(...)"
        )
    return series[0]


def _require_finite(value: float, *, timestamp: float, query: str) -> None:
    """Refuse NaN and ±Inf: no ratio, forecast or regression can be taken from them."""
    if not math.isfinite(value):
        moment = datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
        raise NotANumber(f"the query {query!r} evaluated to {value} at {moment}")
