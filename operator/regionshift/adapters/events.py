"""Kubernetes Events: the one path every controller posts them through.

Events are posted straight to the API (``core/v1``), from any thread or coroutine, not
only inside a kopf handler, so that a reconcile run from a daemon or a worker thread reports
the same way as one run by kopf. A failed post is worth a log line, never a failed
reconcile.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import urllib3
from kubernetes import client

from regionshift.adapters.kube import REQUEST_TIMEOUT, ApiException, api_client

__all__ = ["post_event"]

log = logging.getLogger(__name__)


def post_event(*, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """Post a core/v1 Event about an object; log (never raise) when the API refuses it."""
    meta = involved["metadata"]
    now = dt.datetime.now(dt.timezone.utc)
    try:
        _create(meta=meta, involved=involved, type_=type_, reason=reason, message=message, now=now)
    except ApiException as exc:
        log.warning("could not post Event %s about %s/%s: %s", reason, meta.get("namespace"), meta["name"], exc.reason)
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # the API server did not answer
        log.warning("could not post Event %s about %s/%s: %s", reason, meta.get("namespace"), meta["name"], exc)


def _create(*, meta: dict[str, Any], involved: dict[str, Any], type_: str, reason: str, message: str,
            now: dt.datetime) -> None:
    client.CoreV1Api(api_client()).create_namespaced_event(meta["namespace"], {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": involved.get("apiVersion"), "kind": involved.get("kind"),
                           "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "regionshift"},
        "reportingComponent": "regionshift.io/operator",
        "reportingInstance": "regionshift",
        "firstTimestamp": now.isoformat(),
        "lastTimestamp": now.isoformat(),
        "count": 1,
    }, _request_timeout=REQUEST_TIMEOUT, _preload_content=False).release_conn()  # the Event echoed back: not parsed
