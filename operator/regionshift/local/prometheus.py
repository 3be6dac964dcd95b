"""A real Prometheus on loopback: weeks of backfilled history plus a live exporter.

The tests and the drill need the real query engine, not a mock of it: the lookback
window, staleness, step alignment, the 11,000-point limit and the exact error answers are
Prometheus' behaviour, and regionshift depends on each. This module starts
Debian's ``prometheus`` (apt package ``prometheus``, which also ships ``promtool``) on
loopback, with history written as OpenMetrics and turned into TSDB blocks by ``promtool tsdb
create-blocks-from openmetrics``, scraping every second a small exporter whose gauges the
test sets while it runs.

What a test can rely on, and what surprised us:

- Backfilled and live samples with the same name and labels are one series: the scrape
  drops the ``job`` and ``instance`` target labels (metric relabelling), so the history
  simply goes on into the present. ``up{job="live"}`` keeps them.
- Prometheus reads blocks when it starts (and at its TSDB reload, about once a minute), so
  the history is fixed for the life of a server: start one server per history.
- Time retention counts back from the newest block's end, not from the wall clock; it is
  set far beyond any test history (``RETENTION``).
- Prometheus scrapes a new target only some 5 s after it starts (service discovery updates
  are batched every 5 s); the server is handed over after the exporter's first scrape. A
  value set on the exporter is visible to queries once ``wait_for_scrapes(2)`` returns.
- An instant query returns the newest sample up to 5 minutes back (the lookback delta),
  stamped with the evaluation time: the end of a backfilled history stays visible for 5
  minutes. A series the exporter stops serving gets a staleness marker at the next scrape
  and disappears at once.
- Scrape targets added while the server runs (:meth:`PrometheusServer.add_scrape_target`,
  the operators' ``/metrics`` for instance) go into a ``file_sd_configs`` file that
  Prometheus watches (inotify, and a re-read every second besides). A new target is
  scraped some 1-6 s after it is written (measured 1.0-5.5 s, operators and exporters
  alike): the discovery manager hands updates to the scrape manager at most every 5 s,
  then the first scrape comes within one interval. A removed target's series vanish as
  fast (3.3 s measured). Scrapes of a busy operator process stayed within the 1 s
  timeout (no ``up == 0`` in the two-region smoke test).
  :meth:`PrometheusServer.wait_until_scraped` waits for ``up == 1``. Unlike the live
  exporter's, these series keep their own labels and gain ``job="targets"`` and
  ``instance="127.0.0.1:PORT"``; with ``honor_labels`` a label a target sets itself
  (``region``, ``namespace``) wins over a target label of the same name.
- ``promtool`` reads the whole input once per block it writes; with its default 2-hour
  blocks three weeks of history take 250 passes. Larger blocks (``--max-block-duration``)
  make the backfill take well under a second.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

__all__ = [
    "RETENTION",
    "TARGETS_JOB",
    "Exporter",
    "History",
    "Metric",
    "PrometheusServer",
    "openmetrics",
]

RETENTION = "400d"
"""Time retention of the test server: longer than any history a test backfills."""

SCRAPE_INTERVAL = "1s"
"""How often Prometheus scrapes the live exporter and every added target."""

TARGETS_JOB = "targets"
"""The job of the scrape targets added at run time (``up{job="targets"}``)."""

TARGETS_REFRESH = "1s"
"""How often Prometheus re-reads the targets file besides watching it."""

SCRAPED_TIMEOUT_SECONDS = 30.0
"""Default wait for an added target's first successful scrape (it takes 1-6 s)."""

MAX_BLOCK_DURATION = "8760h"
"""Upper bound for promtool's blocks: few blocks, so few passes over the input."""

STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0

