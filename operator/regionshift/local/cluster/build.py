"""Build the local control plane from its pinned Go modules, once, into a cache.

Every Kubernetes component the local regions need (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok, kubectl, helm) is linked into one Go
program, ``controlplane/main.go``, so their shared packages compile and link once. The
versions are pinned in one place, ``controlplane/go.mod`` (with ``go.sum``); the cache
directory is keyed by a hash of those files, the Go toolchain version and the link flags,
so a pin change builds anew and nothing else does. The cache lives outside the repository:
``$REGIONSHIFT_CACHE`` or ``~/.cache/regionshift``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from regionshift.errors import BuildError

__all__ = ["COMPONENTS", "ControlPlaneBinaries", "Pins", "build_control_plane", "cache_root", "pins", "say"]

SOURCE_DIR = Path(__file__).parent / "controlplane"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl", "helm")


@dataclass(frozen=True)
class Pins:
    """The pinned versions, as read from controlplane/go.mod."""

    kubernetes: str
    etcd: str
    kwok: str
    helm: str

    def __str__(self) -> str:
        return f"kubernetes {self.kubernetes}, etcd {self.etcd}, kwok {self.kwok}, helm {self.helm}"


def say(line: str) -> None:
    """Print a progress line at once, even when stdout is a pipe (CI, make)."""
    print(line, flush=True)


def pins() -> Pins:
    """Read the pinned versions from go.mod, the one place they are set."""
    text = (SOURCE_DIR / "go.mod").read_text()

    def version(module: str) -> str:
        match = re.search(rf"^\s*{re.escape(module)} (v\S+)", text, re.MULTILINE)
        if not match:
            raise BuildError(f"go.mod pins no version of {module}")
        return match.group(1)

    return Pins(
        kubernetes=version("k8s.io/kubernetes"),
        etcd=version("go.etcd.io/etcd/server/v3"),
        kwok=version("sigs.k8s.io/kwok"),
        helm=version("helm.sh/helm/v4"),
    )


def _ldflags(p: Pins) -> str:
    major, minor = p.kubernetes.lstrip("v").split(".")[:2]
    flags = ["-s", "-w", f"-X helm.sh/helm/v4/internal/version.version={p.helm}"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={p.kubernetes}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def cache_root() -> Path:
    """Where built binaries are kept: $REGIONSHIFT_CACHE or ~/.cache/regionshift."""
    return Path(os.environ.get("REGIONSHIFT_CACHE", Path.home() / ".cache" / "regionshift"))


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not go:
        raise BuildError("the Go toolchain ('go') is not on PATH; it builds the control plane")
    return go


def _cache_key(go: str, p: Pins) -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE_DIR / name).read_bytes())
    digest.update(subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.encode())
    digest.update(_ldflags(p).encode())
    return f"k8s-{p.kubernetes}-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class ControlPlaneBinaries:
    """The built multi-call binary and one link per component in ``bin_dir``."""

    bin_dir: Path

    def path(self, component: str) -> Path:
        """The executable for one component (a symlink to the multi-call binary)."""
        if component not in COMPONENTS:
            raise KeyError(component)
        return self.bin_dir / component


def build_control_plane(*, log: Callable[[str], None] = say, force: bool = False) -> ControlPlaneBinaries:
    """Return the cached control-plane binaries, building them first if the pins changed.

    Safe to call from several processes at once: a file lock makes one build and the
    others wait for it.
    """
    go = _go()
    p = pins()
    target = cache_root() / "controlplane" / _cache_key(go, p)
    binaries = ControlPlaneBinaries(bin_dir=target / "bin")
    if not force and (target / "bin" / "rs-k8s").exists():
        return binaries
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and (target / "bin" / "rs-k8s").exists():
            return binaries
        _build(go=go, pins_=p, target=target, log=log)
    return binaries


def _build(*, go: str, pins_: Pins, target: Path, log: Callable[[str], None]) -> None:
    log(f"control plane: building {pins_} from their Go modules into {target}")
    log("control plane: a cold build takes several minutes on 2 cores; later runs reuse the cache")
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    env = {**os.environ, "GOFLAGS": "-mod=mod -buildvcs=false", "CGO_ENABLED": "0"}
    cmd = [go, "build", "-v", "-trimpath", "-ldflags", _ldflags(pins_), "-o", str(staging / "rs-k8s"), "."]
    proc = subprocess.Popen(cmd, cwd=SOURCE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    compiled = 0
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(30):
            log(f"control plane: still building, {compiled} packages compiled, {time.monotonic() - started:.0f} s")

    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        for line in proc.stdout:
            compiled += 1
            tail = (tail + [line.rstrip()])[-40:]
        code = proc.wait()
    finally:
        stop.set()
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BuildError("go build of the control plane failed:\n" + "\n".join(tail))
    for component in COMPONENTS:
        (staging / component).symlink_to("rs-k8s")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    staging.rename(target / "bin")
    log(f"control plane: built in {time.monotonic() - started:.0f} s ({compiled} packages)")


if __name__ == "__main__":  # pragma: no cover - manual use
    print(build_control_plane(log=lambda m: print(m, file=sys.stderr, flush=True)).bin_dir)
