"""The last good signal history, kept in a ConfigMap so sizing survives a Prometheus outage.

The talk's fallback: "Historical data - ATLAS; Local Cache - Redis, Filesystem". Here the
local cache is a ConfigMap ``<regionfailover>-history`` next to its RegionFailover (owned by
it, so it goes with it): it lives in the region's own cluster, survives operator restarts
and needs no volume. Each fetch of history that succeeds overwrites it; when Prometheus does
not answer, the forecasts and the sizing go on from it, and say how old it is (its save time).

The series are stored downsampled (``STORE_STEP_SECONDS``) as gzip-compressed JSON in
``binaryData``, well under the 1 MiB object limit for a few regions and weeks of history.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib

import numpy as np

from regionshift.decide.history import History

__all__ = ["History", "STORE_STEP_SECONDS", "configmap_name", "decode", "encode"]

STORE_STEP_SECONDS = 300
KEY = "history.json.gz"


def configmap_name(regionfailover: str) -> str:
    """Name of the ConfigMap that caches a RegionFailover's history."""
    return f"{regionfailover}-history"


def encode(histories: dict[str, History], *, saved_at: float, queries: dict[str, str] | None = None) -> dict[str, str]:
    """ConfigMap ``binaryData`` holding the histories, downsampled, with the query behind each.

    ``saved_at`` is when the histories were fetched: a fallback to this cache reports it as
    the time of its data, never the time it was read back.
    """
    # The same JSON as one json.dumps of the whole payload, written one series at a time: one
    # call for 500 Deployments' histories (two million numbers) held the GIL, and stalled the
    # operator's event loop, for most of a second; a call per series holds it a millisecond or two.
    packer = zlib.compressobj(level=9, wbits=31)  # gzip, fed as the text is made: no copy of it all in memory
    chunks = [packer.compress(('{"savedAt":' + json.dumps(saved_at) + ',"regions":{').encode())]
    for index, (region, history) in enumerate(histories.items()):
        small = history.downsampled(step_seconds=STORE_STEP_SECONDS)
        item = {
            "start": small.start,
            "stepSeconds": small.step_seconds,
            # NaN (a missing sample) is written as JSON's non-standard NaN, which json reads back.
            "values": np.round(small.values.astype(np.float64), 4).tolist(),
            **({"query": queries[region]} if queries and region in queries else {}),
        }
        part = ("," if index else "") + json.dumps(region) + ":" + json.dumps(item, separators=(",", ":"))
        chunks.append(packer.compress(part.encode()))  # zlib lets go of the GIL while it works
    chunks.append(packer.compress(b"}}"))
    chunks.append(packer.flush())
    return {KEY: base64.b64encode(b"".join(chunks)).decode()}


def decode(
    binary_data: dict[str, str] | None, *, queries: dict[str, str] | None = None
) -> tuple[dict[str, History], float | None]:
    """The histories and their save time from a ConfigMap's ``binaryData`` ({} if none).

    With ``queries``, a series saved for another query than the one asked now is left
    out (the spec changed since): it is another series. Series saved without their query
    (an older operator) are taken as they are.
    """
    if not binary_data or KEY not in binary_data:
        return {}, None
    payload = json.loads(gzip.decompress(base64.b64decode(binary_data[KEY])))
    histories = {
        region: History(
            start=float(item["start"]),
            step_seconds=float(item["stepSeconds"]),
            values=np.array([np.nan if v is None else v for v in item["values"]], dtype=np.float32),
        )
        for region, item in payload["regions"].items()
        if not queries or "query" not in item or queries.get(region, item["query"]) == item["query"]
    }
    return histories, float(payload["savedAt"])
