"""The ``regionshift`` command line.

    regionshift run                 start the operator against the current kubeconfig
    regionshift crds                write crds/*.yaml from the pydantic models
    regionshift manifests           write manifests/ (kustomize base and overlays) from charts/regionshift
    regionshift cluster build       build (or find cached) the local control plane
    regionshift cluster up/down     start or stop a local region on loopback (up installs the CRDs)
    regionshift cluster env         the shell lines that point kubectl at a local region
    regionshift kubectl -- ARGS     the control plane's own kubectl, against a local region
    regionshift demo                one local region, the operator, a DarkCluster, gate closed then open
    regionshift backtest            replay synthetic history with injected faults through detection
    regionshift backtest --replay nyc-taxi   replay a real series (New York taxis) through forecast and detection
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _cmd_run(args: argparse.Namespace) -> int:
    from regionshift.runner import configure_logging, run_operator

    configure_logging(level=getattr(logging, args.log_level))
    run_operator(kubeconfig=args.kubeconfig, namespaces=args.namespace or [], metrics_port=args.metrics_port,
                 metrics_address=args.metrics_address, liveness_endpoint=args.liveness)
    # kopf has stopped and every write is in the cluster: nothing is left to do. Exit without
    # interpreter finalization, which races with idle executor threads and native libraries
    # (it aborted with SIGABRT in 2 of about 10 SIGTERM stops under churn).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


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
    if args.chart_dir is not None and args.chart_dir.is_dir():  # the chart carries the same CRDs
        for path in write_crds(directory=args.chart_dir):
            print(f"wrote {path}")
        print("if the CRDs changed, run `regionshift manifests` to render manifests/ from the chart again")
    return 0


def _cmd_manifests(args: argparse.Namespace) -> int:
    from regionshift.local.cluster import build_control_plane
    from regionshift.local.manifests import check_manifests, render_manifests, write_manifests

    helm = build_control_plane().path("helm")
    files = render_manifests(chart=args.chart, helm=helm)
    if args.check:
        stale = check_manifests(files=files, output_dir=args.output_dir)
        for name in stale:
            print(f"{args.output_dir / name} differs from the chart; run `regionshift manifests`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_manifests(files=files, output_dir=args.output_dir):
        print(f"wrote {path}")
    return 0


def _cmd_cluster_build(args: argparse.Namespace) -> int:
    from regionshift.local.cluster import build_control_plane

    print(build_control_plane(force=args.force).bin_dir)
    return 0


def _progress(line: str) -> None:
    """Progress of ``cluster up`` goes to stderr: stdout carries only shell lines."""
    print(line, file=sys.stderr, flush=True)


def _program() -> str:
    """How this command was invoked, for commands printed to copy and paste."""
    import shutil

    argv0 = Path(sys.argv[0])
    if argv0.name != "regionshift":
        return f"{sys.executable} -m regionshift.cli"
    on_path = shutil.which("regionshift")
    return "regionshift" if on_path and Path(on_path).resolve() == argv0.resolve() else str(argv0)


def _env_lines(*, kubeconfig: Path, bin_dir: Path, kubernetes: str) -> list[str]:
    return [
        f"export KUBECONFIG={kubeconfig}",
        f"export PATH={bin_dir}:$PATH   # kubectl {kubernetes} (and helm) of this control plane",
    ]


def _cmd_cluster_up(args: argparse.Namespace) -> int:
    from regionshift.api.crdgen import crd_manifests
    from regionshift.local.cluster import LocalCluster, pins, state_root, third_party_crds

    workdir = state_root() / args.name
    if (workdir / "state.json").exists():
        print(f"cluster {args.name} is already up; `regionshift cluster down --name {args.name}` first", file=sys.stderr)
        return 1
    manifests = [] if args.no_crds else list(crd_manifests().values())
    extra = third_party_crds() if args.traffic_crds else []
    cluster = LocalCluster(name=args.name, workdir=workdir, nodes=args.nodes, tie_to_parent=False,
                           crds=manifests + extra, log=_progress)
    cluster.start()
    assert cluster.binaries is not None
    prog, name = _program(), args.name
    crds = ", ".join(m["metadata"]["name"] for m in manifests)
    print("\n".join([
        f"# region {name} is up: {cluster.server}, {args.nodes} kwok node(s), files in {workdir}",
        f"# CRDs installed: {crds}" if manifests else
        "# CRDs not installed (--no-crds): `kubectl apply --server-side -f crds/` from a checkout",
        f"# Use it from this shell (the same two lines later: eval \"$({prog} cluster env --name {name})\"):",
        *_env_lines(kubeconfig=cluster.kubeconfig, bin_dir=cluster.binaries.bin_dir, kubernetes=pins().kubernetes),
        "# Then:",
        "#   kubectl get nodes,crds",
        f"#   {prog} kubectl --name {name} -- get nodes      # the same kubectl, without the exports",
        f"#   {prog} run --namespace default --metrics-port 8080   # the operator, against $KUBECONFIG; Ctrl-C stops it",
        "#   kubectl apply --server-side -f crds/         # after a change of the models (cluster up installed them)",
        "#   docs/getting-started.md                      # a DarkCluster and a RegionFailover, step by step",
        f"#   {prog} cluster down --name {name}           # stop the region, leave no process",
    ]), flush=True)
    return 0


def _recorded_kubeconfig(name: str) -> Path | None:
    import json

    from regionshift.local.cluster import state_root

    state = state_root() / name / "state.json"
    return Path(json.loads(state.read_text())["kubeconfig"]) if state.exists() else None


def _cmd_cluster_env(args: argparse.Namespace) -> int:
    from regionshift.local.cluster import build_control_plane, pins

    kubeconfig = _recorded_kubeconfig(args.name)
    if kubeconfig is None:
        print(f"no cluster {args.name} is up; `regionshift cluster up --name {args.name}` first", file=sys.stderr)
        return 1
    binaries = build_control_plane(log=_progress)
    print("\n".join(_env_lines(kubeconfig=kubeconfig, bin_dir=binaries.bin_dir, kubernetes=pins().kubernetes)))
    return 0


def _cmd_kubectl(args: argparse.Namespace) -> int:
    from regionshift.local.cluster import build_control_plane

    env = dict(os.environ)
    if args.name:
        kubeconfig = _recorded_kubeconfig(args.name)
        if kubeconfig is None:
            print(f"no cluster {args.name} is up", file=sys.stderr)
            return 1
        env["KUBECONFIG"] = str(kubeconfig)
    kubectl = build_control_plane(log=_progress).path("kubectl")
    kubectl_args = args.kubectl_args[1:] if args.kubectl_args[:1] == ["--"] else args.kubectl_args
    os.execve(kubectl, [str(kubectl), *kubectl_args], env)
    return 0  # pragma: no cover - execve does not return


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


def _cmd_drill(args: argparse.Namespace) -> int:
    from regionshift.local.drill import DrillConfig, DrillRefused, run_drill

    config = DrillConfig(services=args.services, fault_region=args.fault_region, fault=args.fault,
                         sample_seconds=args.sample_seconds, outage_seconds=args.outage_seconds,
                         baseline=args.baseline, start_up_delay_seconds=args.start_up_delay,
                         report_dir=args.report_dir)
    try:
        run_drill(config)
    except DrillRefused as exc:
        print(f"regionshift drill: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regionshift drill: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    return 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    from regionshift.local.backtest import format_replay, format_report, run_backtest, run_replay

    if args.replay:
        replay = run_replay(name=args.replay, seed=args.seed, history_days=args.history_days,
                            use_calendar=not args.no_calendar, use_reduced_days=not args.no_reduced_days)
        print(format_replay(replay))
        return 1 if replay.misses else 0
    report = run_backtest(days=args.days, seed=args.seed, step_seconds=args.step_seconds)
    print(format_report(report))
    return 0 if report.target_met else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="regionshift", description="Evacuate a failing region in seconds.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the operator")
    run.add_argument("--kubeconfig", type=Path, default=None, help="default: $KUBECONFIG or in-cluster")
    run.add_argument("--namespace", action="append", help="watch only these namespaces (repeatable)")
    run.add_argument("--metrics-port", type=int, default=8080, help="serve /metrics here (0: off)")
    run.add_argument("--metrics-address", default="127.0.0.1",
                     help="address /metrics listens on (0.0.0.0 in a pod, so Prometheus can scrape it)")
    run.add_argument("--liveness", metavar="URL", default=None,
                     help="serve kopf's health endpoint here, e.g. http://0.0.0.0:8081/healthz (for a liveness probe)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.set_defaults(func=_cmd_run)

    crds = sub.add_parser("crds", help="write the CRDs generated from the models")
    crds.add_argument("--output-dir", type=Path, default=Path("crds"))
    crds.add_argument("--check", action="store_true", help="fail if the files differ from the models")
    crds.add_argument("--chart-dir", type=Path, default=Path("charts/regionshift/crds"),
                      help="also write the Helm chart's copy here (when the directory exists)")
    crds.set_defaults(func=_cmd_crds)

    manifests = sub.add_parser("manifests", help="render manifests/ (kustomize base, an overlay per example region) from the chart")
    manifests.add_argument("--chart", type=Path, default=Path("charts/regionshift"))
    manifests.add_argument("--output-dir", type=Path, default=Path("manifests"))
    manifests.add_argument("--check", action="store_true", help="fail if the files differ from the chart")
    manifests.set_defaults(func=_cmd_manifests)

    cluster = sub.add_parser("cluster", help="local regions: a real control plane on loopback")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)
    build = csub.add_parser("build", help="build the control plane from its pinned Go modules (cached)")
    build.add_argument("--force", action="store_true")
    build.set_defaults(func=_cmd_cluster_build)
    up = csub.add_parser("up", help="start a local region in the background")
    up.add_argument("--name", required=True)
    up.add_argument("--nodes", type=int, default=2)
    up.add_argument("--no-crds", action="store_true", help="do not install regionshift's CRDs")
    up.add_argument("--traffic-crds", action="store_true",
                    help="also install the Gateway API (standard channel) and DNSEndpoint CRDs, pinned, from their Go modules")
    up.set_defaults(func=_cmd_cluster_up)
    env = csub.add_parser("env", help="print the KUBECONFIG and PATH exports for a local region")
    env.add_argument("--name", required=True)
    env.set_defaults(func=_cmd_cluster_env)
    down = csub.add_parser("down", help="stop a local region")
    down.add_argument("--name", required=True)
    down.set_defaults(func=_cmd_cluster_down)
    lst = csub.add_parser("list", help="list local regions that are up")
    lst.set_defaults(func=_cmd_cluster_list)

    kubectl = sub.add_parser("kubectl", help="the control plane's kubectl: regionshift kubectl [--name R] -- ARGS")
    kubectl.add_argument("--name", help="a local region (default: $KUBECONFIG)")
    kubectl.add_argument("kubectl_args", nargs=argparse.REMAINDER)
    kubectl.set_defaults(func=_cmd_kubectl)

    demo = sub.add_parser("demo", help="a local region with the operator at work on a sample DarkCluster")
    demo.add_argument("--region", default="us-east")
    demo.set_defaults(func=_cmd_demo)

    drill = sub.add_parser("drill", help="three local regions, a regional outage evacuated and failed back, a report")
    drill.add_argument("--services", type=int, default=20, help="sample services per region")
    drill.add_argument("--fault-region", default="us-west")
    drill.add_argument("--fault", choices=["simulator", "cluster"], default="simulator",
                       help="simulator: the region's pods serve nothing; cluster: its pods turn not Ready through kwok")
    drill.add_argument("--sample-seconds", type=int, default=5, help="how often the signal is sampled")
    drill.add_argument("--outage-seconds", type=float, default=60.0, help="how long the region stays down once evacuated")
    drill.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                       help="also run the same fault the old way: dark capacity off, DNS failover and the saviors"
                            " scaled up at the verdict (default: on)")
    drill.add_argument("--start-up-delay", type=float, default=60.0, metavar="SECONDS",
                       help="how long a new pod of a sample service takes to become Ready (kwok's stage delay)")
    drill.add_argument("--report-dir", type=Path, default=Path("drill-report"))
    drill.set_defaults(func=_cmd_drill)

    backtest = sub.add_parser("backtest", help="replay synthetic history with faults; report delays and false alarms")
    backtest.add_argument("--days", type=float, default=28.0, help="days replayed after two weeks of warm-up")
    backtest.add_argument("--seed", type=int, default=7)
    backtest.add_argument("--step-seconds", type=int, default=60)
    backtest.add_argument("--replay", metavar="NAME", help="replay a real series from tests/data instead (nyc-taxi):"
                          " false evacuations outside its labelled windows, each window, its holidays, injected"
                          " 40 %% and 60 %% drops; exits 1 when a target misses")
    backtest.add_argument("--history-days", type=float, default=14.0, help="history the replay's forecast fits")
    backtest.add_argument("--no-calendar", action="store_true", help="replay in UTC without holidays (for comparison)")
    backtest.add_argument("--no-reduced-days", action="store_true",
                          help="keep the region's declared reduced days out of the replay's forecast (for comparison)")
    backtest.set_defaults(func=_cmd_backtest)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``regionshift`` console script."""
    args = _parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
