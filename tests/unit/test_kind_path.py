"""kind-config.yaml and the kind path of docs/install.md, against the chart and the pins.

The commands of docs/install.md's "On kind, with Docker" are read from the document itself
and checked against the chart: one kind cluster per example region (charts/regionshift/ci),
the image that ``docker build`` tags is the one ``kind load`` copies and the one the chart
renders with the very ``helm install`` flags of the document (run as ``helm template``, with
the local control plane's helm), the namespaces a region's values watch are created first,
and nothing rendered needs a CRD a new kind cluster lacks. kind's own loader and validation
of kind-config.yaml run in tests/integration/test_kind_config.py.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from regionshift.local.cluster import build_control_plane, pins
from regionshift.local.manifests import example_regions

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "regionshift"
KIND_CONFIG = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
REGIONS = example_regions(CHART)
# What a new kind cluster serves: Kubernetes' own groups, no CRD.
BUILT_IN_GROUPS = {"v1", "apps/v1", "policy/v1", "rbac.authorization.k8s.io/v1"}


def kind_section() -> str:
    text = (ROOT / "docs" / "install.md").read_text()
    match = re.search(r"^## On kind, with Docker\n(.*?)^## ", text, re.MULTILINE | re.DOTALL)
    assert match, 'docs/install.md has no "## On kind, with Docker" section'
    return match.group(1)


def commands() -> list[list[str]]:
    """Every command of the section's shell blocks, as argv (continuations joined, comments dropped)."""
    blocks = re.findall(r"^```sh\n(.*?)^```", kind_section(), re.MULTILINE | re.DOTALL)
    argvs = [shlex.split(line, comments=True) for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [argv for argv in argvs if argv]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def starting(*words: str) -> list[list[str]]:
    return [argv for argv in commands() if argv[: len(words)] == list(words)]


@pytest.fixture(scope="module")
def helm() -> Path:
    return build_control_plane().path("helm")


def test_the_kind_config_is_one_for_every_region() -> None:
    assert KIND_CONFIG["apiVersion"] == "kind.x-k8s.io/v1alpha4" and KIND_CONFIG["kind"] == "Cluster"
    assert "name" not in KIND_CONFIG, "the cluster's name comes from `kind create cluster --name REGION`"
    for node in KIND_CONFIG["nodes"]:
        fixed = [m for m in node.get("extraPortMappings", []) if m.get("hostPort", 0) not in (0, -1)]
        assert not fixed, f"a fixed host port would collide between the regions' clusters: {fixed}"
    assert [node["role"] for node in KIND_CONFIG["nodes"]].count("control-plane") == 1


def test_the_node_image_is_kinds_for_the_kubernetes_minor_the_project_pins() -> None:
    major, minor = pins().kubernetes.lstrip("v").split(".")[:2]
    images = {node.get("image") for node in KIND_CONFIG["nodes"]}
    assert len(images) == 1, f"one node image for every node: {images}"
    (image,) = images
    assert re.fullmatch(rf"kindest/node:v{major}\.{minor}\.\d+@sha256:[0-9a-f]{{64}}", image or ""), image


def test_each_example_region_gets_a_kind_cluster_and_the_built_image() -> None:
    (build,) = starting("docker", "build")
    built = flag(build, "-t")
    created = {flag(argv, "--name"): flag(argv, "--config") for argv in starting("kind", "create", "cluster")}
    assert created == {region: "kind-config.yaml" for region in REGIONS}
    loaded = {flag(argv, "--name"): argv[3] for argv in starting("kind", "load", "docker-image")}
    assert loaded == {region: built for region in REGIONS}


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_the_documented_helm_install_renders_the_loaded_image(helm: Path, region: str) -> None:
    (build,) = starting("docker", "build")
    repository, tag = flag(build, "-t").rsplit(":", 1)
    (install,) = [argv for argv in starting("helm", "install") if flag(argv, "--kube-context") == f"kind-{region}"]
    assert (ROOT / flag(install, "-f")).resolve() == REGIONS[region].resolve()
    done = subprocess.run([str(helm), "template", *install[2:]], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    docs: list[dict[str, Any]] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    (deployment,) = [doc for doc in docs if doc["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{repository}:{tag}"
    assert container["imagePullPolicy"] in ("IfNotPresent", "Never")
    assert {doc["apiVersion"] for doc in docs} <= BUILT_IN_GROUPS, "a kind the new cluster has no CRD for"
    values = yaml.safe_load(REGIONS[region].read_text())
    assert deployment["metadata"]["labels"]["regionshift.io/region"] == values["region"] == region
    created = {argv[-1] for argv in starting("kubectl", "--context", f"kind-{region}", "create", "namespace")}
    assert set(values.get("watchNamespaces") or []) <= created, "helm install needs the watched namespaces"
    (rollout,) = [argv for argv in starting("kubectl", "--context", f"kind-{region}") if "rollout" in argv]
    assert rollout[-1] == f"deployment/{deployment['metadata']['name']}"
    assert flag(rollout, "-n") == flag(install, "-n") == deployment["metadata"]["namespace"]
