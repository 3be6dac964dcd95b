"""Benchmark: seconds to shift the weights of N HTTPRoutes (and back), and the API calls it takes.

One local region with the pinned Gateway API CRDs; N user routes, each to its own local
Service, and one peer Service per route. The shift gives every route's local backendRef
weight 0 and the peer's 100 (the peer's backendRef is appended); the restore puts the
recorded weights back. Writes run on a thread pool, as the operator would run them from
kopf's. The API calls are counted from the client side (every HTTP request the providers
make, through ApiClient.call_api), so the figure includes reads.

    PYTHONPATH=operator:. python tests/benchmarks/bench_traffic.py [--routes 100] [--workers 8] [--index]
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client

from regionshift.adapters.traffic import ensure_peer_service
from regionshift.adapters.traffic.gatewayapi import GROUP, GatewayAPIProvider
from regionshift.adapters.traffic.base import conventional_backends
from regionshift.local.cluster import LocalCluster, third_party_crds

REGION, PEER = "us-east", "us-west"


def _route(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1", "kind": "HTTPRoute", "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
             "backendRefs": [{"group": "", "kind": "Service", "name": name, "port": 80, "weight": 1}]}]},
    }


def _counting(api: client.ApiClient) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    original = api.call_api

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        with lock:
            counts[method] += 1
        return original(method, url, *args, **kwargs)

    api.call_api = request  # type: ignore[method-assign]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--index", action="store_true",
                        help="check the Services against one namespace-wide snapshot instead of per route")
    args = parser.parse_args()
    with LocalCluster(name="bench-traffic", crds=third_party_crds(names=("gateway-api",)), log=lambda _: None) as cluster, \
            cluster.api_client() as api:
        api.configuration.connection_pool_maxsize = args.workers
        namespace = "default"
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        names = [f"web-{i:04d}" for i in range(args.routes)]
        for name in names:
            core.create_namespaced_service(namespace, {"metadata": {"name": name},
                                                       "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})
            custom.create_namespaced_custom_object(GROUP, "v1", namespace, "httproutes", _route(name))
            ensure_peer_service(api=api, namespace=namespace, service=f"{name}-{PEER}",
                                gateways={PEER: "10.1.2.3:443"}, port=80)
        gateway = GatewayAPIProvider(api=api, namespace=namespace, region=REGION,
                                     backends=conventional_backends(region=REGION, peers=[PEER]))
        counts = _counting(api)
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            recorded = dict(zip(names, pool.map(lambda n: gateway.read(route=n).weights, names)))
            reads = sum(counts.values())
            counts.clear()
            started = time.monotonic()
            index = gateway.backend_index() if args.index else None
            shifted = list(pool.map(lambda n: gateway.apply(route=n, desired={REGION: 0, PEER: 100}, index=index),
                                    names))
            shift_seconds = time.monotonic() - started
            shift_calls = dict(counts)
            counts.clear()
            started = time.monotonic()
            list(pool.map(lambda n: gateway.restore(route=n, recorded=recorded[n]), names))
            restore_seconds = time.monotonic() - started
            restore_calls = dict(counts)
        assert all(s.written for s in shifted)
        assert all(gateway.read(route=n).weights == {REGION: 1} for n in names)
    print(f"routes {args.routes}, workers {args.workers}, {'one index' if args.index else 'per-route checks'}")
    print(f"record (read every route): {reads} GETs")
    print(f"shift: {shift_seconds:.2f} s, API calls {shift_calls}")
    print(f"restore: {restore_seconds:.2f} s, API calls {restore_calls}")


if __name__ == "__main__":
    main()
