"""`kubectl get rf` tells the story: the real API server's table for a RegionFailover.

The printer columns are JSONPaths that the API server evaluates itself (client-go's
JSONPath, in the CRD's table convertor), so a column that reads a list element or a field
the schema prunes can only be checked against a real kube-apiserver. No operator runs: the
test writes the status through the status subresource.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.cluster import Kube

pytestmark = [pytest.mark.integration]

GROUP, VERSION, PLURAL = "regionshift.io", "v1alpha1", "regionfailovers"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def region_failover(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RegionFailover",
        "metadata": {"name": name},
        "spec": {
            "region": "us-east",
            "peers": [{"name": "us-west"}, {"name": "eu-west"}],
            "signal": {"prometheusUrl": "http://127.0.0.1:9", "query": 'sps{region="{region}"}'},
            "selector": {"matchLabels": {"tier": "web"}},
            "mode": "Automatic",
        },
    }


def table_row(kube: Kube, name: str) -> dict[str, Any]:
    """The table row the API server serves for ``kubectl get rf NAME -o wide``, by column name."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{kube.namespace}/{PLURAL}/{name}"
    method, url, headers, _, _ = kube.api.param_serialize(
        method="GET", resource_path=path, header_params={"Accept": TABLE}, auth_settings=["BearerToken"]
    )
    response = kube.api.call_api(method, url, header_params=headers)
    data = json.loads(response.read())
    names = [c["name"] for c in data["columnDefinitions"]]
    return dict(zip(names, data["rows"][0]["cells"], strict=True))


def transition(region: str, before: str, after: str, reason: str, at: str) -> dict[str, str]:
    return {"region": region, "fromPhase": before, "toPhase": after, "reason": reason, "actor": "Verdict", "at": at}


def test_columns_show_the_phase_the_regions_evacuated_and_the_last_reason(kube: Kube) -> None:
    kube.create_custom(region_failover("streaming"))
    fresh = table_row(kube, "streaming")
    assert fresh["Mode"] == "Automatic"
    assert fresh["Evacuated"] is None and fresh["Reason"] is None, "nothing yet, and an empty history is no error"

    kube.custom.patch_namespaced_custom_object_status(GROUP, VERSION, kube.namespace, PLURAL, "streaming", {
        "status": {
            "phase": "FailingBack",
            "evacuatedRegions": "eu-west (FailingBack 30%), us-west",
            "unhealthy": ["us-west"],
            "history": [
                transition("us-west", "Steady", "Evacuating", "verdict Unhealthy", "2026-11-01T12:00:00Z"),
                transition("eu-west", "Evacuated", "FailingBack", "cool-down over; step 1 at 10%",
                           "2026-11-01T12:10:00Z"),
            ],
            "conditions": [{"type": "Detecting", "status": "True", "reason": "SignalRead", "message": "",
                            "lastTransitionTime": "2026-11-01T12:00:00Z"}],
        }
    })
    row = table_row(kube, "streaming")
    assert row["Phase"] == "FailingBack"
    assert row["Evacuated"] == "eu-west (FailingBack 30%), us-west"
    assert row["Reason"] == "cool-down over; step 1 at 10%", "the last transition's reason, not the first"
    assert row["Detecting"] == "True" and row["Detection"] == "SignalRead"
