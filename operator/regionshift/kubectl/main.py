"""``kubectl-regionshift``: the plugin's arguments, kubeconfig and API calls.

    kubectl regionshift status [NAME]            each region's signal, verdict, guard, phase, weights, timeline
    kubectl regionshift plan REGION [--name N] [--prometheus-url U]
                                                 what evacuating REGION would do here now (the DryRun logic)
    kubectl regionshift evacuate REGION [--name N]   add REGION to spec.evacuate
    kubectl regionshift failback REGION [--name N]   take REGION out of spec.evacuate

``-n/--namespace``, ``--kubeconfig`` and ``--context`` mean what they mean to kubectl (kubectl
passes none of its own flags to a plugin, so the plugin reads them itself). Each region's
operator acts on its own cluster's RegionFailover: to evacuate a region, press the button in
every region of the domain (one ``--context`` each), or commit the change in Git.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from regionshift.api.models import API_GROUP, API_VERSION
from regionshift.api.models import RegionFailoverSpec, RegionFailoverStatus
from regionshift.kubectl.button import ButtonError, evacuate_edit, gitops_snippet
from regionshift.kubectl.live import observe
from regionshift.kubectl.plan import PlanError, plan_now
from regionshift.kubectl.render import render_plan, render_status

__all__ = ["main", "set_evacuate"]

PLURAL = "regionfailovers"
CONFLICT_RETRIES = 5
"""Times a refused (409) edit is read and recomputed before the command gives up."""


def _api(*, kubeconfig: Path | None, context: str | None) -> tuple[client.ApiClient, str]:
    """An API client for the kubeconfig and context, and the context's namespace (``default``)."""
    path = str(kubeconfig) if kubeconfig is not None else None
    api = config.new_client_from_config(config_file=path, context=context)
    namespace = "default"
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c["name"] == context), active) if context else active
        namespace = (chosen or {}).get("context", {}).get("namespace") or namespace
    except config.ConfigException:
        pass
    return api, namespace


def _custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def _choose(api: client.ApiClient, *, namespace: str, name: str | None) -> dict[str, Any]:
    """The RegionFailover ``name``, or the only one in ``namespace``."""
    custom = _custom(api)
    if name:
        return custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name)  # type: ignore[no-any-return]
    items = custom.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL)["items"]
    if len(items) != 1:
        names = ", ".join(item["metadata"]["name"] for item in items) or "none"
        raise ButtonError(f"{len(items)} RegionFailovers in namespace {namespace} ({names}): name one with --name")
    return items[0]  # type: ignore[no-any-return]


def set_evacuate(api: client.ApiClient, *, namespace: str, name: str | None, region: str,
                 evacuate: bool) -> tuple[dict[str, Any], list[str], bool]:
    """Add ``region`` to (or take it out of) ``spec.evacuate``: (the object, the list now, whether it changed).

    The merge patch carries the resourceVersion it was computed from; on 409 Conflict the
    object is read again and the edit recomputed, so a concurrent edit is never lost.
    """
    custom = _custom(api)
    for _ in range(CONFLICT_RETRIES):
        obj = _choose(api, namespace=namespace, name=name)
        edit = evacuate_edit(obj=obj, region=region, evacuate=evacuate)
        if edit.patch is None:
            return obj, edit.after, False
        try:
            patched = custom.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, obj["metadata"]["name"], edit.patch,
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status == 409:
                continue
            raise
        return patched, edit.after, True
    raise ButtonError(f"the RegionFailover kept changing under the edit ({CONFLICT_RETRIES} conflicts); try again")


def _cmd_status(api: client.ApiClient, args: argparse.Namespace, namespace: str) -> int:
    custom = _custom(api)
    if args.name:
        items = [custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, args.name)]
    else:
        items = custom.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL)["items"]
    if not items:
        print(f"No RegionFailover in namespace {namespace}.")
        return 0
    now = dt.datetime.now(dt.timezone.utc)
    print("\n".join(render_status(rf=item, now=now) for item in items), end="")
    return 0


def _cmd_plan(api: client.ApiClient, args: argparse.Namespace, namespace: str) -> int:
    """Observe now, run the operator's DryRun step with ``evacuate: [REGION]``, print the plan; write nothing."""
    rf = _choose(api, namespace=namespace, name=args.name)
    spec = RegionFailoverSpec.model_validate(rf["spec"])
    status = RegionFailoverStatus.model_validate(rf.get("status") or {})
    domain = [spec.region, *(peer.name for peer in spec.peers)]
    if args.region not in domain:  # before reading anything else
        raise PlanError(f"{args.region!r} is not a region of RegionFailover {rf['metadata']['name']}"
                        f" (regions: {', '.join(domain)})")
    now = dt.datetime.now(dt.timezone.utc)
    live = observe(api, rf=rf, now=now, prometheus_url=args.prometheus_url)
    computed = plan_now(spec=spec, status=status, region=args.region, observations=live.observations, now=now)
    print(render_plan(rf=rf, computed=computed, problems=live.problems, prometheus_url=live.prometheus_url), end="")
    return 0


def _cmd_button(api: client.ApiClient, args: argparse.Namespace, namespace: str) -> int:
    evacuate = args.command == "evacuate"
    obj, after, changed = set_evacuate(api, namespace=namespace, name=args.name, region=args.region,
                                       evacuate=evacuate)
    name = obj["metadata"]["name"]
    verb = "added to" if evacuate else "taken out of"
    if changed:
        print(f"{args.region} {verb} spec.evacuate of RegionFailover {namespace}/{name}: evacuate: [{', '.join(after)}]")
    else:
        print(f"{args.region} already {'in' if evacuate else 'not in'} spec.evacuate of RegionFailover"
              f" {namespace}/{name}: nothing to change")
    print("Every region's operator acts on its own cluster's RegionFailover: do the same in every region of the domain.")
    print("GitOps users: commit this change instead (a sync would undo an edit made here):\n")
    print(gitops_snippet(name=name, namespace=namespace, evacuate=after))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl regionshift", description="Drive and watch regionshift RegionFailovers.")
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="each region's signal, verdict, guard, phase, weights and timeline")
    status.add_argument("name", nargs="?", help="one RegionFailover (default: every one in the namespace)")
    for command, text in (("plan", "what evacuating REGION would do here now (the operator's DryRun logic, nothing written)"),
                          ("evacuate", "add REGION to spec.evacuate (push the button)"),
                          ("failback", "take REGION out of spec.evacuate (start its failback)")):
        cmd = sub.add_parser(command, help=text)
        cmd.add_argument("region", metavar="REGION")
        cmd.add_argument("--name", help="the RegionFailover (default: the only one in the namespace)")
        if command == "plan":
            cmd.add_argument("--prometheus-url", help="read the peers' dark capacity here instead of at"
                             " spec.signal.prometheusUrl (e.g. http://127.0.0.1:9090 through kubectl port-forward)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kubectl-regionshift``."""
    args = _parser().parse_args(argv)
    try:
        api, namespace = _api(kubeconfig=args.kubeconfig, context=args.context)
    except config.ConfigException as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    namespace = args.namespace or namespace
    commands = {"status": _cmd_status, "plan": _cmd_plan, "evacuate": _cmd_button, "failback": _cmd_button}
    try:
        with api:
            return commands[args.command](api, args, namespace)
    except (ButtonError, PlanError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ApiException as exc:
        print(f"error: {exc.status} {exc.reason}: {exc.body}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
