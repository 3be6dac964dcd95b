"""The Helm chart in a local region: render it, run helm and kubectl, act as its ServiceAccount.

* :func:`helm` / :func:`kubectl`: the control plane's own binaries against a kubeconfig;
  both return the finished process, and fail the test with its output when asked to check.
* :func:`render_chart`: ``helm template`` of ``charts/regionshift`` with values, as objects.
* :func:`service_account_kubeconfig`: a kubeconfig holding a token of a ServiceAccount, got
  through the TokenRequest API as a kubelet gets one for a pod, so a ``regionshift run``
  started with it has exactly the permissions the chart gives its ServiceAccount.
* :data:`MONITORING_CRDS`: stand-ins of the Prometheus Operator's ServiceMonitor and
  PrometheusRule CRDs (their names and kinds, a schema that keeps any field), so the chart's
  opt-in objects can be applied to a region without the Prometheus Operator; they check
  nothing of the objects' content.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from regionshift.local.cluster import LocalCluster, build_control_plane

__all__ = ["CHART", "MONITORING_CRDS", "ROOT", "helm", "kubectl", "render_chart", "service_account_kubeconfig"]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "regionshift"


def _run(binary: str, args: Sequence[str], *, kubeconfig: Path, stdin: str | None, check: bool) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(build_control_plane().path(binary)), f"--kubeconfig={kubeconfig}", *args],
                          input=stdin, capture_output=True, text=True, timeout=180)
    if check and done.returncode != 0:
        pytest.fail(f"{binary} {' '.join(args)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def helm(*args: str, kubeconfig: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The control plane's helm against ``kubeconfig``."""
    return _run("helm", args, kubeconfig=kubeconfig, stdin=None, check=check)


def kubectl(*args: str, kubeconfig: Path, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The control plane's kubectl against ``kubeconfig`` (``stdin`` for ``-f -``)."""
    return _run("kubectl", args, kubeconfig=kubeconfig, stdin=stdin, check=check)


def render_chart(*, values: Mapping[str, Any], namespace: str, release: str = "regionshift",
                 kubeconfig: Path) -> list[dict[str, Any]]:
    """``helm template`` of the chart with ``values`` (CRDs left out), as a list of objects."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--skip-crds", "--values", "-"]
    done = subprocess.run([str(build_control_plane().path("helm")), f"--kubeconfig={kubeconfig}", *args],
                          input=yaml.safe_dump(dict(values)), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"helm template failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def service_account_kubeconfig(cluster: LocalCluster, *, namespace: str, name: str, path: Path,
                               expiration_seconds: int = 3600) -> Path:
    """Write a kubeconfig at ``path`` that authenticates as the ServiceAccount (a TokenRequest token)."""
    with cluster.api_client() as api:
        answer = client.CoreV1Api(api).create_namespaced_service_account_token(
            name, namespace, {"spec": {"expirationSeconds": expiration_seconds}})
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    user = f"system:serviceaccount:{namespace}:{name}"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster.name, "cluster": server}],
        "users": [{"name": user, "user": {"token": answer.status.token}}],
        "contexts": [{"name": cluster.name, "context": {"cluster": cluster.name, "user": user, "namespace": namespace}}],
        "current-context": cluster.name,
    }))
    path.chmod(0o600)
    return path


def _stand_in_crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com", "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }


MONITORING_CRDS = [_stand_in_crd("ServiceMonitor", "servicemonitors"), _stand_in_crd("PrometheusRule", "prometheusrules")]
"""Stand-ins of the Prometheus Operator's CRDs: right names and kinds, any content accepted."""
