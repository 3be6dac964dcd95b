"""The local control plane itself: several regions at once, kubelet-like readiness gates, clean stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import urllib3
from kubernetes import client

from regionshift.local.cluster import local_clusters
from tests.support.cluster import Kube, eventually

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_two_regions_side_by_side_then_no_process_left() -> None:
    with local_clusters(names=["east", "west"], log=lambda _: None) as clusters:
        east, west = clusters["east"], clusters["west"]
        assert east.server != west.server
        pids = east.pids() + west.pids()
        assert len(pids) == 10
        for cluster in (east, west):
            with cluster.api_client() as api:
                nodes = client.CoreV1Api(api).list_node().items
                assert {n.metadata.labels["topology.kubernetes.io/region"] for n in nodes} == {cluster.name}
        # Each region has its own certificate authority: east's admin is a stranger to west.
        with east.api_client() as api:
            api.configuration.host = west.server
            with pytest.raises(urllib3.exceptions.MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
                client.CoreV1Api(api).list_node(_request_timeout=5)
    assert not [pid for pid in pids if _alive(pid)]


def test_pod_ready_waits_for_every_readiness_gate(kube: Kube) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gated"},
                "spec": {"readinessGates": [{"conditionType": "example.com/one"}, {"conditionType": "example.com/two"}],
                         "containers": [{"name": "c", "image": "registry.example/c:1"}]}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
                "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]}})

    def conditions(name: str) -> dict[str, str]:
        pod = kube.core.read_namespaced_pod(name, kube.namespace)
        return {c.type: c.status for c in pod.status.conditions or []}

    eventually(lambda: conditions("plain").get("Ready") == "True", what="a pod without gates turns Ready")
    eventually(lambda: conditions("gated").get("ContainersReady") == "True", what="gated pod running")
    assert conditions("gated")["Ready"] == "False"

    def set_gate(gate: str, status: str) -> None:
        kube.core.patch_namespaced_pod_status("gated", kube.namespace, {"status": {"conditions": [
            {"type": gate, "status": status, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})

    set_gate("example.com/one", "True")
    eventually(lambda: conditions("gated").get("example.com/one") == "True", what="first gate written")
    assert conditions("gated")["Ready"] == "False", "one of two gates is not enough"
    set_gate("example.com/two", "True")
    eventually(lambda: conditions("gated").get("Ready") == "True", what="Ready once both gates are True")
    set_gate("example.com/one", "False")
    eventually(lambda: conditions("gated").get("Ready") == "False", what="not Ready once a gate is False again")


def test_cluster_cli_up_list_down(tmp_path: Path) -> None:
    env = {**os.environ, "REGIONSHIFT_STATE": str(tmp_path)}
    cli = [sys.executable, "-m", "regionshift.cli", "cluster"]
    up = subprocess.run([*cli, "up", "--name", "cli-region", "--nodes", "1"], env=env, capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stderr
    assert "export KUBECONFIG=" in up.stdout
    state = tmp_path / "clusters" / "cli-region" / "state.json"
    import json

    pids = list(json.loads(state.read_text())["pids"].values())
    assert all(_alive(pid) for pid in pids), "cluster up leaves the region running after it returns"

    # What a user does next, as `cluster up` tells them: its stdout is shell lines (progress
    # goes to stderr), the exports put this control plane's kubectl first on PATH, the CRDs
    # are in, the operator command and the way down are spelled out.
    assert all(line.startswith(("#", "export ")) for line in up.stdout.splitlines() if line), up.stdout
    assert "regionshift.cli run --namespace" in up.stdout and "cluster down --name cli-region" in up.stdout
    shell = subprocess.run(["bash", "-c", up.stdout + "\ncommand -v kubectl && kubectl get crds -o name"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert shell.returncode == 0, shell.stderr
    assert "/controlplane/" in shell.stdout.splitlines()[0], "the control plane's kubectl comes first on PATH"
    assert "darkclusters.regionshift.io" in shell.stdout and "regionfailovers.regionshift.io" in shell.stdout
    crds_dir = Path(__file__).parents[2] / "crds"
    again_crds = subprocess.run(["bash", "-c", up.stdout + f"\nkubectl apply --server-side -f {crds_dir}"],
                                env=env, capture_output=True, text=True, timeout=60)
    assert again_crds.returncode == 0 and "serverside-applied" in again_crds.stdout, again_crds.stderr
    env_lines = subprocess.run([*cli, "env", "--name", "cli-region"], env=env, capture_output=True, text=True, timeout=60)
    assert env_lines.returncode == 0 and env_lines.stdout.splitlines() == [
        line for line in up.stdout.splitlines() if line.startswith("export ")]
    passthrough = subprocess.run([sys.executable, "-m", "regionshift.cli", "kubectl", "--name", "cli-region", "--",
                                  "get", "nodes", "-o", "name"], env=env, capture_output=True, text=True, timeout=60)
    assert passthrough.stdout.strip() == "node/cli-region-node-0", passthrough.stderr
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert "cli-region" in listed.stdout
    again = subprocess.run([*cli, "up", "--name", "cli-region"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "already up" in again.stderr
    down = subprocess.run([*cli, "down", "--name", "cli-region"], env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if _alive(pid)]
    assert not state.exists()


def test_every_component_reports_its_pinned_version() -> None:
    from regionshift.local.cluster import build_control_plane, pins

    binaries, pinned = build_control_plane(log=lambda _: None), pins()

    def version(component: str, *args: str) -> str:
        answer = subprocess.run([str(binaries.path(component)), *args], capture_output=True, text=True, timeout=30)
        return answer.stdout + answer.stderr

    assert pinned.kubernetes in version("kube-apiserver", "--version")
    assert pinned.kubernetes in version("kube-controller-manager", "--version")
    assert pinned.kubernetes in version("kube-scheduler", "--version")
    assert pinned.kubernetes in version("kubectl", "version", "--client")
    assert pinned.etcd.lstrip("v") in version("etcd", "--version")
    assert pinned.kwok in version("kwok", "--version")
    assert pinned.helm in version("helm", "version", "--short")


def test_simulated_start_delays_a_pod(kube: Kube) -> None:
    for name, annotations in (("slow", {"regionshift.io/simulated-start": "4s"}), ("fast", {})):
        kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
                    "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]}})

    def phase(name: str) -> str:
        return kube.core.read_namespaced_pod(name, kube.namespace).status.phase

    eventually(lambda: phase("fast") == "Running", what="the plain pod runs at once")
    assert phase("slow") == "Pending"
    eventually(lambda: phase("slow") == "Running", timeout_seconds=30, what="the slow pod runs after its delay")
