"""The ``regionshift`` command line.

    regionshift run                 start the operator against the current kubeconfig
    regionshift crds                write crds/*.yaml from the pydantic models
    regionshift cluster build       build (or find cached) the local control plane
    regionshift cluster up/down     start or stop a local region on loopback
    regionshift demo                one local region, the operator, a DarkCluster, gate closed then open
    regionshift backtest            replay synthetic history with injected faults through detection
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main"]


def _cmd_run(args: argparse.Namespace) -> int:
    from regionshift.runner import run_operator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_operator(kubeconfig=args.kubeconfig, namespaces=args.namespace or [], metrics_port=args.metrics_port)
    return 0


def _cmd_crds(args: argparse.Namespace) -> int:
    from regionshift.api.crdgen import render_crds, write_crds

    if args.check:
        stale = [name for name, text in render_crds().items() if not (args.output_dir / name).exists()
                 or (args.output_dir / name).read_text() != text]
        for name in stale:
            print(f"{args.output_dir / name} differs from the models; run `regionshift crds`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_crds(directory=args.output_dir):
        print(f"wrote {path}")
    return 0


def _cmd_cluster_build(args: argparse.Namespace) -> int:
    from regionshift.local.cluster import build_control_plane

    print(build_control_plane(force=args.force).bin_dir)
    return 0


def _cmd_cluster_up(args: argparse.Namespace) -> int:
    from regionshift.local.cluster import LocalCluster, state_root, third_party_crds

    workdir = state_root() / args.name
    if (workdir / "state.json").exists():
        print(f"cluster {args.name} is already up; `regionshift cluster down --name {args.name}` first", file=sys.stderr)
        return 1
    crds = third_party_crds() if args.traffic_crds else []
    cluster = LocalCluster(name=args.name, workdir=workdir, nodes=args.nodes, tie_to_parent=False, crds=crds)
    cluster.start()
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


def _cmd_cluster_down(args: argparse.Namespace) -> int:
    from regionshift.local.cluster import state_root, stop_recorded

    if not stop_recorded(workdir=state_root() / args.name):
        print(f"no cluster {args.name} is up", file=sys.stderr)
        return 1
    print(f"cluster {args.name} stopped")
    return 0


def _cmd_cluster_list(args: argparse.Namespace) -> int:
    import json

    from regionshift.local.cluster import state_root

    for state in sorted(state_root().glob("*/state.json")):
        data = json.loads(state.read_text())
        print(f"{data['name']}\t{data['server']}\t{data['kubeconfig']}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from regionshift.local.demo import run_demo

    return run_demo(region=args.region)


def _cmd_backtest(args: argparse.Namespace) -> int:
    from regionshift.local.backtest import format_report, run_backtest

    report = run_backtest(days=args.days, seed=args.seed, step_seconds=args.step_seconds)
    print(format_report(report))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="regionshift", description="Evacuate a failing region in seconds.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the operator")
    run.add_argument("--kubeconfig", type=Path, default=None, help="default: $KUBECONFIG or in-cluster")
    run.add_argument("--namespace", action="append", help="watch only these namespaces (repeatable)")
    run.add_argument("--metrics-port", type=int, default=8080, help="serve /metrics here (0: off)")
    run.set_defaults(func=_cmd_run)

    crds = sub.add_parser("crds", help="write the CRDs generated from the models")
    crds.add_argument("--output-dir", type=Path, default=Path("crds"))
    crds.add_argument("--check", action="store_true", help="fail if the files differ from the models")
    crds.set_defaults(func=_cmd_crds)

    cluster = sub.add_parser("cluster", help="local regions: a real control plane on loopback")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)
    build = csub.add_parser("build", help="build the control plane from its pinned Go modules (cached)")
    build.add_argument("--force", action="store_true")
    build.set_defaults(func=_cmd_cluster_build)
    up = csub.add_parser("up", help="start a local region in the background")
    up.add_argument("--name", required=True)
    up.add_argument("--nodes", type=int, default=2)
    up.add_argument("--traffic-crds", action="store_true",
                    help="also install the Gateway API (standard channel) and DNSEndpoint CRDs, pinned, from their Go modules")
    up.set_defaults(func=_cmd_cluster_up)
    down = csub.add_parser("down", help="stop a local region")
    down.add_argument("--name", required=True)
    down.set_defaults(func=_cmd_cluster_down)
    lst = csub.add_parser("list", help="list local regions that are up")
    lst.set_defaults(func=_cmd_cluster_list)

    demo = sub.add_parser("demo", help="a local region with the operator at work on a sample DarkCluster")
    demo.add_argument("--region", default="us-east")
    demo.set_defaults(func=_cmd_demo)

    backtest = sub.add_parser("backtest", help="replay synthetic history with faults; report delays and false alarms")
    backtest.add_argument("--days", type=float, default=28.0, help="days replayed after two weeks of warm-up")
    backtest.add_argument("--seed", type=int, default=7)
    backtest.add_argument("--step-seconds", type=int, default=60)
    backtest.set_defaults(func=_cmd_backtest)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``regionshift`` console script."""
    args = _parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
