"""The chart and manifests/ in a local region: they apply, install and uninstall as documented.

kwok nodes run no containers, so these tests check the objects the API server accepts and
keeps, not a running operator (the operator under the chart's ServiceAccount is in
test_rbac.py). The Prometheus Operator's CRDs are stand-ins (tests.support.chart).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from regionshift.local.cluster import LocalCluster, install_crds
from regionshift.local.manifests import NAMESPACE, example_regions
from tests.support.chart import CHART, MONITORING_CRDS, ROOT, helm, kubectl
from tests.support.region_traffic import exists
from tests.support.cluster import eventually, namespace_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def example_cluster(kube_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The session region with the stand-in monitoring CRDs and the example regions' namespaces."""
    names = {NAMESPACE}
    for values in example_regions(CHART).values():
        names.update(yaml.safe_load(values.read_text()).get("watchNamespaces") or [])
    with kube_cluster.api_client() as api:
        install_crds(api=api, manifests=MONITORING_CRDS)
        core = client.CoreV1Api(api)
        existing = {ns.metadata.name for ns in core.list_namespace().items}
        for name in sorted(names - existing):
            core.create_namespace({"metadata": {"name": name}})
        try:
            yield kube_cluster
        finally:
            for name in sorted(names - existing):
                core.delete_namespace(name)


def objects(text: str) -> list[dict]:  # type: ignore[type-arg]
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize("region", sorted(example_regions(CHART)))
def test_each_example_region_renders_and_the_api_server_accepts_it(example_cluster: LocalCluster, region: str) -> None:
    kubeconfig = example_cluster.kubeconfig
    values = example_regions(CHART)[region]
    helm("lint", str(CHART), "--strict", "-f", str(values), kubeconfig=kubeconfig)
    rendered = helm("template", "regionshift", str(CHART), "-n", NAMESPACE, "--include-crds", "-f", str(values),
                    kubeconfig=kubeconfig).stdout
    kinds = {doc["kind"] for doc in objects(rendered)}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "PodDisruptionBudget"} <= kinds
    applied = kubectl("apply", "--dry-run=server", "--server-side", "-f", "-", kubeconfig=kubeconfig,
                      stdin=rendered).stdout
    assert "(server dry run)" in applied


@pytest.mark.parametrize("region", sorted(example_regions(CHART)))
def test_each_overlay_applies_server_side_and_deletes(example_cluster: LocalCluster, region: str) -> None:
    kubeconfig = example_cluster.kubeconfig
    overlay = ROOT / "manifests" / "overlays" / region
    built = kubectl("kustomize", str(overlay), kubeconfig=kubeconfig).stdout
    kubectl("apply", "--server-side", "--field-manager=gitops", "-f", "-", kubeconfig=kubeconfig, stdin=built)
    own = (overlay / "regionshift.yaml").read_text()  # the operator's objects; the base's CRDs and namespace stay
    try:
        live = yaml.safe_load(kubectl("get", "-f", "-", "-o", "yaml", "--show-managed-fields", kubeconfig=kubeconfig,
                                      stdin=own).stdout)
        assert len(live["items"]) == len(objects(own))
        assert {item["metadata"]["labels"]["regionshift.io/region"] for item in live["items"]} == {region}
        assert all(any(m["manager"] == "gitops" and m["operation"] == "Apply" for m in item["metadata"]["managedFields"])
                   for item in live["items"])  # applied server-side, by the field manager a GitOps tool would use
    finally:
        kubectl("delete", "-f", "-", "--wait=false", kubeconfig=kubeconfig, stdin=own)


@pytest.mark.parametrize("scope", ["namespaced", "cluster-wide"])
def test_helm_install_creates_the_objects_and_uninstall_leaves_the_crds_and_the_users_resources(
    kube_cluster: LocalCluster, tmp_path: Path, scope: str,
) -> None:
    kubeconfig = kube_cluster.kubeconfig
    with namespace_in(kube_cluster, prefix="chart") as release, namespace_in(kube_cluster, prefix="shop") as shop:
        release_name = f"rs-{uuid.uuid4().hex[:6]}"
        values = {"region": "east", "prometheus": {"url": "http://prometheus:9090", "tokenSecret": "prom-token"},
                  "providers": {"gatewayAPI": True, "ingressNginx": True, "externalDNS": True},
                  "watchNamespaces": [shop.namespace] if scope == "namespaced" else []}
        (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
        installed = helm("install", release_name, str(CHART), "-n", release.namespace, "-f",
                         str(tmp_path / "values.yaml"), kubeconfig=kubeconfig).stdout
        assert "region: east" in installed and "bearerTokenSecret: prom-token" in installed  # NOTES.txt
        fullname = f"{release_name}-regionshift"
        rbac = client.RbacAuthorizationV1Api(release.api)
        ns = release.namespace
        reads = {
            "Deployment": lambda: release.apps.read_namespaced_deployment(fullname, ns),
            "ServiceAccount": lambda: release.core.read_namespaced_service_account(fullname, ns),
            "Service": lambda: release.core.read_namespaced_service(f"{fullname}-metrics", ns),
            "PodDisruptionBudget": lambda: client.PolicyV1Api(release.api).read_namespaced_pod_disruption_budget(
                fullname, ns),
        }
        if scope == "namespaced":
            reads["Role"] = lambda: rbac.read_namespaced_role(fullname, shop.namespace)
            reads["RoleBinding"] = lambda: rbac.read_namespaced_role_binding(fullname, shop.namespace)
        else:
            reads["ClusterRole"] = lambda: rbac.read_cluster_role(f"{fullname}-{ns}")
            reads["ClusterRoleBinding"] = lambda: rbac.read_cluster_role_binding(f"{fullname}-{ns}")
        assert [kind for kind, read in reads.items() if not exists(read)] == []
        eventually(lambda: release.pods("app.kubernetes.io/instance=" + release_name), timeout_seconds=60,
                   what="the operator's pod (kwok runs no container: the object only)")

        shop.create_custom({"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": "web"},
                            "spec": {"targetDeployment": "web", "replicas": {"source": "Fixed", "fixedReplicas": 0}}})
        helm("uninstall", release_name, "-n", release.namespace, "--wait", "--timeout=60s", kubeconfig=kubeconfig)
        eventually(lambda: [kind for kind, read in reads.items() if exists(read)] == [], timeout_seconds=60,
                   what="every object of the release gone")
        extensions = client.ApiextensionsV1Api(release.api)
        for crd in ("regionfailovers.regionshift.io", "darkclusters.regionshift.io"):
            assert exists(lambda crd=crd: extensions.read_custom_resource_definition(crd)), f"{crd} stays"
        assert shop.get_custom("darkclusters", "web")["spec"]["targetDeployment"] == "web"  # the user's stays
