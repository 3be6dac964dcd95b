"""The tests' Prometheus: :mod:`regionshift.local.prometheus` with a reference history and a fixture.

The server itself (backfill, live exporter, scrape targets added at run time, and what
surprised us about each) lives in :mod:`regionshift.local.prometheus`, which the drill uses
too; this module adds the session's shared server and its plain reference history.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping

import pytest

from regionshift.local.prometheus import (
    RETENTION,
    SCRAPED_TIMEOUT_SECONDS,
    TARGETS_JOB,
    Exporter,
    History,
    Metric,
    PrometheusServer,
    openmetrics,
)

__all__ = [
    "REFERENCE_REGIONS",
    "RETENTION",
    "SCRAPED_TIMEOUT_SECONDS",
    "TARGETS_JOB",
    "Exporter",
    "History",
    "Metric",
    "PrometheusServer",
    "openmetrics",
    "prometheus_server",
    "reference_history",
]

REFERENCE_REGIONS: Mapping[str, float] = {"us-east": 1000.0, "us-west": 700.0, "eu-west": 400.0}
"""Regions of :func:`reference_history` and their mean level."""


def reference_history(
    *, end: float, days: int = 21, step_seconds: int = 60, name: str = "sps"
) -> dict[Metric, list[tuple[float, float]]]:
    """A plain daily wave per region of :data:`REFERENCE_REGIONS`, sampled up to ``end``.

    Enough to check that what goes into Prometheus comes out of it; realistic traffic
    (noise, weekly shape, faults) comes from :mod:`regionshift.local.synthetic`.
    """
    first = int(end) - days * 86_400
    return {
        Metric.of(name, region=region): [
            (float(t), level * (1.0 + 0.5 * math.sin(2 * math.pi * t / 86_400)))
            for t in range(first, int(end) + 1, step_seconds)
        ]
        for region, level in REFERENCE_REGIONS.items()
    }


@pytest.fixture(scope="session")
def prometheus_server() -> Iterator[PrometheusServer]:
    """One Prometheus for the session, holding :func:`reference_history` to the last minute.

    Shared by every test: a test that sets exporter gauges uses metric names of its own.
    """
    end = time.time() // 60 * 60
    with PrometheusServer(history=reference_history(end=end)) as server:
        yield server
