"""kind-config.yaml through kind's own loader and validation, on a machine without a container engine.

The real ``kind`` CLI at the pinned version (built once into the cache, tests.support.kind)
runs ``kind create cluster --config kind-config.yaml --name REGION`` for each example region
of the chart. What it can check without Docker follows from kind v0.33.0's own order:

1. ``cluster.CreateWithConfigFile`` (pkg/cluster/createoption.go:39-44) runs
   ``encoding.Load`` when ``Provider.Create`` applies its options
   (pkg/cluster/provider.go:185-195), *before* anything asks for a container engine:
   ``Parse`` (pkg/internal/apis/config/encoding/load.go) reads apiVersion and kind, then
   decodes the file strictly (``yaml.v3`` with ``KnownFields(true)``: an unknown field fails).
2. Only then ``internalcreate.Cluster`` (pkg/cluster/internal/create/create.go:69-93) checks
   the engine (``validateProvider``: ``docker info``, line 71), defaults the config
   (``fixupOptions``, line 76), lists the cluster's nodes (``alreadyExists``: ``docker ps``,
   line 81) and at last validates it (``opts.Config.Validate()``, line 91:
   pkg/internal/apis/config/validate.go: the cluster name, the node roles, at least one
   control plane, images, ports, subnets) before it provisions anything (line 102).

So without an engine, the loader runs and validation does not. Two tests cover the loader
with no engine at all: the file gets past it and kind stops for want of ``docker``; copies
broken in the loader's terms stop in the loader, not at the engine (so the first test's check
is live). ``validate.go`` needs an engine that answers the three questions kind asks before
it (``docker -v``, ``docker info``, ``docker ps``): the other two tests give kind a stand-in
engine, a shell script that answers those as an engine without any cluster does, says the
node image is present when kind looks it up (so kind never pulls), and refuses everything
else: kind's first step after that, its network, fails, and no image, container, network or
registry is touched. kind's validation passes the file for each region's name and kind moves
on to provisioning with the pinned node image; copies broken in validate.go's terms stop
there, before provisioning. kind's public API
offers nothing shorter: validation is in internal packages, reached only through
``Provider.Create``, and a provider cannot be supplied from outside kind.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from regionshift.local.manifests import example_regions
from tests.support.kind import kind_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KIND_CONFIG = ROOT / "kind-config.yaml"
REGIONS = sorted(example_regions(ROOT / "charts" / "regionshift"))
ENGINES = ("docker", "podman", "nerdctl")
Change = Callable[[dict[str, Any]], None]

# The `info` answer is what kind's docker provider reads from `docker info --format '{{json .}}'`
# (pkg/cluster/internal/providers/docker/provider.go, info()): cgroup v2, not rootless.
STAND_IN_ENGINE = """#!/bin/sh
# A stand-in container engine for kind's docker provider: it answers what kind asks before
# validating its config as an engine without any cluster does, says a node image is present
# (so that kind never pulls one), and refuses everything else.
printf '%s\\n' "$*" >> "$STAND_IN_LOG"
case "$1" in
  -v) echo "Docker version 28.2.2, build stand-in" ;;
  info) echo '{"CgroupDriver":"systemd","CgroupVersion":"2","MemoryLimit":true,"PidsLimit":true,"CPUShares":true,"SecurityOptions":["name=seccomp,profile=builtin"]}' ;;
  ps) ;;
  inspect) [ "$2" = "--type=image" ] || { echo "stand-in container engine refuses: docker $*" >&2; exit 1; } ;;
  *) echo "stand-in container engine refuses: docker $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture(scope="module")
def kind() -> Path:
    return kind_binary()


