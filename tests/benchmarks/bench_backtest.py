"""Benchmark: replay 28 days of synthetic history through forecast and detection.

Run: ``PYTHONPATH=operator python tests/benchmarks/bench_backtest.py [--days 28] [--seeds 7] [--step-seconds 60]``

Prints the backtest report (detection delay per fault, false evacuations, missed faults,
whether the target holds) for each seed, and how long each replay took. Several seeds
(``--seeds 1 2 3``) show how much the figures depend on the particular history.
"""

from __future__ import annotations

import argparse
import time

from regionshift.local.backtest import format_report, run_backtest

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=28.0, help="days to replay (default 28)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7], help="seeds of the synthetic history")
    parser.add_argument("--refit-interval-seconds", type=float, default=1800.0)
    parser.add_argument("--step-seconds", type=int, default=60, help="sample step (default 60; the drill's is 5)")
    args = parser.parse_args()
    summary = []
    for seed in args.seeds:
        began, cpu = time.perf_counter(), time.process_time()
        report = run_backtest(
            days=args.days, seed=seed, step_seconds=args.step_seconds, refit_interval_seconds=args.refit_interval_seconds
        )
        took, cpu = time.perf_counter() - began, time.process_time() - cpu
        print(format_report(report))
        print(f"replay took {took:.1f} s ({cpu:.1f} s of CPU)\n")
        summary.append(
            f"seed {seed}: target {'MET' if report.target_met else 'NOT MET'},"
            f" false evacuations {len(report.false_evacuations)}, missed {len(report.missed)},"
            f" lowest quiet ratio {report.lowest_quiet_ratio:.3f}, {took:.1f} s ({cpu:.1f} s CPU)"
        )
    if len(summary) > 1:
        print("\n".join(summary))


if __name__ == "__main__":
    main()
