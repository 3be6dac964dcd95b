"""Benchmark: seconds from `gate: Open` until every dark pod is a ready endpoint.

The gate is the dark pods' labels: opening it is one metadata merge patch per pod that adds
its target's labels, and the endpoint-slice controller then lists the (already Ready) pods.
Closing is timed too, until the Service lists none of them again.

The baseline, run in the same process against the same local region, is what a system
without dark capacity does at failover time: scale a Deployment from zero and wait for the
same number of ready endpoints. kwok starts pods without delay, so the baseline here is the
control plane's best case (no image pull, no application start); a real cold start only
adds to it.

    PYTHONPATH=operator:. python tests/benchmarks/bench_ungate.py [--pods 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from kubernetes import client

from regionshift.local.cluster import LocalCluster
from regionshift.api.crdgen import crd_manifests
from regionshift.runner import OperatorThread


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]}}},
    }


def _service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}


def _ready(discovery: client.DiscoveryV1Api, namespace: str, service: str) -> int:
    slices = discovery.list_namespaced_endpoint_slice(namespace, label_selector=f"kubernetes.io/service-name={service}").items
    return sum(1 for s in slices for e in s.endpoints or [] if e.conditions and e.conditions.ready)


def _wait(check: Any, timeout: float = 120.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError
        time.sleep(0.02)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.pods
    with LocalCluster(name="bench", crds=list(crd_manifests().values()), log=lambda _: None) as cluster, \
            OperatorThread(kubeconfig=cluster.kubeconfig), cluster.api_client() as api:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        custom, discovery = client.CustomObjectsApi(api), client.DiscoveryV1Api(api)
        ns = "bench"
        core.create_namespace({"metadata": {"name": ns}})
        for name, replicas in (("svc", 1), ("cold", 0)):
            apps.create_namespaced_deployment(ns, _deployment(name, replicas))
            core.create_namespaced_service(ns, _service(name))
        custom.create_namespaced_custom_object("regionshift.io", "v1alpha1", ns, "darkclusters", {
            "apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": "svc"},
            "spec": {"targetDeployment": "svc", "replicas": {"fixedReplicas": n, "maxReplicas": n}, "gate": "Closed"}})

        def gate(value: str) -> None:
            custom.patch_namespaced_custom_object("regionshift.io", "v1alpha1", ns, "darkclusters", "svc", {"spec": {"gate": value}})

        def warm() -> bool:
            status = custom.get_namespaced_custom_object("regionshift.io", "v1alpha1", ns, "darkclusters", "svc").get("status", {})
            return status.get("warmReplicas") == n

        _wait(warm)
        _wait(lambda: _ready(discovery, ns, "svc") == 1)
        ungate, close, scale = [], [], []
        for _ in range(args.rounds):
            started = time.monotonic()
            gate("Open")
            _wait(lambda: _ready(discovery, ns, "svc") == n + 1)
            ungate.append(time.monotonic() - started)
            started = time.monotonic()
            gate("Closed")
            _wait(lambda: _ready(discovery, ns, "svc") == 1)
            close.append(time.monotonic() - started)

            started = time.monotonic()
            apps.patch_namespaced_deployment_scale("cold", ns, {"spec": {"replicas": n}})
            _wait(lambda: _ready(discovery, ns, "cold") == n)
            scale.append(time.monotonic() - started)
            apps.patch_namespaced_deployment_scale("cold", ns, {"spec": {"replicas": 0}})
            _wait(lambda: _ready(discovery, ns, "cold") == 0 and not core.list_namespaced_pod(ns, label_selector="app=cold").items)
    u, s = statistics.median(ungate), statistics.median(scale)
    print(f"pods: {n}, rounds: {args.rounds}")
    print(f"ungate (gate open -> {n} ready endpoints): median {u:.2f} s, all {[round(x, 2) for x in ungate]}")
    print(f"close (gate closed -> 1 ready endpoint): median {statistics.median(close):.2f} s, "
          f"all {[round(x, 2) for x in close]}")
    print(f"baseline (scale 0 -> {n}, kwok pods start instantly): median {s:.2f} s, all {[round(x, 2) for x in scale]}")
    print(f"ratio ungate/baseline: {u / s:.2f}")


if __name__ == "__main__":
    main()
