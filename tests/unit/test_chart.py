"""charts/regionshift and manifests/ without a cluster: what helm renders, and that nothing drifts.

The chart's CRDs are a copy of crds/ (generated from the models), and manifests/ is the chart
rendered by ``regionshift manifests``: both are checked byte for byte here, so a change of the
models or of the chart that is not carried over fails the suite. ``helm`` is the local control
plane's own (its cached build). What the rendered objects do in a cluster is in
tests/integration/test_chart_on_a_region.py and test_rbac.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from regionshift.cli import _parser
from regionshift.local.cluster import build_control_plane
from regionshift.local.manifests import check_manifests, example_regions, render_manifests

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "regionshift"


@pytest.fixture(scope="module")
def helm() -> Path:
    return build_control_plane().path("helm")


def template(helm: Path, *values: str, files: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    args = [str(helm), "template", "rs", str(CHART), "-n", "ops", "--skip-crds"]
    for f in files:
        args += ["-f", str(f)]
    for v in values:
        args += ["--set", v]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_the_charts_crds_are_the_generated_ones() -> None:
    generated = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == generated
    for name in generated:
        assert (CHART / "crds" / name).read_text() == (ROOT / "crds" / name).read_text(), (
            f"charts/regionshift/crds/{name} differs from crds/{name}: cp crds/*.yaml charts/regionshift/crds/")


def test_manifests_are_the_chart_rendered(helm: Path) -> None:
    stale = check_manifests(files=render_manifests(chart=CHART, helm=helm), output_dir=ROOT / "manifests")
    assert stale == [], f"manifests/ drifted from the chart ({stale}): run `regionshift manifests`"


def test_every_example_region_lints(helm: Path) -> None:
    assert set(example_regions(CHART)) >= {"east", "west"}
    for region, values in example_regions(CHART).items():
        done = subprocess.run([str(helm), "lint", str(CHART), "-f", str(values), "--strict"],
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{region}: {done.stdout}{done.stderr}"


def test_without_a_region_the_chart_refuses_to_render(helm: Path) -> None:
    done = subprocess.run([str(helm), "template", "rs", str(CHART)], capture_output=True, text=True)
    assert done.returncode != 0 and "region" in done.stderr


def test_two_replicas_are_refused_one_operator_per_region(helm: Path) -> None:
    done = subprocess.run([str(helm), "template", "rs", str(CHART), "--set", "region=east", "--set", "replicas=2"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "replicas" in done.stderr


def test_watched_namespaces_get_a_role_each_and_nothing_cluster_wide(helm: Path) -> None:
    docs = template(helm, "region=east", "watchNamespaces={shop,streaming}")
    assert of_kind(docs, "ClusterRole") == [] and of_kind(docs, "ClusterRoleBinding") == []
    roles = {r["metadata"]["namespace"]: r for r in of_kind(docs, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(docs, "RoleBinding")}
    assert set(roles) == set(bindings) == {"shop", "streaming"}
    for binding in bindings.values():
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rs-regionshift", "namespace": "ops"}]
    args = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=shop" in args and "--namespace=streaming" in args


def test_every_namespace_gets_one_cluster_role_with_the_same_rules(helm: Path) -> None:
    namespaced = of_kind(template(helm, "region=east", "watchNamespaces={shop}"), "Role")[0]["rules"]
    docs = template(helm, "region=east")
    assert of_kind(docs, "Role") == []
    (cluster_role,) = of_kind(docs, "ClusterRole")
    assert cluster_role["rules"] == namespaced
    args = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--namespace")]


def resources(rules: list[dict[str, Any]]) -> set[str]:
    return {f"{g}/{r}" if g else r for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}


def test_each_provider_brings_its_rules_and_no_more(helm: Path) -> None:
    off = "providers.gatewayAPI=false,providers.ingressNginx=false,providers.externalDNS=false"
    core = resources(of_kind(template(helm, "region=east", off), "ClusterRole")[0]["rules"])
    assert not core & {"services", "discovery.k8s.io/endpointslices", "gateway.networking.k8s.io/httproutes",
                       "networking.k8s.io/ingresses", "externaldns.k8s.io/dnsendpoints", "secrets"}
    for provider, extra in [
        ("gatewayAPI", {"services", "discovery.k8s.io/endpointslices", "gateway.networking.k8s.io/httproutes"}),
        ("ingressNginx", {"services", "discovery.k8s.io/endpointslices", "networking.k8s.io/ingresses"}),
        ("externalDNS", {"externaldns.k8s.io/dnsendpoints"}),
    ]:
        rules = of_kind(template(helm, "region=east", off, f"providers.{provider}=true"), "ClusterRole")[0]["rules"]
        assert resources(rules) - core == extra, provider


def test_the_token_secret_is_the_one_secret_the_operator_may_read(helm: Path) -> None:
    rules = of_kind(template(helm, "region=east", "prometheus.tokenSecret=prom-token"), "ClusterRole")[0]["rules"]
    (secrets,) = [r for r in rules if "secrets" in r["resources"]]
    assert secrets == {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["prom-token"], "verbs": ["get"]}
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)


def test_the_deployment_runs_the_operator_with_its_probes(helm: Path) -> None:
    docs = template(helm, files=(example_regions(CHART)["east"],))
    (deployment,) = of_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = _parser().parse_args(container["args"])  # what `regionshift run` makes of them
    assert args.command == "run" and args.namespace == ["shop", "streaming"]
    assert args.metrics_address == "0.0.0.0" and args.liveness == "http://0.0.0.0:8081/healthz"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert container["image"] == "regionshift:0.1.0"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == of_kind(docs, "ServiceAccount")[0]["metadata"]["name"]


def test_service_monitor_and_prometheus_rule_are_opt_in(helm: Path) -> None:
    kinds = {d["kind"] for d in template(helm, "region=west")}
    assert {"Deployment", "ServiceAccount", "Service", "PodDisruptionBudget"} <= kinds
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    docs = template(helm, "region=west", "serviceMonitor.enabled=true", "prometheusRule.enabled=true")
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["relabelings"] == [{"targetLabel": "operator_region", "replacement": "west"}]
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())


def test_kopf_scans_the_cluster_only_for_namespace_patterns() -> None:
    from regionshift.runner import _is_pattern

    assert [ns for ns in ["shop", "t-*", "!kube-system", "a,b", "team-[ab]", "streaming"] if _is_pattern(ns)] == [
        "t-*", "!kube-system", "a,b", "team-[ab]"]
