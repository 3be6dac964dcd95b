"""``kubectl regionshift`` against a real API server: the button edits spec.evacuate, status reads a status.

The first tests run in a namespace no operator watches: they write a mid-evacuation status
through the status subresource (what the operator would write) and check what the plugin
shows and what its edits leave in the stored object, including the API server's 409 on a
stale resourceVersion, which is what keeps two concurrent edits of the list from losing one.
The last one has the session operator at work: ``plan`` computes what evacuating the peer,
and the region itself, would do from what the region observes now (its DarkClusters, its
routes, the peer's capacity in Prometheus) and writes nothing; then the plugin pushes the
button, the operator evacuates, and ``status`` shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import re
import sys

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from regionshift.kubectl.button import evacuate_edit
from regionshift.kubectl.main import main
from regionshift.local.cluster import LocalCluster
from tests.support.cluster import Kube, namespace_in
from tests.support.status_fixtures import MID_EVACUATION, SPEC

pytestmark = [pytest.mark.integration]

GROUP, VERSION, PLURAL = "regionshift.io", "v1alpha1", "regionfailovers"


def region_failover(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RegionFailover",
        "metadata": {"name": name},
        "spec": {
            "region": SPEC["region"],
            "peers": SPEC["peers"],
            "signal": {"prometheusUrl": "http://127.0.0.1:9", "query": 'sps{region="{region}"}'},
            "selector": {"matchLabels": {"tier": "web"}},
            "mode": "Manual",
        },
    }


@pytest.fixture
def quiet(kube_cluster: LocalCluster) -> Iterator[Kube]:
    """A namespace no operator watches (the session operator watches ``t-*``): the status stays as written."""
    with namespace_in(kube_cluster, prefix="plugin") as namespaced:
        yield namespaced


def plugin(kube: Kube, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--kubeconfig", str(kube.kubeconfig), "-n", kube.namespace, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_evacuate_then_failback_edit_spec_evacuate(quiet: Kube, capsys: pytest.CaptureFixture[str]) -> None:
    quiet.create_custom(region_failover("streaming"))

    code, out, _ = plugin(quiet, capsys, "evacuate", "us-west")
    assert code == 0
    assert quiet.get_custom(PLURAL, "streaming")["spec"]["evacuate"] == ["us-west"]
    snippet = yaml.safe_load(out[out.index("apiVersion:"):])
    assert snippet["spec"] == {"evacuate": ["us-west"]} and snippet["metadata"]["namespace"] == quiet.namespace
    assert "GitOps users: commit this change instead" in out

    assert plugin(quiet, capsys, "evacuate", "eu-west")[0] == 0
    assert quiet.get_custom(PLURAL, "streaming")["spec"]["evacuate"] == ["us-west", "eu-west"]
    code, _, err = plugin(quiet, capsys, "evacuate", "us-east")
    assert code == 1 and "no region serving" in err

    generation = quiet.get_custom(PLURAL, "streaming")["metadata"]["generation"]
    code, out, _ = plugin(quiet, capsys, "evacuate", "us-west")
    assert code == 0 and "nothing to change" in out
    assert quiet.get_custom(PLURAL, "streaming")["metadata"]["generation"] == generation, "no write when nothing changes"

    assert plugin(quiet, capsys, "failback", "us-west")[0] == 0
    assert quiet.get_custom(PLURAL, "streaming")["spec"]["evacuate"] == ["eu-west"]
    assert plugin(quiet, capsys, "failback", "eu-west")[0] == 0
    assert quiet.get_custom(PLURAL, "streaming")["spec"].get("evacuate", []) == []


def test_a_stale_edit_is_refused_not_lost(quiet: Kube) -> None:
    quiet.create_custom(region_failover("streaming"))
    read = quiet.get_custom(PLURAL, "streaming")
    quiet.patch_custom(PLURAL, "streaming", {"spec": {"evacuate": ["eu-west"]}})  # someone else, in between
    stale = evacuate_edit(obj=read, region="us-west", evacuate=True)
    with pytest.raises(ApiException) as refused:
        quiet.custom.patch_namespaced_custom_object(GROUP, VERSION, quiet.namespace, PLURAL, "streaming", stale.patch,
                                                   _content_type="application/merge-patch+json")
    assert refused.value.status == 409
    assert quiet.get_custom(PLURAL, "streaming")["spec"]["evacuate"] == ["eu-west"]


def test_status_shows_a_domain_mid_evacuation(quiet: Kube, capsys: pytest.CaptureFixture[str]) -> None:
    quiet.create_custom(region_failover("streaming"))
    quiet.custom.patch_namespaced_custom_object_status(GROUP, VERSION, quiet.namespace, PLURAL, "streaming",
                                                      {"status": MID_EVACUATION})
    code, out, _ = plugin(quiet, capsys, "status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"RegionFailover {quiet.namespace}/streaming  region us-east  mode Manual"
                               "  phase Evacuating")
    assert any(line.split()[:5] == ["us-west", "12", "1150", "0.01", "Unhealthy"] for line in lines)
    assert any(line.endswith("CONFLICT") for line in lines)
    assert any(line.startswith("evacuation Evacuating: us-west") for line in lines)

    code, out, _ = plugin(quiet, capsys, "plan", "us-west")  # evacuating already: nothing more to plan
    assert code == 0 and "us-west is Evacuating here already" in out
    assert "unreadable from Prometheus at http://127.0.0.1:9" in out  # said, and counted as the operator would
    code, _, err = plugin(quiet, capsys, "plan", "mars")
    assert code == 1 and "not a region" in err


# The operator at work: the session's operator (in-process, watching t-*) on region east, its
# peer west played by the exporter, as in test_evacuation_modes.py, whose helpers this reuses.
from tests.integration.test_evacuation_modes import (  # noqa: E402
    dark_clusters,
    live,
    play_west,
    prometheus,  # noqa: F401 - fixture  # pyflakes: ignore
    serving_dark_pods,
    shop,  # noqa: F401 - fixture
    versions,
    warm,
)
from tests.integration.test_evacuation_modes import region_failover as manual_region_failover  # noqa: E402
from tests.integration.test_evacuation_modes import status as rf_status  # noqa: E402
from tests.integration.test_evacuation_modes import verdict  # noqa: E402
from tests.support.cluster import eventually  # noqa: E402
from tests.support.prometheus_server import PrometheusServer  # noqa: E402
from tests.support.traffic import traffic_crds  # noqa: E402, F401 - fixture


@pytest.mark.usefixtures("running_operator")
def test_the_plugin_evacuates_a_peer_and_status_shows_it_mid_evacuation(
    shop: Kube, prometheus: PrometheusServer, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:
    play_west(prometheus, "shop", warm=4, ready=0, served_share=1)
    live(prometheus, "manual")
    shop.create_custom(manual_region_failover(prometheus, "manual", mode="Manual"))
    eventually(lambda: warm(shop), timeout_seconds=90, what="warm dark clusters")
    eventually(lambda: verdict(shop, "west") == "Healthy", timeout_seconds=60, what="west Healthy")

    # plan: computed now by the operator's DryRun logic over what east observes (its DarkClusters,
    # its routes, west's capacity from Prometheus), in Manual mode, and nothing written.
    before = versions(shop), shop.get_custom("regionfailovers", "shop")["metadata"]["generation"]
    code, out, _ = plugin(shop, capsys, "plan", "west")
    assert code == 0, out
    print(out, file=sys.stderr)
    lines = out.splitlines()
    assert lines[0].endswith("mode Manual: evacuating west now")
    names = sorted(dc["metadata"]["name"] for dc in dark_clusters(shop))
    assert f"  ungate here: {', '.join(names)}" in lines
    assert "  verdicts: east Healthy, west Healthy" in lines
    assert any(line.startswith("  warm dark replicas: east ") and "west 4" in line for line in lines), lines
    code, out, _ = plugin(shop, capsys, "plan", "east")
    assert code == 0, out
    print(out, file=sys.stderr)
    assert "  ungate here: nothing" in out.splitlines()
    moved = re.search(r"GatewayAPI web: east \d+→0, west \d+→(\d+)", out)
    assert moved is not None and int(moved.group(1)) > 0, out
    assert re.search(r"ExternalDNS web: east \d+→0", out), out
    canary = re.search(r"IngressNginx web: east \d+→0, west \d+→(\d+)", out)
    assert canary is not None and int(canary.group(1)) > 0, out
    assert (versions(shop), shop.get_custom("regionfailovers", "shop")["metadata"]["generation"]) == before
    assert rf_status(shop).get("phase") == "Steady" and serving_dark_pods(shop) == []

    play_west(prometheus, "shop", warm=4, ready=0, served_share=0)
    assert plugin(shop, capsys, "evacuate", "west")[0] == 0
    eventually(lambda: rf_status(shop).get("phase") == "Evacuated", timeout_seconds=90, what="phase Evacuated")
    code, out, _ = plugin(shop, capsys, "status")
    assert code == 0
    lines = out.splitlines()
    assert "mode Manual  phase Evacuated" in lines[0] and "spec.evacuate: west" in lines
    print(out, file=sys.stderr)
    start = lines.index(next(line for line in lines if line.startswith("REGION")))
    rows = {line.split()[0]: line.split() for line in lines[start + 1:start + 3]}
    assert rows["west"][-1] == "Evacuated" and rows["east"][-1] == "Savior"
    assert any(line.startswith("evacuation Evacuated: west (by SpecEvacuate") for line in lines)
    ungated = next(line.split() for line in lines if line.startswith("  ungated"))
    assert ungated[1].startswith("+"), ungated
    assert any(line.startswith("ROUTE") for line in lines)

    live(prometheus, "manual")
    play_west(prometheus, "shop", warm=4, ready=0, served_share=1)
    assert plugin(shop, capsys, "failback", "west")[0] == 0
    eventually(lambda: rf_status(shop).get("phase") == "Steady" and rf_status(shop).get("lastEvacuation"),
               timeout_seconds=120, what="failback done")
    eventually(lambda: serving_dark_pods(shop) == [], timeout_seconds=90, what="east's dark pods gated again")
    code, out, _ = plugin(shop, capsys, "status")
    assert any(line.startswith("last evacuation: west") for line in out.splitlines())
