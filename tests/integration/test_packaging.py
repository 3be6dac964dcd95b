"""The sdist and the wheel, built with PyPA build exactly as the Dockerfile builds them.

``python -m build`` (the ecosystem's standard build front end) builds the sdist from the
source tree, then the wheel from the sdist, each in an isolated environment with the
``[build-system]`` requirements of pyproject.toml (setuptools, fetched from PyPI). The
source tree here is what the Dockerfile's build stage copies, read from its COPY lines, in a
fresh directory (no egg-info, no __pycache__, as in a clean clone): so the image's build has
what it needs, and the sdist carries what the wheel needs, or these tests fail. Marked
integration: the isolated build downloads setuptools.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NAME = PYPROJECT["project"]["name"]
VERSION = PYPROJECT["project"]["version"]
PACKAGE = ROOT / "operator" / "regionshift"
# A complaint of setuptools or the old distutils commands about the project's configuration.
COMPLAINT = re.compile(r"deprecat|SetuptoolsWarning|^\s*warning\b|\bWARNING\b(?!: Retrying)", re.IGNORECASE)


@dataclass(frozen=True)
class Built:
    output: str
    sdist: Path
    wheel: Path


def build_stage_copies() -> list[tuple[str, str]]:
    """(source, destination) of each COPY in the Dockerfile's first stage (the build)."""
    copies: list[tuple[str, str]] = []
    stages = 0
    for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "FROM":
            stages += 1
        elif words[0] == "COPY" and stages == 1:
            *sources, destination = [w for w in words[1:] if not w.startswith("--")]
            copies.extend((source, destination) for source in sources)
    return copies


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    source = tmp_path_factory.mktemp("source")
    for path, destination in build_stage_copies():
        assert destination.rstrip("/") in (".", f"./{path}"), f"COPY {path} {destination}: not the repository's layout"
        if (ROOT / path).is_dir():
            shutil.copytree(ROOT / path, source / path, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / path, source / path)
    out = tmp_path_factory.mktemp("dist")
    # PYTHONDONTWRITEBYTECODE would only make setuptools say it skips byte-compiling.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)],
                          env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return Built(output=output, sdist=out / f"{NAME}-{VERSION}.tar.gz", wheel=out / f"{NAME}-{VERSION}-py3-none-any.whl")


def wheel_files(built: Built) -> set[str]:
    with zipfile.ZipFile(built.wheel) as wheel:
        return set(wheel.namelist())


def sdist_files(built: Built) -> set[str]:
    with tarfile.open(built.sdist) as sdist:
        return {member.name.split("/", 1)[1] for member in sdist.getmembers() if member.isfile()}


def test_both_artifacts_are_built_the_wheel_from_the_sdist(built: Built) -> None:
    assert built.sdist.is_file() and built.wheel.is_file(), sorted(p.name for p in built.sdist.parent.iterdir())
    assert "Building sdist" in built.output and "Building wheel from sdist" in built.output, built.output


def test_nothing_in_the_project_config_draws_a_warning(built: Built) -> None:
    complaints = [line for line in built.output.splitlines() if COMPLAINT.search(line)]
    assert complaints == [], "\n".join(complaints)


def test_the_wheel_carries_every_module_and_data_file_of_the_package(built: Built) -> None:
    in_wheel = {name for name in wheel_files(built) if name.startswith("regionshift/")}
    in_source = {f"regionshift/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
    assert in_wheel == in_source, f"missing: {sorted(in_source - in_wheel)}; extra: {sorted(in_wheel - in_source)}"
    for pattern in PYPROJECT["tool"]["setuptools"]["package-data"]["regionshift"]:
        assert any(fnmatch(name, f"regionshift/{pattern}") for name in in_wheel), f"package-data {pattern}: nothing"


def test_the_wheel_installs_both_console_scripts(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        entry_points = wheel.read(f"{NAME}-{VERSION}.dist-info/entry_points.txt").decode()
    parsed = configparser.ConfigParser()
    parsed.read_string(entry_points)
    assert dict(parsed["console_scripts"]) == PYPROJECT["project"]["scripts"]
    assert set(parsed["console_scripts"]) == {"regionshift", "kubectl-regionshift"}


def test_the_license_is_an_spdx_expression_and_its_text_ships(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        metadata = wheel.read(f"{NAME}-{VERSION}.dist-info/METADATA").decode()
        license_text = wheel.read(f"{NAME}-{VERSION}.dist-info/licenses/LICENSE").decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert license_text == (ROOT / "LICENSE").read_text() and "Apache License" in license_text
    assert "LICENSE" in sdist_files(built)


def test_the_sdist_holds_what_the_wheel_is_built_from(built: Built) -> None:
    in_sdist = sdist_files(built)
    assert {"pyproject.toml", "README.md", "LICENSE", "PKG-INFO"} <= in_sdist
    package_files = {name for name in wheel_files(built) if name.startswith("regionshift/")}
    assert {f"operator/{name}" for name in package_files} <= in_sdist
