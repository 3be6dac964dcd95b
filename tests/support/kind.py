"""The kind CLI at a pinned version, built once from its Go module into the cache.

``kind-config.yaml`` (the repository's top level) is for users with a container engine; this
machine and CI have none, but kind's own loader and validation of the file can still run
(tests/integration/test_kind_config.py). The binary is the real ``kind``, built the way the
local control plane is (:mod:`regionshift.local.cluster.build`): ``go install
sigs.k8s.io/kind@VERSION`` through the Go module proxy, checked against the checksum
database, with the same Go toolchain, into ``$REGIONSHIFT_CACHE/kind-VERSION/bin`` (outside
the repository; default ``~/.cache/regionshift``), under a file lock so that parallel runs
build it once. The cache is keyed by kind's version only: a version change builds anew, and
nothing else does. A cold build downloads ten small modules and compiles in seconds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from regionshift.errors import BuildError
from regionshift.local.cluster.build import _go, cache_root, say

__all__ = ["KIND_MODULE", "KIND_VERSION", "kind_binary"]

KIND_MODULE = "sigs.k8s.io/kind"
KIND_VERSION = "v0.33.0"
"""The kind release kind-config.yaml and docs/install.md are written for (its node image too)."""


def kind_binary(*, version: str = KIND_VERSION, log: Callable[[str], None] = say) -> Path:
    """The cached ``kind`` executable of ``version``, built first if it is not there yet."""
    target = cache_root() / f"kind-{version}"
    binary = target / "bin" / "kind"
    if binary.exists():
        return binary
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / ".kind-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            _build(version=version, target=target, log=log)
    return binary


def _build(*, version: str, target: Path, log: Callable[[str], None]) -> None:
    ref = f"{KIND_MODULE}@{version}"
    log(f"kind: building {ref} from its Go module into {target}")
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f"kind-{version}-build-", dir=cache_root()))
    staging.chmod(0o755)
    # `go install MODULE@VERSION` ignores any go.mod around it; run it in an empty directory
    # anyway, and without the caller's GOFLAGS (-mod=vendor and the like would only get in the way).
    env = {**os.environ, "GOBIN": str(staging), "GOFLAGS": "-trimpath -buildvcs=false", "CGO_ENABLED": "0",
           "GO111MODULE": "on"}
    with tempfile.TemporaryDirectory(prefix="rs-kind-") as empty:
        done = subprocess.run([_go(), "install", ref], cwd=empty, env=env, capture_output=True, text=True)
    built = staging / "kind"
    if done.returncode != 0 or not built.exists():
        shutil.rmtree(staging, ignore_errors=True)
        raise BuildError(f"go install {ref} failed:\n{done.stderr.strip()}")
    answer = subprocess.run([str(built), "version"], capture_output=True, text=True)
    if not answer.stdout.startswith(f"kind {version} "):
        shutil.rmtree(staging, ignore_errors=True)
        raise BuildError(f"go install {ref} built a kind that says {answer.stdout.strip()!r}")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    staging.rename(target / "bin")
    log(f"kind: built {answer.stdout.strip()} in {time.monotonic() - started:.0f} s")
