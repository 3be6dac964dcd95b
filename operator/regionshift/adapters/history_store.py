"""The last good signal history, kept in a ConfigMap so sizing survives a Prometheus outage.

The talk's fallback: "Historical data - ATLAS; Local Cache - Redis, Filesystem". Here the
local cache is a ConfigMap ``<regionfailover>-history`` next to its RegionFailover (owned by
it, so it goes with it): it lives in the region's own cluster, survives operator restarts
and needs no volume. Each fetch of history that succeeds overwrites it; when Prometheus does
not answer, the forecasts and the sizing go on from it.

The series are stored downsampled (``STORE_STEP_SECONDS``) as gzip-compressed JSON in
``binaryData``, well under the 1 MiB object limit for a few regions and weeks of history.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["History", "STORE_STEP_SECONDS", "configmap_name", "decode", "encode"]

STORE_STEP_SECONDS = 300
KEY = "history.json.gz"


@dataclass(frozen=True)
class History:
    """One region's signal at a fixed step: values[i] is the sample at start + i*step (NaN: missing)."""

    start: float
    step_seconds: float
    values: tuple[float, ...]

    def timestamps(self) -> np.ndarray:
        return self.start + self.step_seconds * np.arange(len(self.values))

    def downsampled(self, *, step_seconds: float) -> History:
        """Mean over windows of ``step_seconds`` (NaN where a window has no sample)."""
        factor = max(1, int(round(step_seconds / self.step_seconds)))
        if factor == 1:
            return self
        arr = np.asarray(self.values, dtype=float)
        usable = len(arr) // factor * factor
        blocks = arr[:usable].reshape(-1, factor)
        with np.errstate(all="ignore"):
            counts = np.sum(~np.isnan(blocks), axis=1)
            means = np.where(counts > 0, np.nansum(blocks, axis=1) / np.maximum(counts, 1), np.nan)
        return History(start=self.start, step_seconds=self.step_seconds * factor, values=tuple(float(v) for v in means))


def configmap_name(regionfailover: str) -> str:
    """Name of the ConfigMap that caches a RegionFailover's history."""
    return f"{regionfailover}-history"


def encode(histories: dict[str, History], *, saved_at: float) -> dict[str, str]:
    """ConfigMap ``binaryData`` holding the histories, downsampled."""
    payload: dict[str, Any] = {"savedAt": saved_at, "regions": {}}
    for region, history in histories.items():
        small = history.downsampled(step_seconds=STORE_STEP_SECONDS)
        payload["regions"][region] = {
            "start": small.start,
            "stepSeconds": small.step_seconds,
            "values": [None if math.isnan(v) else round(v, 4) for v in small.values],
        }
    raw = gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), mtime=0)
    return {KEY: base64.b64encode(raw).decode()}


def decode(binary_data: dict[str, str] | None) -> tuple[dict[str, History], float | None]:
    """The histories and their save time from a ConfigMap's ``binaryData`` ({} if none)."""
    if not binary_data or KEY not in binary_data:
        return {}, None
    payload = json.loads(gzip.decompress(base64.b64decode(binary_data[KEY])))
    histories = {
        region: History(
            start=float(item["start"]),
            step_seconds=float(item["stepSeconds"]),
            values=tuple(math.nan if v is None else float(v) for v in item["values"]),
        )
        for region, item in payload["regions"].items()
    }
    return histories, float(payload["savedAt"])
