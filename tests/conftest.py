"""Fixtures shared by the whole suite (the real control plane, the operator, Prometheus)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from regionshift.local.cluster import LocalCluster
from regionshift.runner import OperatorThread
from tests.support.cluster import kube, kube_cluster
from tests.support.prometheus_server import prometheus_server

__all__ = ["kube", "kube_cluster", "prometheus_server", "running_operator"]


# The operator's own INFO lines (a routine 409, a retry, a watch restarted) are captured too,
# so that a failing test shows what the operator did meanwhile; kopf's stay at WARNING.
logging.getLogger("regionshift").setLevel(logging.INFO)


@pytest.fixture(scope="session")
def running_operator(kube_cluster: LocalCluster) -> Iterator[OperatorThread]:
    """The regionshift operator, in-process, watching the test namespaces (``t-*``)."""
    with OperatorThread(kubeconfig=kube_cluster.kubeconfig, namespaces=["t-*"]) as running:
        yield running
