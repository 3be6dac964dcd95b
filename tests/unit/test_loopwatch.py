"""The event-loop watch: a blocking call on the loop shows up as the worst lateness."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Gauge

from regionshift.loopwatch import start_loop_watch, watch_loop


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
