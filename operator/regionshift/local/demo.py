"""``regionshift demo``: one local region with the operator at work, end to end.

Starts a local region (a real control plane on loopback, kwok nodes), installs the CRDs,
runs the operator in-process, applies a sample service and a DarkCluster for it, shows the
warm, gated dark pods staying out of the Service's endpoints, opens the gate and measures
how long the endpoints controller takes to add them, closes it again and stops, leaving no
process behind. A later issue grows this into the multi-region drill.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from regionshift.api.crdgen import crd_manifests
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL
from regionshift.local.cluster import LocalCluster
from regionshift.runner import OperatorThread

__all__ = ["run_demo"]

SAMPLES = Path(__file__).parent / "samples" / "darkcluster-demo.yaml"
NAMESPACE = "demo"


def _until(check: Callable[[], Any], *, timeout_seconds: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        answer = check()
        if answer:
            return answer
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not happen in {timeout_seconds} s")


def run_demo(*, region: str) -> int:
    """Run the demo; returns the process exit code."""
    from kubernetes import client, utils

    with LocalCluster(name=region, crds=list(crd_manifests().values())) as cluster:
        assert cluster.binaries is not None
        kubectl = [str(cluster.binaries.path("kubectl")), f"--kubeconfig={cluster.kubeconfig}", "-n", NAMESPACE]

        def show(*args: str) -> None:
            print(f"\n$ kubectl {' '.join(args)}", flush=True)
            subprocess.run([*kubectl, *args], check=False)

        with OperatorThread(kubeconfig=cluster.kubeconfig), cluster.api_client() as api:
            core, custom, discovery = client.CoreV1Api(api), client.CustomObjectsApi(api), client.DiscoveryV1Api(api)
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            docs = list(yaml.safe_load_all(SAMPLES.read_text()))
            for doc in docs:
                if doc["kind"] == "DarkCluster":
                    custom.create_namespaced_custom_object("regionshift.io", "v1alpha1", NAMESPACE, "darkclusters", doc)
                else:
                    utils.create_from_dict(api, doc, namespace=NAMESPACE)
            dark = next(d for d in docs if d["kind"] == "DarkCluster")
            name, wanted = dark["metadata"]["name"], dark["spec"]["replicas"]["fixedReplicas"]

            def status() -> dict[str, Any]:
                body = custom.get_namespaced_custom_object("regionshift.io", "v1alpha1", NAMESPACE, "darkclusters", name)
                return body.get("status") or {}

            def ready_endpoints() -> int:
                slices = discovery.list_namespaced_endpoint_slice(
                    NAMESPACE, label_selector="kubernetes.io/service-name=api"
                ).items
                return sum(1 for s in slices for e in s.endpoints or [] if e.conditions and e.conditions.ready)

            print(f"\nregion {region}: waiting for {wanted} warm, gated dark replicas ...", flush=True)
            _until(lambda: status().get("warmReplicas") == wanted, timeout_seconds=60, what="dark pods warm")
            main_ready = _until(lambda: ready_endpoints() or None, timeout_seconds=30, what="main pods ready")
            show("get", "darkclusters,deployments")
            show("get", "pods", "-L", f"app,{DARK_CLUSTER_LABEL}")
            print(f"\nService api has {ready_endpoints()} ready endpoints: the {wanted} dark pods are warm and gated"
                  " (Ready, but without the label app=api that the Service selects).")

            print("\nopening the gate (spec.gate: Open) ...", flush=True)
            started = time.monotonic()
            custom.patch_namespaced_custom_object(
                "regionshift.io", "v1alpha1", NAMESPACE, "darkclusters", name, {"spec": {"gate": "Open"}}
            )
            _until(lambda: ready_endpoints() == main_ready + wanted, timeout_seconds=30, what="dark pods in endpoints")
            ungated = time.monotonic() - started
            _until(lambda: status().get("readyReplicas") == wanted, timeout_seconds=30, what="status counts them")
            show("get", "darkclusters")
            show("get", "pods", "-L", f"app,{DARK_CLUSTER_LABEL}")
            print(f"\nungated: {wanted} dark pods joined Service api's endpoints in {ungated:.2f} s, no restart.")

            custom.patch_namespaced_custom_object(
                "regionshift.io", "v1alpha1", NAMESPACE, "darkclusters", name, {"spec": {"gate": "Closed"}}
            )
            _until(lambda: ready_endpoints() == main_ready, timeout_seconds=30, what="dark pods out of endpoints")
            _until(lambda: status().get("readyReplicas") == 0, timeout_seconds=30, what="status counts none serving")
            show("get", "darkclusters")
            show("describe", "darkcluster", name)
            print(f"\ngate closed again: Service api back to {main_ready} ready endpoints. Stopping region {region}.")
    return 0
