"""The event-loop watch: a blocking call on the loop shows up as the worst lateness."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import CollectorRegistry, Gauge

from regionshift.loopwatch import start_loop_watch, watch_collections, watch_loop


def test_a_blocking_call_on_the_loop_is_recorded_as_its_stall() -> None:
    gauge = Gauge("lag_test_seconds", "test", registry=CollectorRegistry())

    async def scenario() -> None:
        watch = asyncio.create_task(watch_loop(interval_seconds=0.01, gauge=gauge))
        await asyncio.sleep(0.05)
        time.sleep(0.15)  # a synchronous call on the event loop
        await asyncio.sleep(0.05)
        watch.cancel()

    asyncio.run(scenario())
    assert 0.1 <= gauge._value.get() < 1.0


def test_the_watch_starts_once_per_loop() -> None:
    async def scenario() -> bool:
        first, second = start_loop_watch(), start_loop_watch()
        first.cancel()
        return first is second

    assert asyncio.run(scenario())


def test_a_stall_says_how_much_of_it_the_loop_ran(caplog: pytest.LogCaptureFixture) -> None:
    gauge = Gauge("lag_cpu_test_seconds", "test", registry=CollectorRegistry())

    async def scenario() -> None:
        watch = asyncio.create_task(watch_loop(interval_seconds=0.01, gauge=gauge, warn_seconds=0.1))
        await asyncio.sleep(0.05)
        time.sleep(0.15)  # blocks the loop without running: the thread waits, it does not compute
        await asyncio.sleep(0.05)
        watch.cancel()

    with caplog.at_level(logging.WARNING, logger="regionshift.loopwatch"):
        asyncio.run(scenario())
    stalls = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert stalls, caplog.text
    ran = int(stalls[-1].split("its thread ran ")[1].split(" ms")[0])
    stalled = int(stalls[-1].split("stalled for ")[1].split(" ms")[0])
    assert ran < stalled  # a sleep is waiting, not running


def test_every_stall_over_the_bound_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    from prometheus_client import Counter

    registry = CollectorRegistry()
    gauge = Gauge("lag_count_test_seconds", "test", registry=registry)
    stalls = Counter("stalls_count_test", "test", ["kind"], registry=registry)

    async def scenario() -> None:
        watch = asyncio.create_task(watch_loop(interval_seconds=0.01, gauge=gauge, warn_seconds=0.1, stalls=stalls))
        await asyncio.sleep(0.05)
        time.sleep(0.6)  # the worst
        await asyncio.sleep(0.05)
        time.sleep(0.15)  # shorter than the worst: counted and logged all the same
        await asyncio.sleep(0.05)
        watch.cancel()

    with caplog.at_level(logging.INFO, logger="regionshift.loopwatch"):
        asyncio.run(scenario())
    # sleeping blocks the loop without running it: both stalls were waits, not the loop's own work
    assert stalls.labels("waited")._value.get() == 2
    assert stalls.labels("own_work")._value.get() == 0
    levels = [r.levelno for r in caplog.records if "stalled" in r.getMessage()]
    assert levels == [logging.WARNING, logging.INFO]


def test_a_garbage_collection_is_timed_and_named_by_its_thread() -> None:
    import gc

    from regionshift.loopwatch import collections_between

    watch_collections()
    watch_collections()  # once: a second call adds no second hook
    began = time.monotonic()
    gc.collect()
    # Another thread of the test process may run a young collection meanwhile: only the full one is ours.
    full = [c for c in collections_between(began, time.monotonic()) if c[2] == 2]
    assert len(full) == 1
    assert full[0][3] == "MainThread" and full[0][1] >= 0


def test_a_stall_says_how_much_of_it_garbage_collections_took(caplog: pytest.LogCaptureFixture) -> None:
    import gc

    from prometheus_client import Histogram

    registry = CollectorRegistry()
    gauge = Gauge("lag_gc_test_seconds", "test", registry=registry)
    pauses = Histogram("gc_test_seconds", "test", ["generation"], registry=registry)

    async def scenario() -> None:
        watch = asyncio.create_task(watch_loop(interval_seconds=0.01, gauge=gauge, warn_seconds=0.1, gc_pauses=pauses))
        await asyncio.sleep(0.05)
        gc.collect()
        time.sleep(0.15)
        await asyncio.sleep(0.05)
        watch.cancel()

    watch_collections()
    with caplog.at_level(logging.WARNING, logger="regionshift.loopwatch"):
        asyncio.run(scenario())
    stalls = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert stalls and "garbage collections took" in stalls[-1], caplog.text
    assert registry.get_sample_value("gc_test_seconds_count", {"generation": "2"}) >= 1
