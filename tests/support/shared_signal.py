"""The business signal every region's operator reads from the one shared Prometheus.

Regions share one Prometheus (as in production, where all operators read the same global
signal and reach the same verdicts independently). A :class:`SignalScenario` names one
test scenario's series in it: the signal ``sps_<name>{region}`` and the participants'
replica history ``replicas_<name>{region,deployment}``, both backfilled for days from a
:class:`~tests.support.synthetic_day.SyntheticDay` (phased from the start of the run, never
from the wall clock), so a forecast fits at once. Each scenario has series of its own, so
the tests of one module can share one server without seeing each other's drops.

While a test runs, :class:`LiveSignal` keeps the live exporter serving each region's healthy
value *now* (updated every half second, so a long test follows the synthetic day) times a
factor per region: ``live.scale(west=0.3)`` is a regional drop, ``live.scale(west=1.0)`` its
end. Each change returns once Prometheus has stored it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from tests.support.prometheus_server import Metric, PrometheusServer
from tests.support.synthetic_day import DAY, SyntheticDay

__all__ = ["HISTORY_DAYS", "LiveSignal", "SignalScenario", "shared_prometheus"]

HISTORY_DAYS = 8
"""Days of history backfilled: a RegionFailover fits ``historyDays: 7`` of them."""

HISTORY_STEP_SECONDS = 60
LIVE_UPDATE_SECONDS = 0.5


@dataclass(frozen=True)
class SignalScenario:
    """One scenario's series in the shared Prometheus: the signal and the replica history.

    ``levels`` are the regions' mean signal; ``deployments`` the participating Deployments
    whose replica history (what their autoscaler ran: 2 + 1 per 100 of the region's signal)
    is backfilled for the sizing model; ``phase`` where in the synthetic day the run starts.
    """

    name: str
    run: SyntheticDay
    deployments: tuple[str, ...] = ("web",)
    phase: str = "rising"

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions the scenario has a signal for."""
        return tuple(self.run.levels)

    @property
    def metric(self) -> str:
        """The signal's metric name."""
        return f"sps_{self.name}"

    @property
    def replicas_metric(self) -> str:
        """The replica history's metric name."""
        return f"replicas_{self.name}"

    @property
    def query(self) -> str:
        """``spec.signal.query`` of a RegionFailover reading this scenario (``{region}`` placeholder)."""
        return f'{self.metric}{{region="{{region}}"}}'

    @property
    def replicas_query(self) -> str:
        """``spec.darkCapacity.replicasQuery`` (``{region}`` and ``{deployment}`` placeholders)."""
        return f'{self.replicas_metric}{{region="{{region}}",deployment="{{deployment}}"}}'

    def signal(self, region: str, t: float) -> float:
        """The region's healthy signal at ``t``."""
        return self.run.signal(region, t, phase=self.phase)

    def replicas_now(self, region: str) -> int:
        """What a participant's autoscaler runs now in ``region``: the replicas its Deployment should have."""
        return int(self.run.replicas_for(self.signal(region, time.time())))

    def history(self, *, end: float, days: int = HISTORY_DAYS) -> dict[Metric, list[tuple[float, float]]]:
        """The backfill: ``days`` of signal and replica history per region, up to ``end``."""
        times = [end - days * DAY + HISTORY_STEP_SECONDS * i for i in range(int(days * DAY / HISTORY_STEP_SECONDS) + 1)]
        out: dict[Metric, list[tuple[float, float]]] = {}
        for region in self.regions:
            signal = [(t, self.signal(region, t)) for t in times]
            out[Metric.of(self.metric, region=region)] = signal
            for deployment in self.deployments:
                out[Metric.of(self.replicas_metric, region=region, deployment=deployment)] = [
                    (t, self.run.replicas_for(value)) for t, value in signal
                ]
        return out


def shared_prometheus(scenarios: Iterable[SignalScenario], *, days: int = HISTORY_DAYS) -> PrometheusServer:
    """A (not yet started) Prometheus holding every scenario's history up to the last minute.

    Use it as a context manager, typically in a module-scoped fixture::

        @pytest.fixture(scope="module")
        def prometheus() -> Iterator[PrometheusServer]:
            with shared_prometheus([SMOKE]) as server:
                yield server
    """
    end = time.time() // 60 * 60
    history: dict[Metric, list[tuple[float, float]]] = {}
    for scenario in scenarios:
        history.update(scenario.history(end=end, days=days))
    return PrometheusServer(history=history)


@dataclass
class LiveSignal:
    """The live exporter serving a scenario's signal now, per region, times a factor.

    A context manager: on entry every region serves its healthy value (factor 1) and the
    first values are stored; a background thread follows the synthetic day every half
    second; on exit the series are removed (stale at the next scrape).
    """

    prometheus: PrometheusServer
    scenario: SignalScenario
    factors: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def scale(self, **factors: float) -> None:
        """Serve ``factor × healthy`` for the named regions (1.0: healthy again); returns once stored."""
        unknown = set(factors) - set(self.scenario.regions)
        if unknown:
            raise ValueError(f"regions {sorted(unknown)} are not in scenario {self.scenario.name}")
        with self._lock:
            self.factors.update(factors)
        self._publish()
        self.prometheus.exporter.wait_for_scrapes(2)

    def healthy(self) -> None:
        """Every region back to its healthy value; returns once stored."""
        self.scale(**{region: 1.0 for region in self.scenario.regions})

    def factor(self, region: str) -> float:
        """The factor a region's signal is served with now."""
        with self._lock:
            return self.factors.get(region, 1.0)

    def _publish(self) -> None:
        now = time.time()
        with self._lock:
            values = {region: self.scenario.signal(region, now) * self.factors.get(region, 1.0)
                      for region in self.scenario.regions}
        for region, value in values.items():
            self.prometheus.exporter.set(self.scenario.metric, {"region": region}, value)

    def _follow(self) -> None:
        while not self._stop.wait(LIVE_UPDATE_SECONDS):
            self._publish()

    def __enter__(self) -> Self:
        self._publish()
        self._thread = threading.Thread(target=self._follow, name=f"live-{self.scenario.name}", daemon=True)
        self._thread.start()
        self.prometheus.exporter.wait_for_scrapes(2)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for region in self.scenario.regions:
            self.prometheus.exporter.remove(self.scenario.metric, {"region": region})

