"""The third-party CRDs the traffic providers write to, fetched from their pinned Go modules.

regionshift shifts weights on objects whose kinds other projects define: the Gateway API's
HTTPRoute (``sigs.k8s.io/gateway-api``, standard channel) and external-dns's DNSEndpoint
(``sigs.k8s.io/external-dns``). The tests and the drill install those exact CRDs, fetched
the way the control plane's modules are: ``go mod download -json MODULE@VERSION`` (through
the Go module proxy, checked against the checksum database), pinned here in one place.
The CRD documents found in the module are kept as one YAML file per module and version
under the cache (``$REGIONSHIFT_CACHE`` or ``~/.cache/regionshift``, ``crds/``), so later
runs read the file and never call Go. Only ``CustomResourceDefinition`` documents are kept
(the Gateway API directory also ships a ValidatingAdmissionPolicy).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from regionshift.errors import BuildError
from .build import _go, cache_root

__all__ = ["EXTERNAL_DNS", "GATEWAY_API", "THIRD_PARTY", "CrdModule", "third_party_crds"]


@dataclass(frozen=True)
class CrdModule:
    """A Go module at a pinned version and the CRD files to take from it."""

    module: str
    version: str
    paths: tuple[str, ...]
    """Files or directories inside the module (every ``*.yaml`` of a directory)."""

    @property
    def cache_file(self) -> Path:
        """Where the CRDs of this module and version are kept once fetched."""
        return cache_root() / "crds" / f"{self.module.replace('/', '_')}@{self.version}.yaml"


GATEWAY_API = CrdModule(module="sigs.k8s.io/gateway-api", version="v1.6.3", paths=("config/crd/standard",))
EXTERNAL_DNS = CrdModule(
    module="sigs.k8s.io/external-dns",
    version="v0.22.0",
    paths=("config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml",),
)
THIRD_PARTY: dict[str, CrdModule] = {"gateway-api": GATEWAY_API, "external-dns": EXTERNAL_DNS}
"""Every third-party CRD source, by short name."""


def third_party_crds(*, names: tuple[str, ...] = tuple(THIRD_PARTY)) -> list[dict[str, Any]]:
    """The CRD manifests of the named modules (all by default), fetched once and cached."""
    manifests: list[dict[str, Any]] = []
    for name in names:
        manifests.extend(_crds_of(THIRD_PARTY[name]))
    return manifests


def _crds_of(source: CrdModule) -> list[dict[str, Any]]:
    target = source.cache_file
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / ".fetch.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.exists():
                _fetch(source=source, target=target)
    return [doc for doc in yaml.safe_load_all(target.read_text()) if doc]


def _fetch(*, source: CrdModule, target: Path) -> None:
    ref = f"{source.module}@{source.version}"
    # Outside any module, `go mod download` needs no go.mod; GOFLAGS from the caller
    # (-mod=vendor and the like) would only get in the way.
    env = {**os.environ, "GOFLAGS": "", "GO111MODULE": "on"}
    with tempfile.TemporaryDirectory(prefix="rs-crds-") as empty:
        answer = subprocess.run(
            [_go(), "mod", "download", "-json", ref], cwd=empty, env=env, capture_output=True, text=True
        )
    try:
        info = json.loads(answer.stdout)
    except json.JSONDecodeError:
        info = {}
    if answer.returncode != 0 or "Dir" not in info or info.get("Error"):
        raise BuildError(f"go mod download {ref} failed: {info.get('Error') or answer.stderr.strip()}")
    root = Path(info["Dir"])
    files: list[Path] = []
    for path in source.paths:
        where = root / path
        if where.is_dir():
            files.extend(sorted(where.glob("*.yaml")))
        elif where.is_file():
            files.append(where)
        else:
            raise BuildError(f"{ref} has no {path}")
    crds = [
        doc
        for file in files
        for doc in yaml.safe_load_all(file.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    ]
    if not crds:
        raise BuildError(f"{ref}: no CustomResourceDefinition in {', '.join(source.paths)}")
    staging = target.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(f"# {ref} ({info.get('Sum', '')}): {', '.join(source.paths)}\n" + yaml.safe_dump_all(crds))
    staging.rename(target)
