"""`regionshift run` as its own process: reconciles, serves /metrics, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from regionshift.local.cluster import LocalCluster, free_port
from tests.integration.test_dark_cluster import APP, dark_cluster
from tests.support.cluster import eventually, namespace_in

pytestmark = pytest.mark.integration


def test_run_reconciles_serves_metrics_and_stops_on_sigterm(kube_cluster: LocalCluster) -> None:
    port = free_port()
    with namespace_in(kube_cluster, prefix="cmd") as kube:
        proc = subprocess.Popen(
            [sys.executable, "-m", "regionshift.cli", "run", f"--kubeconfig={kube_cluster.kubeconfig}",
             f"--namespace={kube.namespace}", f"--metrics-port={port}"],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            kube.apply(APP)
            kube.apply(dark_cluster(replicas=1))
            eventually(lambda: kube.deployment("api-dark"), timeout_seconds=60, what="shadow created by the process")

            def metrics() -> str:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text

            text = eventually(lambda: 'regionshift_reconciliations_total{kind="DarkCluster",outcome="Reconciled"}'
                              in (m := metrics()) and m, what="reconciliations counted")
            assert 'regionshift_shadow_writes_total{action="create"} 1.0' in text
            assert 'regionshift_dark_replicas{darkcluster="api"' in text
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output[-2000:]