@dataclass(frozen=True, slots=True)
class Metric:
    """A series' identity: metric name and labels (sorted, so equal labels compare equal)."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, name: str, /, **labels: str) -> Metric:
        """``Metric.of("sps", region="us-east")``."""
        return cls(name=name, labels=tuple(sorted(labels.items())))


History = Mapping[Metric, Sequence[tuple[float, float]]]
"""Samples per series: (unix seconds, value) pairs."""


def openmetrics(history: History) -> str:
    """``history`` as OpenMetrics text with timestamps, the input of promtool's backfill.

    Each metric is one gauge family, its samples contiguous and in time order, timestamps in
    seconds; the text ends in ``# EOF`` as the format requires.
    """
    lines: list[str] = []
    for name in sorted({metric.name for metric in history}):
        lines.append(f"# TYPE {name} gauge")
        for metric in sorted((m for m in history if m.name == name), key=lambda m: m.labels):
            series = name + _label_text(metric.labels)
            lines.extend(
                f"{series} {_number(value)} {_number(timestamp)}"
                for timestamp, value in sorted(history[metric])
            )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class Exporter:
    """Gauges served on loopback in the Prometheus text format, set by the test at run time.

    ``set("sps", {"region": "us-east"}, 123.0)`` serves a value from the next scrape on;
    ``remove`` stops serving a series, which Prometheus marks stale at its next scrape.
    ``wait_for_scrapes(2)`` after either makes the change visible to queries.
    """

    def __init__(self) -> None:
        self._values: dict[Metric, float] = {}
        self._scrapes = 0
        self._changed = threading.Condition()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter._scrape().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Keep scrapes out of the test output."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="prometheus-exporter", daemon=True
        )

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the scrape target."""
        return f"127.0.0.1:{self._server.server_port}"

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Serve ``value`` for the series ``name{labels}`` from the next scrape on."""
        with self._changed:
            self._values[Metric.of(name, **labels)] = value

    def remove(self, name: str, labels: Mapping[str, str]) -> None:
        """Stop serving the series ``name{labels}`` (no error if it was not served)."""
        with self._changed:
            self._values.pop(Metric.of(name, **labels), None)

    def wait_for_scrapes(self, count: int, *, timeout_seconds: float = 15.0) -> None:
        """Block until Prometheus has scraped ``count`` more times from now.

        Prometheus scrapes one target strictly one scrape after another, storing each before
        starting the next, so the second scrape after a change proves the first one, which
        saw the change, is stored: ``wait_for_scrapes(2)`` makes a change visible.
        """
        with self._changed:
            target = self._scrapes + count
            if not self._changed.wait_for(lambda: self._scrapes >= target, timeout_seconds):
                raise TimeoutError(
                    f"Prometheus did not scrape {self.address} {count} times "
                    f"within {timeout_seconds:g} s"
                )

    def _scrape(self) -> str:
        """Count one scrape and render what it serves, both at one instant."""
        with self._changed:
            self._scrapes += 1
            self._changed.notify_all()
            values = dict(self._values)
        lines: list[str] = []
        for name in sorted({metric.name for metric in values}):
            lines.append(f"# TYPE {name} gauge")
            lines.extend(
                f"{name}{_label_text(metric.labels)} {_number(value)}"
                for metric, value in sorted(values.items(), key=lambda item: item[0].labels)
                if metric.name == name
            )
        return "\n".join(lines) + "\n"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class PrometheusServer:
    """A ``prometheus`` process on a free loopback port, holding ``history``, scraping an exporter.

    On entry: backfill ``history`` with promtool, start the exporter and Prometheus, wait
    for ``/-/ready`` and for the first scrape. On exit: stop Prometheus (its whole process group, SIGTERM then
    SIGKILL), stop the exporter and delete the temporary directory.

    More targets can be scraped while it runs (job ``targets``, every second):
    ``add_scrape_target("127.0.0.1:PORT")`` then ``wait_until_scraped("127.0.0.1:PORT")``.
    """

    def __init__(self, *, history: History, scrape_interval: str = SCRAPE_INTERVAL,
                 live_targets: Sequence[str] = ()) -> None:
        self.history = history
        self.scrape_interval = scrape_interval
        self.live_targets = list(live_targets)
        """More ``host:port`` targets scraped like the exporter (job and instance dropped), so their
        series continue the backfilled ones: the drill's traffic simulator."""
        self._stack = ExitStack()
        self._port = 0
        self._exporter: Exporter | None = None
        self._targets_file: Path | None = None
        self._targets: dict[str, dict[str, str]] = {}
        self._added_at: dict[str, float] = {}
        self._targets_lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def exporter(self) -> Exporter:
        """The live exporter Prometheus scrapes every second."""
        if self._exporter is None:
            raise RuntimeError("the Prometheus server is not running")
        return self._exporter

    def add_scrape_target(self, address: str, *, labels: Mapping[str, str] | None = None) -> None:
        """Scrape ``address`` (``host:port``, path ``/metrics``) every second from now on.

        ``labels`` are added to every series of the target (a label the target sets itself
        wins). Adding an address again replaces its labels. The first scrape follows within
        some 1-6 s: :meth:`wait_until_scraped` waits for it.
        """
        with self._targets_lock:
            self._targets[address] = dict(labels or {})
            self._added_at.setdefault(address, time.monotonic())
            self._write_targets()

    def remove_scrape_target(self, address: str) -> None:
        """Stop scraping ``address``; its series go stale once Prometheus drops the target.

        Nothing to do once the server has stopped (a fixture's teardown may come after it).
        """
        with self._targets_lock:
            self._targets.pop(address, None)
            self._added_at.pop(address, None)
            if self._targets_file is not None:
                self._write_targets()

    @property
    def scrape_targets(self) -> dict[str, dict[str, str]]:
        """The added targets and their labels."""
        with self._targets_lock:
            return {address: dict(labels) for address, labels in self._targets.items()}

    def wait_until_scraped(self, address: str, *, timeout_seconds: float = SCRAPED_TIMEOUT_SECONDS) -> float:
        """Block until an added target has been scraped successfully (``up == 1``).

        Returns the seconds since the target was added (an upper bound of the pickup time:
        the target may have been scraped before this call began); TimeoutError (with what Prometheus
        says about the target) when it is not scraped in time.
        """
        deadline = time.monotonic() + timeout_seconds
        promql = f'up{{job="{TARGETS_JOB}",instance="{address}"}}'
        while time.monotonic() < deadline:
            if any(float(sample["value"][1]) == 1.0 for sample in self.query(promql)):
                with self._targets_lock:
                    added = self._added_at.get(address, time.monotonic())
                return time.monotonic() - added
            time.sleep(0.2)
        raise TimeoutError(
            f"Prometheus did not scrape {address} within {timeout_seconds:g} s; its targets: {self._target_health()}"
        )

    def query(self, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [t, "v"]}, ...]``.

        RuntimeError when Prometheus refuses the query or the result is not a vector.
        """
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10.0).json()
        if answer.get("status") != "success" or answer["data"]["resultType"] != "vector":
            raise RuntimeError(f"query {promql!r} failed: {answer}")
        return list(answer["data"]["result"])

    def _target_health(self) -> list[dict[str, Any]]:
        """What Prometheus says about the added targets (for error messages)."""
        try:
            active = httpx.get(f"{self.url}/api/v1/targets", timeout=5.0).json()["data"]["activeTargets"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return [{"error": str(exc)}]
        return [
            {key: target.get(key) for key in ("scrapeUrl", "health", "lastError")}
            for target in active
            if target.get("labels", {}).get("job") == TARGETS_JOB
        ]

    def _write_targets(self) -> None:
        """Rewrite the file_sd file atomically (a rename), as Prometheus asks of its writers."""
        if self._targets_file is None:
            raise RuntimeError("the Prometheus server is not running")
        groups = [{"targets": [address], "labels": labels} for address, labels in sorted(self._targets.items())]
        partial = self._targets_file.with_suffix(".partial")
        partial.write_text(json.dumps(groups, indent=2))
        os.replace(partial, self._targets_file)

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exporter = None
        self._targets_file = None
        self._stack.close()

    def _start(self) -> None:
        workdir = Path(
            self._stack.enter_context(tempfile.TemporaryDirectory(prefix="regionshift-prometheus-"))
        )
        data_dir = workdir / "data"
        data_dir.mkdir()
        began = time.monotonic()
        samples = self._backfill(workdir / "history.om", data_dir)
        blocks = sum(1 for entry in data_dir.iterdir() if entry.is_dir())
        print(
            f"prometheus: backfilled {samples} samples of {len(self.history)} series "
            f"into {blocks} blocks in {time.monotonic() - began:.1f} s",
            flush=True,
        )
        self._exporter = self._stack.enter_context(Exporter())
        self._targets_file = workdir / "targets.json"
        with self._targets_lock:
            self._write_targets()
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps(
            _config([self._exporter.address, *self.live_targets], targets_file=self._targets_file,
                    scrape_interval=self.scrape_interval),
            indent=2))
        self._port = _free_port()
        log_path = workdir / "prometheus.log"
        log_file = self._stack.enter_context(log_path.open("wb"))
        started = time.monotonic()
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                f"--storage.tsdb.retention.time={RETENTION}",
                f"--web.listen-address=127.0.0.1:{self._port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._stack.callback(_stop, process)
        _wait_ready(process, f"{self.url}/-/ready", log_path)
        ready = time.monotonic()
        self._exporter.wait_for_scrapes(1)
        print(
            f"prometheus: ready on 127.0.0.1:{self._port} in {ready - started:.1f} s, "
            f"first scrape of {self._exporter.address} after {time.monotonic() - started:.1f} s",
            flush=True,
        )

    def _backfill(self, input_path: Path, data_dir: Path) -> int:
        """Write the history as OpenMetrics and let promtool turn it into blocks."""
        samples = sum(len(points) for points in self.history.values())
        if samples == 0:
            return 0
        input_path.write_text(openmetrics(self.history))
        completed = subprocess.run(
            [
                "promtool", "tsdb", "create-blocks-from", "openmetrics",
                f"--max-block-duration={MAX_BLOCK_DURATION}", "--quiet",
                str(input_path), str(data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"promtool could not backfill {input_path} (exit {completed.returncode}): "
                f"{completed.stderr.strip() or completed.stdout.strip()}"
            )
        return samples


def _config(live: Sequence[str], *, targets_file: Path, scrape_interval: str = SCRAPE_INTERVAL) -> dict[str, object]:
    """Prometheus' configuration (JSON is YAML).

    Job ``live``: the exporter (and any live target), target labels dropped so live samples
    continue the backfilled series. Job ``targets``: whatever the file lists, labels kept.
    """
    return {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "live",
                "static_configs": [{"targets": list(live)}],
                "metric_relabel_configs": [{"action": "labeldrop", "regex": "job|instance"}],
            },
            {
                "job_name": TARGETS_JOB,
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": TARGETS_REFRESH}],
            },
        ],
    }


def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Poll ``/-/ready`` until it answers 200; fail with the log if Prometheus exits first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"prometheus exited with {process.returncode} before it was ready:\n"
                f"{_tail(log_path)}"
            )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"prometheus was not ready within {STARTUP_TIMEOUT_SECONDS:g} s:\n{_tail(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers, and reap the process."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _free_port() -> int:
    """A loopback port free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _label_text(labels: Sequence[tuple[str, str]]) -> str:
    """``{a="1",b="2"}`` with values escaped as both exposition formats require."""
    if not labels:
        return ""
    escaped = (
        (key, value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
        for key, value in labels
    )
    return "{" + ",".join(f'{key}="{value}"' for key, value in escaped) + "}"


def _number(value: float) -> str:
    """A float as both exposition formats spell it (``NaN``, ``+Inf``, ``-Inf``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
