"""Start and stop one local region: a real Kubernetes control plane on loopback.

A :class:`LocalCluster` runs etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes and pod lifecycles) from the cached build of
:mod:`regionshift.local.cluster.build`, each on free 127.0.0.1 ports, with the region's own
certificates, service-account keys and kubeconfig. Several clusters run side by side, one
per region. Stopping one ends every process it started (and the PID file lets
``regionshift cluster down`` do the same from another process); when the cluster is tied
to its parent (the test suite, the drill) the kernel also kills the components if the
parent dies first.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import yaml

from regionshift.errors import StartupError
from .build import ControlPlaneBinaries, build_control_plane, say
from .pki import ClusterPKI, write_pki

__all__ = [
    "KWOK_NODE_ANNOTATION",
    "OPERATOR_USER",
    "LocalCluster",
    "free_port",
    "install_crds",
    "local_clusters",
    "state_root",
    "stop_recorded",
]

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
OPERATOR_USER = "regionshift-operator"
"""The audited identity of the operator in a cluster started with ``audited_operator``."""
STAGES_DIR = Path(__file__).parent / "kwok"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
"""Fake addresses written into objects by kwok; nothing ever connects to them."""

_PR_SET_PDEATHSIG = 1


def state_root() -> Path:
    """Where clusters started from the CLI keep their files: $REGIONSHIFT_STATE or ~/.local/state."""
    return Path(os.environ.get("REGIONSHIFT_STATE", Path.home() / ".local" / "state" / "regionshift")) / "clusters"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class LocalCluster:
    """One local region's control plane. Use as a context manager, or start()/stop()."""

    name: str
    workdir: Path | None = None
    nodes: int = 2
    tie_to_parent: bool = True
    log: Callable[[str], None] = say
    binaries: ControlPlaneBinaries | None = None
    crds: list[dict[str, Any]] = field(default_factory=list)
    """CRDs installed before kube-controller-manager starts, so its garbage collector
    knows their kinds from the first moment (it rediscovers only every 30 s)."""
    audited_operator: bool = False
    """Opt-in, for benchmarks: the API server also accepts a static bearer token for the user
    :data:`OPERATOR_USER` (group ``system:masters``), written into :attr:`operator_kubeconfig`,
    and records every request of that user, and of no other, in :attr:`audit_log` (one JSON
    line per request, two for a watch: started and completed; writes at Request level, with
    the body sent, reads at Metadata level). The
    controllers and kwok keep the admin identity, so the log holds only the operator's calls."""
    ports: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _own_workdir: bool = False

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig of this cluster."""
        assert self.workdir is not None
        return self.workdir / "kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        """The kubeconfig of :data:`OPERATOR_USER` (only with ``audited_operator``)."""
        assert self.workdir is not None
        return self.workdir / "operator.kubeconfig"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log of :data:`OPERATOR_USER` (only with ``audited_operator``)."""
        assert self.workdir is not None
        return self.workdir / "logs" / "audit.log"

    @property
    def server(self) -> str:
        """The API server URL."""
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ start

    def start(self, *, timeout_seconds: float = 120.0) -> None:
        """Start every component and wait until nodes are Ready and pods can run."""
        started = time.monotonic()
        self.binaries = self.binaries or build_control_plane(log=self.log)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"regionshift-{self.name}-"))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.ports = {name: free_port() for name in ("etcd", "etcd-peer", "apiserver", "kwok")}
        pki = write_pki(directory=self.workdir / "pki", cluster_name=self.name)
        self._write_kubeconfig(pki)
        if self.audited_operator:
            self._write_operator_identity(pki)
        deadline = time.monotonic() + timeout_seconds
        try:
            self.log(f"cluster {self.name}: starting etcd on 127.0.0.1:{self.ports['etcd']}")
            self._spawn("etcd", self._etcd_args())
            self._wait("etcd", deadline, self._etcd_healthy)
            self.log(f"cluster {self.name}: starting kube-apiserver on {self.server}")
            self._spawn("kube-apiserver", self._apiserver_args(pki))
            self._wait("kube-apiserver", deadline, lambda: self._apiserver_ready(pki))
            if self.crds:
                with self.api_client() as api:
                    install_crds(api=api, manifests=self.crds, timeout_seconds=max(1.0, deadline - time.monotonic()))
            self.log(f"cluster {self.name}: starting kube-controller-manager, kube-scheduler, kwok")
            self._spawn("kube-controller-manager", self._controller_manager_args(pki))
            self._spawn("kube-scheduler", self._scheduler_args())
            self._spawn("kwok", self._kwok_args())
            self._record_state()
            self._register_nodes()
            self._wait("kwok nodes", deadline, self._nodes_ready)
            self._wait("kube-controller-manager", deadline, self._default_service_account_exists)
        except BaseException:
            self.stop()
            raise
        self.log(
            f"cluster {self.name}: ready in {time.monotonic() - started:.1f} s"
            f" ({self.nodes} kwok nodes), KUBECONFIG={self.kubeconfig}"
        )

    def _spawn(self, component: str, args: list[str]) -> None:
        assert self.binaries is not None and self.workdir is not None
        logfile = open(self.workdir / "logs" / f"{component}.log", "ab")
        self._procs[component] = subprocess.Popen(
            [str(self.binaries.path(component)), *args],
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
            preexec_fn=_die_with_parent if self.tie_to_parent else None,
        )
        logfile.close()

    def _wait(self, what: str, deadline: float, check: Callable[[], bool]) -> None:
        while time.monotonic() < deadline:
            for component, proc in self._procs.items():
                if proc.poll() is not None:
                    raise StartupError(
                        f"cluster {self.name}: {component} exited with code {proc.returncode};"
                        f" last lines of its log:\n{self._log_tail(component)}"
                    )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.2)
        raise StartupError(f"cluster {self.name}: {what} not ready in time; see {self.workdir}/logs")

    def _log_tail(self, component: str, lines: int = 20) -> str:
        assert self.workdir is not None
        path = self.workdir / "logs" / f"{component}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # ------------------------------------------------------------------ components

    def _etcd_args(self) -> list[str]:
        assert self.workdir is not None
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            "--name=etcd",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=etcd={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _etcd_healthy(self) -> bool:
        answer = httpx.get(f"http://127.0.0.1:{self.ports['etcd']}/health", timeout=2)
        return answer.status_code == 200 and answer.json().get("health") == "true"

    def _apiserver_args(self, pki: ClusterPKI) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki.sa_public_key}",
            f"--service-account-signing-key-file={pki.sa_private_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
            *(self._audit_args() if self.audited_operator else []),
        ]

    def _audit_args(self) -> list[str]:
        assert self.workdir is not None
        return [
            f"--token-auth-file={self.workdir / 'pki' / 'operator-token.csv'}",
            f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
        ]

    def _write_operator_identity(self, pki: ClusterPKI) -> None:
        """A static token for OPERATOR_USER, its kubeconfig, and an audit policy for it alone."""
        assert self.workdir is not None
        token = secrets.token_hex(16)
        token_file = self.workdir / "pki" / "operator-token.csv"
        token_file.write_text(f'{token},{OPERATOR_USER},{OPERATOR_USER},"system:masters"\n')
        token_file.chmod(0o600)
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [
                # writes with what they wrote, so a test can tell a write repeated with another value
                {"level": "Request", "users": [OPERATOR_USER],
                 "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
                {"level": "Metadata", "users": [OPERATOR_USER]},
                {"level": "None"},
            ],
        }
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(policy))
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {"server": self.server, "certificate-authority": str(pki.ca_cert)}}],
            "users": [{"name": OPERATOR_USER, "user": {"token": token}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": OPERATOR_USER, "namespace": "default"}}],
            "current-context": self.name,
        }
        self.operator_kubeconfig.write_text(yaml.safe_dump(config))
        self.operator_kubeconfig.chmod(0o600)

    def _apiserver_ready(self, pki: ClusterPKI) -> bool:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        answer = httpx.get(f"{self.server}/readyz", verify=context, timeout=2)
        return answer.status_code == 200

    def _controller_manager_args(self, pki: ClusterPKI) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--service-account-private-key-file={pki.sa_private_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--controllers=*",
            "--v=1",
        ]

    def _scheduler_args(self) -> list[str]:
        return [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--secure-port=0", "--v=1"]

    def _kwok_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            *(f"--config={path}" for path in sorted(STAGES_DIR.glob("*.yaml"))),
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}",
            "--node-ip=10.240.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
        ]

    def _write_kubeconfig(self, pki: ClusterPKI) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {"server": self.server, "certificate-authority": str(pki.ca_cert)}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": "admin", "namespace": "default"}}],
            "current-context": self.name,
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    # ------------------------------------------------------------------ API checks

    def api_client(self):  # type: ignore[no-untyped-def]
        """A kubernetes.client.ApiClient for this cluster's admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _register_nodes(self) -> None:
        from kubernetes import client

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for index in range(self.nodes):
                name = f"{self.name}-node-{index}"
                body = {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                            "topology.kubernetes.io/region": self.name,
                        },
                    },
                    "status": {
                        "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                        "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                    },
                }
                core.create_node(body)

    def _nodes_ready(self) -> bool:
        from kubernetes import client

        with self.api_client() as api:
            nodes = client.CoreV1Api(api).list_node().items
        ready = [
            n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
        ]
        return len(ready) >= self.nodes

    def _default_service_account_exists(self) -> bool:
        from kubernetes import client

        with self.api_client() as api:
            client.CoreV1Api(api).read_namespaced_service_account("default", "default")
        return True

    # ------------------------------------------------------------------ stop

    def _record_state(self) -> None:
        assert self.workdir is not None
        state = {
            "name": self.name,
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "pids": {component: proc.pid for component, proc in self._procs.items()},
        }
        (self.workdir / "state.json").write_text(json.dumps(state, indent=2))

    def stop(self, *, grace_seconds: float = 10.0) -> None:
        """Stop every component (kwok and controllers first, etcd last); leave no process."""
        order = ["kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
        for component in order:
            proc = self._procs.get(component)
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for component in order:
            proc = self._procs.pop(component, None)
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.workdir is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.workdir / "state.json").unlink()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> list[int]:
        """PIDs of the components still running."""
        return [proc.pid for proc in self._procs.values() if proc.poll() is None]


def install_crds(*, api: Any, manifests: list[dict[str, Any]], timeout_seconds: float = 30.0) -> None:
    """Create or update CRDs and wait until the API server serves them (Established)."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api)
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        try:
            ext.create_custom_resource_definition(manifest)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            ext.replace_custom_resource_definition(
                name, {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": current.metadata.resource_version}}
            )
    deadline = time.monotonic() + timeout_seconds
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        while not any(
            c.type == "Established" and c.status == "True"
            for c in ext.read_custom_resource_definition(name).status.conditions or []
        ):
            if time.monotonic() > deadline:
                raise StartupError(f"CRD {name} not established in {timeout_seconds} s")
            time.sleep(0.1)


def stop_recorded(*, workdir: Path, grace_seconds: float = 10.0) -> bool:
    """Stop a cluster started by another process, from the PIDs in its state file."""
    state_file = workdir / "state.json"
    if not state_file.exists():
        return False
    pids = list(json.loads(state_file.read_text())["pids"].values())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    # SIGKILL is asynchronous: return only once every process has really gone.
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    state_file.unlink()
    return True


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its parent to reap it has ended)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


@contextlib.contextmanager
def local_clusters(*, names: list[str], log: Callable[[str], None] = say) -> Iterator[dict[str, LocalCluster]]:
    """Several regions at once (one control plane each), stopped together."""
    clusters: dict[str, LocalCluster] = {}
    try:
        for name in names:
            cluster = LocalCluster(name=name, log=log)
            cluster.start()
            clusters[name] = cluster
        yield clusters
    finally:
        for cluster in clusters.values():
            cluster.stop()
