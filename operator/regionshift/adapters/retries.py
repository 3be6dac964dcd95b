"""Retries of Kubernetes writes the API server refused for now: backoff with jitter.

A 409 (someone wrote the object meanwhile), a 429 (the API server's priority and fairness
asked us to slow down) or a 5xx (an API server or etcd hiccup) says nothing about the
write itself: trying again a little later succeeds. Everything else (403, 404, 422, ...)
would fail again and goes straight back to the caller.

:func:`retry_delay` is the policy, a pure function unit-tested on its own; :func:`call`
applies it around one call. Retries are routine: they are logged at INFO without a
traceback, and only the last failure reaches the caller.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

__all__ = ["MAX_ATTEMPTS", "RETRYABLE_STATUSES", "call", "is_retryable", "retry_after_seconds", "retry_delay"]

T = TypeVar("T")
log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
"""HTTP statuses a write is retried on: a conflict, a throttle, a server-side hiccup."""
MAX_ATTEMPTS = 6
"""Attempts in all (the first try and five retries): about 3 s at most with the defaults."""
BASE_SECONDS = 0.05
CAP_SECONDS = 1.0


def is_retryable(status: int | None) -> bool:
    """Whether a failure with this HTTP status (None: no answer at all) is worth a retry."""
    return status is None or status in RETRYABLE_STATUSES


def retry_delay(
    *,
    attempt: int,
    status: int | None,
    jitter: float,
    retry_after: float | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    base_seconds: float = BASE_SECONDS,
    cap_seconds: float = CAP_SECONDS,
) -> float | None:
    """Seconds to wait before the next attempt, or None to give up.

    ``attempt`` counts the attempts made so far (1 after the first failure); ``jitter`` is a
    number in [0, 1) (random in production, fixed in tests). The delay is "equal jitter"
    exponential backoff: half of ``base * 2**(attempt-1)`` (capped) for sure, the other half
    scaled by ``jitter``, so that writers refused together do not come back together. A
    server's Retry-After (429) is honoured when longer, up to the cap.
    """
    if attempt >= max_attempts or not is_retryable(status):
        return None
    ceiling = min(cap_seconds, base_seconds * 2 ** (attempt - 1))
    delay = ceiling / 2 + ceiling / 2 * min(max(jitter, 0.0), 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap_seconds))
    return delay


def retry_after_seconds(exc: ApiException) -> float | None:
    """The Retry-After header of a refusal, in seconds, if the server sent one."""
    value = (exc.headers or {}).get("Retry-After") if exc.headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def call(
    fn: Callable[[], T],
    *,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> T:
    """Call ``fn``; on a retryable refusal wait (:func:`retry_delay`) and call it again.

    Raises the last exception once the policy gives up, or at once for a failure that a
    retry cannot fix.
    """
    draw = (rng or random).random
    attempt = 0
    while True:
        try:
            return fn()
        except ApiException as exc:
            attempt += 1
            delay = retry_delay(attempt=attempt, status=exc.status, jitter=draw(),
                                retry_after=retry_after_seconds(exc), max_attempts=max_attempts)
            if delay is None:
                raise
            log.info("%s: HTTP %s %s; retry %d in %.2f s", what, exc.status, exc.reason, attempt, delay)
        except urllib3.exceptions.HTTPError as exc:  # timeouts, refused or reset connections
            attempt += 1
            delay = retry_delay(attempt=attempt, status=None, jitter=draw(), max_attempts=max_attempts)
            if delay is None:
                raise
            log.info("%s: %s; retry %d in %.2f s", what, type(exc).__name__, attempt, delay)
        sleep(delay)
