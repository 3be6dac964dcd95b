"""The external-dns provider against a real kube-apiserver with the real DNSEndpoint CRD (v0.22.0).

No external-dns runs locally: where a test needs its report it writes
``status.observedGeneration`` through the status subresource, as external-dns would.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from regionshift.adapters.traffic import provider_for
from regionshift.adapters.traffic.externaldns import GROUP, ExternalDNSProvider
from regionshift.errors import InvalidWeights, LocalBackendMissing, RouteNotFound, WeightUnparsable
from tests.support.cluster import Kube
from tests.support.traffic import traffic_crds, traffic_kube  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

REGION = "us-east"


def record(region: str, *, weight: str | None, record_type: str = "A", target: str = "192.0.2.1") -> dict[str, Any]:
    properties = [{"name": "aws/evaluate-target-health", "value": "true"}]
    if weight is not None:
        properties.append({"name": "aws/weight", "value": weight})
    return {"dnsName": "shop.example.com", "recordType": record_type, "recordTTL": 30, "targets": [target],
            "setIdentifier": region, "providerSpecific": properties}


def endpoint(name: str, *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "DNSEndpoint", "metadata": {"name": name},
            "spec": {"endpoints": list(endpoints)}}


def get(kube: Kube, name: str = "shop") -> dict[str, Any]:
    return kube.custom.get_namespaced_custom_object(GROUP, "v1alpha1", kube.namespace, "dnsendpoints", name)  # type: ignore[no-any-return]


def create(kube: Kube, body: dict[str, Any]) -> None:
    kube.custom.create_namespaced_custom_object(GROUP, "v1alpha1", kube.namespace, "dnsendpoints", body)


@pytest.fixture
def shop(traffic_kube: Kube) -> tuple[Kube, ExternalDNSProvider]:
    """A DNSEndpoint with this region's A and AAAA records, and a peer's record beside them."""
    kube = traffic_kube
    create(kube, endpoint(
        "shop",
        record(REGION, weight="100"),
        record(REGION, weight="100", record_type="AAAA", target="2001:db8::1"),
        record("us-west", weight="100", target="198.51.100.1"),
    ))
    made = provider_for("ExternalDNS", api=kube.api, namespace=kube.namespace, region=REGION,
                        peers={"us-west": None})
    assert isinstance(made, ExternalDNSProvider)
    return kube, made


def test_only_this_regions_records_change_and_restore_is_exact(shop: tuple[Kube, ExternalDNSProvider]) -> None:
    kube, dns = shop
    before = get(kube)
    recorded = dns.read(route="shop")
    assert recorded.weights == {REGION: 100}

    lowered = dns.apply(route="shop", desired={REGION: 0, "us-west": 100})  # the peer's key is its own business
    assert lowered.written and lowered.weights == {REGION: 0}
    after = get(kube)
    assert [e["providerSpecific"] for e in after["spec"]["endpoints"][:2]] == [
        [{"name": "aws/evaluate-target-health", "value": "true"}, {"name": "aws/weight", "value": "0"}]] * 2
    assert after["spec"]["endpoints"][2] == before["spec"]["endpoints"][2]
    assert not dns.apply(route="shop", desired={REGION: 0}).written

    dns.restore(route="shop", recorded=recorded.weights)
    assert get(kube)["spec"] == before["spec"]


def test_verify_reads_observed_generation(shop: tuple[Kube, ExternalDNSProvider]) -> None:
    kube, dns = shop
    dns.apply(route="shop", desired={REGION: 10})
    unreported = dns.verify(route="shop", desired={REGION: 10})
    assert unreported.holds is None and unreported.reason == "Unreported"
    assert dns.verify(route="shop", desired={REGION: 20}).reason == "Mismatch"
    generation = get(kube)["metadata"]["generation"]

    def observe(value: int) -> None:
        kube.custom.patch_namespaced_custom_object_status(
            GROUP, "v1alpha1", kube.namespace, "dnsendpoints", "shop", {"status": {"observedGeneration": value}})

    observe(generation - 1)
    pending = dns.verify(route="shop", desired={REGION: 10})
    assert (pending.holds, pending.reason) == (False, "Pending")
    observe(generation)
    held = dns.verify(route="shop", desired={REGION: 10})
    assert (held.holds, held.reason) == (True, "ObservedBySource")


def test_a_bad_or_missing_weight_is_reported_never_zero(shop: tuple[Kube, ExternalDNSProvider]) -> None:
    kube, dns = shop
    for name, records in {
        "missing": [record(REGION, weight=None)],
        "words": [record(REGION, weight="ten")],
        "negative": [record(REGION, weight="-5")],
        "fraction": [record(REGION, weight="2.5")],
        "too-big": [record(REGION, weight="256")],
        "disagree": [record(REGION, weight="10"), record(REGION, weight="20", record_type="AAAA", target="2001:db8::1")],
    }.items():
        create(kube, endpoint(name, *records))
        with pytest.raises(WeightUnparsable):
            dns.read(route=name)
        # Setting a weight replaces the bad value (it is not read first as 0).
        version = get(kube, name)["metadata"]["resourceVersion"]
        assert dns.apply(route=name, desired={REGION: 7}).weights == {REGION: 7}
        assert get(kube, name)["metadata"]["resourceVersion"] != version


def test_errors_are_typed_and_nothing_is_written(shop: tuple[Kube, ExternalDNSProvider]) -> None:
    kube, dns = shop
    with pytest.raises(RouteNotFound):
        dns.apply(route="nope", desired={REGION: 1})
    create(kube, endpoint("peers-only", record("us-west", weight="5")))
    version = get(kube, "peers-only")["metadata"]["resourceVersion"]
    with pytest.raises(LocalBackendMissing):
        dns.apply(route="peers-only", desired={REGION: 1})
    assert get(kube, "peers-only")["metadata"]["resourceVersion"] == version
    version = get(kube)["metadata"]["resourceVersion"]
    with pytest.raises(InvalidWeights):
        dns.apply(route="shop", desired={REGION: 300})
    with pytest.raises(InvalidWeights):
        dns.apply(route="shop", desired={"us-west": 1})  # nothing for this region
    assert get(kube)["metadata"]["resourceVersion"] == version


def test_drift_and_a_reapplied_manifest(shop: tuple[Kube, ExternalDNSProvider]) -> None:
    kube, dns = shop
    manifest = copy.deepcopy(get(kube))
    written = {REGION: 0}
    dns.apply(route="shop", desired=written)
    assert dns.drift(route="shop", last_written=written) is None
    manifest = {"apiVersion": manifest["apiVersion"], "kind": "DNSEndpoint", "metadata": {"name": "shop"},
                "spec": manifest["spec"]}
    kube.custom.patch_namespaced_custom_object(
        GROUP, "v1alpha1", kube.namespace, "dnsendpoints", "shop", manifest,
        field_manager="kustomize-controller", force=True, _content_type="application/apply-patch+yaml")
    drift = dns.drift(route="shop", last_written=written)
    assert drift is not None and drift.actual == {REGION: 100}
    assert (drift.writer, drift.reapplied) == ("kustomize-controller", True)
