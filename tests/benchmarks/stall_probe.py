"""Diagnostics for the scale benchmark: who ran while the operator's event loop stalled.

The operator's loop watch (:mod:`regionshift.loopwatch`) says how long each stall over
100 ms was and how much of it the loop's own thread ran; the rest it waited, for the GIL
or for a CPU, and it cannot tell which (a sampler inside the process needs the GIL to
look). This probe looks from outside, as a process of its own:

* ``record``: every ``--interval`` seconds it reads ``/proc/<pid>/task/<tid>/schedstat``
  of every thread of the operator (CPU time run, time runnable but waiting for a CPU) and
  the machine's CPU counters (``/proc/stat``), and on SIGTERM writes them, with the
  threads' names from one ``py-spy dump`` (if py-spy is installed), to a gzip'd JSON file.
  When the loop's thread has run 40 % of the last 60 ms (a burst of its own work that may
  stall it), or another thread 60 % while the loop hardly ran (it holds the GIL), it also takes a ``py-spy dump --nonblocking`` of every thread's stack, at
  most one a second, into ``<out>.dumps.txt``.
* ``analyse``: for each stall the operator logged, how long the loop's thread ran, how long
  it waited for a CPU (the rest of the stall it waited for the GIL), which of the
  operator's threads ran meanwhile (one of them held the GIL), and how busy the machine's
  two cores were.

    python tests/benchmarks/stall_probe.py record --pid PID --out probe.json.gz
    python tests/benchmarks/stall_probe.py analyse --probe probe.json.gz --log operator.log

Costs about 2-4 % of a core at the default 10 ms; ``bench_scale.py --probe`` runs it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any

__all__ = ["analyse", "record"]

_STALL = re.compile(r"^(\S+ \S+) \w+ regionshift\.loopwatch: the event loop stalled for (\d+) ms")


def _thread_names(pid: int) -> dict[int, str]:
    """tid → Python thread name, from one non-blocking ``py-spy dump`` ({} without py-spy)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {}
    try:
        out = subprocess.run([spy, "dump", "--nonblocking", "--pid", str(pid)], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', out, re.M)}


def record(*, pid: int, out: Path, interval: float, burst: float = 0.4) -> None:
    """Sample every thread's schedstat until SIGTERM (or the process ends); then write ``out``."""
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    times = array("d")
    cpu = array("q")  # busy, total jiffies of the whole machine, interleaved
    fds: dict[int, int] = {}
    series: dict[int, dict[str, Any]] = {}
    stat = os.open("/proc/stat", os.O_RDONLY)
    last_listing = 0.0
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    dumps = out.with_name(out.name + ".dumps.txt") if Path(spy).exists() else None
    dumping: subprocess.Popen[bytes] | None = None
    last_dump = 0.0
    while not stop:
        now = time.time()
        if now - last_listing > 0.5:
            last_listing = now
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except FileNotFoundError:
                break
            for tid in tids:
                if tid not in fds:
                    try:
                        fds[tid] = os.open(f"/proc/{pid}/task/{tid}/schedstat", os.O_RDONLY)
                    except FileNotFoundError:
                        continue
                    series[tid] = {"first": len(times), "run": array("q"), "wait": array("q")}
        times.append(now)
        fields = os.pread(stat, 256, 0).split(b"\n", 1)[0].split()[1:]
        values = [int(f) for f in fields]
        cpu.append(sum(values) - values[3] - values[4])  # not idle, not iowait
        cpu.append(sum(values))
        for tid, fd in list(fds.items()):
            try:
                run, wait, _ = os.pread(fd, 128, 0).split()
            except (OSError, ValueError):
                os.close(fd)
                del fds[tid]
                continue
            entry = series[tid]
            entry["run"].append(int(run))
            entry["wait"].append(int(wait))
        loop = series.get(pid)
        if dumps is not None and loop is not None and len(loop["run"]) > 6 and now - last_dump > 1.0 and (
                dumping is None or dumping.poll() is not None):
            window = times[-1] - times[-7]
            busiest = max((e["run"][-1] - e["run"][-7] for t, e in series.items()
                           if t != pid and len(e["run"]) > 6), default=0)
            # the loop ran 40 % of the last ~60 ms, or another thread did while the loop hardly ran (it holds the GIL)
            if loop["run"][-1] - loop["run"][-7] >= burst * window * 1e9 or (
                    busiest >= 0.6 * window * 1e9 and loop["run"][-1] - loop["run"][-7] < 0.05 * window * 1e9):
                last_dump = now
                with dumps.open("ab") as f:
                    f.write(f"\n=== {dt.datetime.fromtimestamp(now, dt.timezone.utc):%H:%M:%S.%f} loop ran"
                            f" {(loop['run'][-1] - loop['run'][-7]) / 1e6:.0f} ms of {window * 1000:.0f}, the busiest"
                            f" other thread {busiest / 1e6:.0f} ms\n".encode())
                    f.flush()
                    dumping = subprocess.Popen([spy, "dump", "--nonblocking", "--pid", str(pid)], stdout=f,
                                               stderr=subprocess.STDOUT)
        time.sleep(interval)
    names = _thread_names(pid)
    payload = {
        "pid": pid, "interval": interval, "times": list(times), "cpu": list(cpu),
        "threads": {str(tid): {"name": names.get(tid, "?"), "first": e["first"], "run": list(e["run"]),
                               "wait": list(e["wait"])} for tid, e in series.items()},
    }
    with gzip.open(out, "wt") as f:
        json.dump(payload, f)


def _at(entry: dict[str, Any], key: str, index: int) -> int | None:
    i = index - entry["first"]
    values = entry[key]
    if i < 0 or not values:
        return None
    return values[min(i, len(values) - 1)]


def analyse(*, probe: Path, log: Path, threshold_ms: float = 100.0) -> str:
    """A line per logged stall over ``threshold_ms``: the loop's run/CPU wait, who ran, the machine's load."""
    with gzip.open(probe, "rt") as f:
        data = json.load(f)
    import bisect

    times: list[float] = data["times"]
    cpu: list[int] = data["cpu"]
    threads = data["threads"]
    loop = threads.get(str(data["pid"]))
    lines = []
    for text in log.read_text(errors="replace").splitlines():
        match = _STALL.match(text)
        if not match or float(match.group(2)) < threshold_ms:
            continue
        end = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.timezone.utc).timestamp()
        length = float(match.group(2)) / 1000
        start = end - length - 0.02
        i, j = bisect.bisect_left(times, start), min(bisect.bisect_right(times, end), len(times) - 1)
        if i >= j:
            continue
        span = times[j] - times[i]

        def delta(entry: dict[str, Any], key: str) -> float:
            a, b = _at(entry, key, i), _at(entry, key, j)
            return 0.0 if a is None or b is None else (b - a) / 1e6

        ran = sorted(((delta(e, "run"), f"{e['name']}[{tid}]") for tid, e in threads.items() if tid != str(data["pid"])),
                     reverse=True)
        busy = (cpu[2 * j] - cpu[2 * i]) / max(1, cpu[2 * j + 1] - cpu[2 * i + 1])
        others = ", ".join(f"{name} {ms:.0f}" for ms, name in ran[:5] if ms >= 1)
        total = sum(ms for ms, _ in ran)
        lines.append(
            f"{match.group(1)[11:]} stall {length * 1000:.0f} ms (probe span {span * 1000:.0f}): loop ran"
            f" {delta(loop, 'run') if loop else float('nan'):.0f} ms, waited for a CPU"
            f" {delta(loop, 'wait') if loop else float('nan'):.0f} ms; other threads ran {total:.0f} ms"
            f" ({others}); machine busy {busy:.0%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--pid", type=int, required=True)
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--interval", type=float, default=0.01)
    rec.add_argument("--burst", type=float, default=0.4, help="dump the stacks when the loop ran this share of 60 ms")
    ana = sub.add_parser("analyse")
    ana.add_argument("--probe", type=Path, required=True)
    ana.add_argument("--log", type=Path, required=True)
    ana.add_argument("--threshold-ms", type=float, default=100.0)
    args = parser.parse_args()
    if args.command == "record":
        record(pid=args.pid, out=args.out, interval=args.interval, burst=args.burst)
    else:
        print(analyse(probe=args.probe, log=args.log, threshold_ms=args.threshold_ms))


if __name__ == "__main__":
    main()
