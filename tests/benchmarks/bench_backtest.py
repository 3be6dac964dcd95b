"""Benchmark: replay 28 days of synthetic history through forecast and detection.

Run: ``PYTHONPATH=operator python tests/benchmarks/bench_backtest.py [--days 28] [--seeds 7]``

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
    args = parser.parse_args()
    summary = []
    for seed in args.seeds:
        began = time.perf_counter()
        report = run_backtest(days=args.days, seed=seed, refit_interval_seconds=args.refit_interval_seconds)
        took = time.perf_counter() - began
        print(format_report(report))
        print(f"replay took {took:.1f} s\n")
        summary.append(
            f"seed {seed}: target {'MET' if report.target_met else 'NOT MET'},"
            f" false evacuations {len(report.false_evacuations)}, missed {len(report.missed)},"
            f" lowest quiet ratio {report.lowest_quiet_ratio:.3f}, {took:.1f} s"
        )
    if len(summary) > 1:
        print("\n".join(summary))


if __name__ == "__main__":
    main()
