"""Sample objects the integration tests share: a Deployment and the Service in front of it."""

from __future__ import annotations

from typing import Any

__all__ = ["APP", "dark_cluster"]

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, labels: {app: api}}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: registry.example/api:1}]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{port: 80}]
"""
"""A Deployment ``api`` (2 replicas, label ``app: api``) and a Service ``api`` selecting its pods."""


def dark_cluster(*, replicas: int, gate: str = "Closed") -> dict[str, Any]:
    """A DarkCluster ``api`` shadowing the Deployment of :data:`APP` with a fixed number of dark replicas."""
    return {
        "apiVersion": "regionshift.io/v1alpha1",
        "kind": "DarkCluster",
        "metadata": {"name": "api"},
        "spec": {
            "targetDeployment": "api",
            "replicas": {"source": "Fixed", "fixedReplicas": replicas, "minReplicas": 0, "maxReplicas": 50},
            "gate": gate,
        },
    }