def create_cluster(kind: Path, *, config: Path, name: str, path: Path, home: Path,
                   extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``kind create cluster`` with only ``path`` on PATH, a private HOME and KUBECONFIG, nothing else."""
    env = {"PATH": str(path), "HOME": str(home), "KUBECONFIG": str(home / "kubeconfig"), **(extra_env or {})}
    assert not any((path / engine).exists() for engine in ENGINES[1:]), "podman or nerdctl on the test's PATH"
    return subprocess.run([str(kind), "create", "cluster", "--config", str(config), "--name", name],
                          env=env, capture_output=True, text=True, timeout=120)


def broken_copy(tmp_path: Path, name: str, change: Change) -> Path:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    change(config)
    copy = tmp_path / f"{name}.yaml"
    copy.write_text(yaml.safe_dump(config))
    return copy


@pytest.mark.parametrize("region", REGIONS)
def test_kind_loads_the_config_then_stops_for_want_of_a_container_engine(kind: Path, tmp_path: Path,
                                                                         region: str) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = create_cluster(kind, config=KIND_CONFIG, name=region, path=empty, home=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert 'failed to get docker info' in output and 'executable file not found' in output, output
    assert "config" not in output, output  # "unable to decode config", "could not determine kind / apiVersion for config"
    assert not (tmp_path / "kubeconfig").exists()


@pytest.mark.parametrize(("broken", "change", "says"), [
    ("unknown-field", lambda c: c["nodes"][1].update(replicas=3), "field replicas not found in type v1alpha4.Node"),
    ("misspelt-field", lambda c: c["nodes"][0].update(imag=c["nodes"][0].pop("image")), "field imag not found"),
    ("other-api-version", lambda c: c.update(apiVersion="kind.x-k8s.io/v1alpha3"), "unknown apiVersion"),
    ("other-kind", lambda c: c.update(kind="Node"), "unknown kind Node"),
])
def test_a_copy_broken_for_kinds_loader_stops_there_before_any_container_engine(
        kind: Path, tmp_path: Path, broken: str, change: Change, says: str) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = create_cluster(kind, config=broken_copy(tmp_path, broken, change), name=REGIONS[0], path=empty,
                          home=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and says in output, output
    assert "docker" not in output, output


def stand_in_engine(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(STAND_IN_ENGINE)
    docker.chmod(0o755)
    return bin_dir, tmp_path / "engine.log"


@pytest.mark.parametrize("region", REGIONS)
def test_kinds_validation_passes_it_with_a_stand_in_container_engine(kind: Path, tmp_path: Path, region: str) -> None:
    bin_dir, log = stand_in_engine(tmp_path)
    done = create_cluster(kind, config=KIND_CONFIG, name=region, path=bin_dir, home=tmp_path,
                          extra_env={"STAND_IN_LOG": str(log)})
    output = done.stdout + done.stderr
    asked = log.read_text().splitlines()
    image = yaml.safe_load(KIND_CONFIG.read_text())["nodes"][0]["image"]
    # Past validate.go, provisioning looks the pinned node image up, then sets up kind's network:
    # the stand-in refuses that, and kind stops.
    assert done.returncode != 0 and f'Creating cluster "{region}"' in output, output
    assert "failed to ensure docker network" in output and "stand-in container engine refuses" in output, output
    assert "invalid" not in output and "config" not in output, output
    assert asked[:4] == ["-v", "info --format {{json .}}",
                         f"ps -a --filter label=io.x-k8s.kind.cluster={region} --format {{{{.Names}}}}",
                         f"inspect --type=image {image}"], asked
    assert not any(line.split()[0] in {"pull", "run", "create", "load", "exec"} for line in asked), asked


@pytest.mark.parametrize(("broken", "change", "says"), [
    ("bad-role", lambda c: c["nodes"][1].update(role="master"), '"master" is not a valid node role'),
    ("no-control-plane", lambda c: c["nodes"][0].update(role="worker"), "must have at least one control-plane node"),
    ("bad-port", lambda c: c.update(networking={"apiServerPort": 70000}), "invalid apiServerPort"),
])
def test_a_copy_broken_for_kinds_validation_stops_there_with_a_stand_in_container_engine(
        kind: Path, tmp_path: Path, broken: str, change: Change, says: str) -> None:
    bin_dir, log = stand_in_engine(tmp_path)
    done = create_cluster(kind, config=broken_copy(tmp_path, broken, change), name=REGIONS[0], path=bin_dir,
                          home=tmp_path, extra_env={"STAND_IN_LOG": str(log)})
    output = done.stdout + done.stderr
    assert done.returncode != 0 and says in output, output
    assert "Creating cluster" not in output, output
    assert not any(line.startswith("inspect") for line in log.read_text().splitlines())
