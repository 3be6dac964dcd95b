"""Two local regions, each with its own operator process, and one shared Prometheus.

regionshift has no central brain: each region's operator writes only to its own cluster
and learns the others' progress from the shared signal and from the metrics every operator
exports to the shared Prometheus. Tests of that need what production has: two control
planes, an operator per region running as its own process (``regionshift run``), and one
Prometheus scraping every operator's ``/metrics``.

* :func:`region_clusters` (session): the session's ``kube_cluster`` is the first region,
  ``east``; a second :class:`LocalCluster` is started for ``west`` only when a test asks
  for it. Both have regionshift's CRDs and the Gateway API and DNSEndpoint CRDs. The second
  region's start time and resident memory are printed (``-s`` shows them).
* :func:`two_regions` (per test): a fresh namespace in each region (prefix ``rg-``: the
  in-process session operator, which watches ``t-*``, leaves them alone) and a loopback
  gateway address per region (nothing listens on it; the peers' Services point there).
  ``two_regions.start_operators(prometheus=...)`` starts one ``regionshift run`` per region
  watching its namespace, adds its ``/metrics`` as a scrape target of the shared Prometheus
  (target label ``operator_region``) and waits until Prometheus has scraped it. Operators
  left running are killed at teardown and their logs printed (pytest shows them with a
  failed test).
* ``region.kill_operator()`` (SIGKILL, a crash) or ``terminate_operator()`` stops the
  current operator and its scrape; ``region.start_operator(prometheus=...)`` starts the next
  one on a new port, so a restarted operator is a new ``instance``: peers query the
  operators' series by their own labels (``regionfailover``, ``region``), never by instance.
* ``two_regions.install_domain(prometheus=..., scenario=..., mode=...)`` writes the user's
  traffic objects (:mod:`tests.support.region_traffic`) and the RegionFailover ``domain``
  (:mod:`tests.support.region_failover`) into every region.

A test module imports the fixtures it uses, and those they depend on, as the traffic tests do::

    from tests.support.regions import region_clusters, second_region_cluster, two_regions  # noqa: F401
    from tests.support.traffic import traffic_crds  # noqa: F401
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from regionshift.api.crdgen import crd_manifests
from regionshift.local.cluster import LocalCluster, free_port, third_party_crds
from tests.support.cluster import Kube, namespace_in
from tests.support.operator_process import STARTUP_TIMEOUT_SECONDS, OperatorProcess
from tests.support.prometheus_server import SCRAPED_TIMEOUT_SECONDS, PrometheusServer
from tests.support.region_failover import region_failover
from tests.support.region_traffic import HOST, RegionTraffic, install_traffic
from tests.support.shared_signal import SignalScenario

__all__ = [
    "GATEWAY_DOMAIN",
    "OPERATOR_REGION_LABEL",
    "REGION_NAMES",
    "Region",
    "TwoRegions",
    "region_clusters",
    "resident_memory_bytes",
    "second_region_cluster",
    "two_regions",
]

REGION_NAMES = ("east", "west")
"""The two regions: ``east`` is the session's cluster, ``west`` the second one."""

GATEWAY_DOMAIN = "localhost"
"""Gateways are ``<region>.localhost``: a name (EndpointSlices refuse 127.0.0.0/8), reserved for loopback."""

OPERATOR_REGION_LABEL = "operator_region"
"""Target label naming the region whose operator a scraped series comes from."""


def resident_memory_bytes(pids: list[int]) -> int:
    """Memory of the processes and all their descendants: the sum of their proportional set sizes.

    PSS, not RSS: the control plane's components are one multi-call binary, whose pages
    RSS would count once per process; PSS splits shared pages among the processes sharing
    them. Read from /proc (``smaps_rollup``, or ``VmRSS`` where that is missing); 0 for
    processes gone.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return sum(_memory_of(pid) for pid in seen)


def _memory_of(pid: int) -> int:
    """One process's PSS in bytes (its RSS where the kernel has no smaps_rollup), 0 when gone."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    return 0


@pytest.fixture(scope="session")
def second_region_cluster() -> Iterator[LocalCluster]:
    """The second local region (``west``), with regionshift's and the traffic providers' CRDs."""
    cluster = LocalCluster(
        name="test-region-2",
        crds=[*crd_manifests().values(), *third_party_crds()],
        log=lambda line: print(line, flush=True),
        audited_operator=True,  # its operator's every request is in cluster.audit_log (writes with their bodies)
    )
    began = time.monotonic()
    cluster.start()
    try:
        print(f"second region: started in {time.monotonic() - began:.1f} s, "
              f"{resident_memory_bytes(cluster.pids()) / 2**20:.0f} MiB (PSS) "
              f"({len(cluster.pids())} components)", flush=True)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def region_clusters(
    kube_cluster: LocalCluster, traffic_crds: list[str], second_region_cluster: LocalCluster
) -> dict[str, LocalCluster]:
    """``{"east": the session cluster, "west": the second one}``, both with the traffic CRDs."""
    return dict(zip(REGION_NAMES, (kube_cluster, second_region_cluster), strict=True))


@dataclass
class Region:
    """One region of a two-region test: its cluster, its namespace, its gateway, its operators."""

    name: str
    cluster: LocalCluster
    kube: Kube
    gateway_address: str
    """``<region>.localhost:PORT``: where peers reach this region (nothing listens; no traffic
    flows). A name, because the API server refuses loopback IPs in the peers' EndpointSlices."""
    log_dir: Path
    operators: list[OperatorProcess] = field(default_factory=list)
    """Every operator process started for this region, the current one last."""
    prometheus: PrometheusServer | None = None

    @property
    def namespace(self) -> str:
        return self.kube.namespace

    @property
    def operator(self) -> OperatorProcess:
        """The operator process started last (running or not)."""
        if not self.operators:
            raise RuntimeError(f"no operator was started in region {self.name}")
        return self.operators[-1]

    @property
    def metrics_address(self) -> str:
        """``127.0.0.1:PORT`` of the current operator's ``/metrics`` (its scrape target)."""
        return f"127.0.0.1:{self.operator.metrics_port}"

    def start_operator(self, *, prometheus: PrometheusServer | None = None,
                       timeout_seconds: float = STARTUP_TIMEOUT_SECONDS,
                       environment: Mapping[str, str] | None = None) -> OperatorProcess:
        """Start ``regionshift run`` watching this region's namespace; with ``prometheus``, register its scrape.

        Returns once the process serves ``/metrics`` (it does once kopf is watching); the
        scrape target is added then, :meth:`wait_until_scraped` waits for its first scrape.
        A region runs one operator at a time: start the next after killing the last.
        """
        if self.operators and self.operator.running():
            raise RuntimeError(f"region {self.name} already runs an operator (pid {self.operator.pid})")
        process = OperatorProcess(
            kubeconfig=self.cluster.operator_kubeconfig if self.cluster.audited_operator else self.cluster.kubeconfig,
            namespaces=[self.namespace],
            log_path=self.log_dir / f"operator-{self.name}-{len(self.operators) + 1}.log",
            environment=environment,
        )
        self.operators.append(process)
        process.start(timeout_seconds=timeout_seconds)
        if prometheus is not None:
            self.prometheus = prometheus
            prometheus.add_scrape_target(self.metrics_address, labels={OPERATOR_REGION_LABEL: self.name})
        return process

    def wait_until_scraped(self, *, timeout_seconds: float = SCRAPED_TIMEOUT_SECONDS) -> float:
        """Block until the shared Prometheus has scraped the current operator; seconds since it was added."""
        if self.prometheus is None:
            raise RuntimeError(f"the operator of region {self.name} is not a scrape target")
        return self.prometheus.wait_until_scraped(self.metrics_address, timeout_seconds=timeout_seconds)

    def kill_operator(self) -> int:
        """SIGKILL the current operator (a crash) and stop scraping it; its exit status."""
        code = self.operator.kill()
        if self.prometheus is not None:
            self.prometheus.remove_scrape_target(self.metrics_address)
        return code

    def terminate_operator(self) -> int:
        """SIGTERM the current operator (a clean stop) and stop scraping it; its exit code."""
        code = self.operator.terminate()
        if self.prometheus is not None:
            self.prometheus.remove_scrape_target(self.metrics_address)
        return code

    def failover(self, name: str = "domain") -> dict[str, Any]:
        """The RegionFailover ``name`` of this region's namespace, as the API server has it."""
        return self.kube.get_custom("regionfailovers", name)

    def failover_status(self, name: str = "domain") -> dict[str, Any]:
        """Its status (``{}`` until the operator wrote one)."""
        return self.failover(name).get("status") or {}

    def verdicts(self, name: str = "domain") -> dict[str, str]:
        """This region's operator's verdict on every region of the domain, by region."""
        return {item["name"]: item.get("verdict") for item in self.failover_status(name).get("regions") or []}

    def peer(self) -> dict[str, Any]:
        """This region as another region's ``spec.peers[]`` entry lists it."""
        return {"name": self.name, "gatewayAddress": self.gateway_address, "dnsRecord": HOST}


@dataclass
class TwoRegions:
    """The regions of a two-region test, by name, in :data:`REGION_NAMES` order."""

    regions: dict[str, Region]

    def __getitem__(self, name: str) -> Region:
        return self.regions[name]

    def __iter__(self) -> Iterator[Region]:
        return iter(self.regions.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.regions)

    def peers_of(self, name: str) -> list[dict[str, Any]]:
        """``spec.peers`` of ``name``'s RegionFailover: every other region with its gateway and record."""
        return [region.peer() for other, region in self.regions.items() if other != name]

    def install_domain(self, *, prometheus: PrometheusServer, scenario: SignalScenario,
                       **failover: Any) -> dict[str, RegionTraffic]:
        """In every region: the user's traffic objects and the region's RegionFailover ``domain``.

        The Deployment ``web`` runs what its autoscaler runs now in that region
        (:meth:`SignalScenario.replicas_now`); ``**failover`` goes to
        :func:`~tests.support.region_failover.region_failover` (``mode=...``,
        ``detection={...}``, ...). Returns each region's traffic objects, by region.
        """
        traffic: dict[str, RegionTraffic] = {}
        for region in self:
            traffic[region.name] = install_traffic(region.kube, region=region.name,
                                                   replicas=scenario.replicas_now(region.name))
            region.kube.apply(region_failover(region=region.name, peers=self.peers_of(region.name),
                                              prometheus_url=prometheus.url, scenario=scenario, **failover))
        return traffic

    def start_operators(self, *, prometheus: PrometheusServer,
                        timeout_seconds: float = STARTUP_TIMEOUT_SECONDS) -> dict[str, float]:
        """Start an operator in every region, each a scrape target, and wait until each is scraped.

        Returns, by region, the seconds from each target's registration until it was seen
        scraped (the first region's includes the start of the next operators).
        """
        for region in self:
            region.start_operator(prometheus=prometheus, timeout_seconds=timeout_seconds)
        return {region.name: region.wait_until_scraped() for region in self}

    def resident_memory(self) -> Mapping[str, int]:
        """Memory (PSS bytes) of each region's control plane and of its running operator, by ``<region>/<what>``."""
        out: dict[str, int] = {}
        for region in self:
            out[f"{region.name}/cluster"] = resident_memory_bytes(region.cluster.pids())
            if region.operators and region.operator.running():
                out[f"{region.name}/operator"] = resident_memory_bytes([region.operator.pid])
        return out


@pytest.fixture
def two_regions(region_clusters: dict[str, LocalCluster], tmp_path: Path) -> Iterator[TwoRegions]:
    """A namespace in each region and a gateway address; operators on demand, killed at teardown."""
    with contextlib.ExitStack() as stack:
        regions = {
            name: Region(name=name, cluster=cluster, kube=stack.enter_context(namespace_in(cluster, prefix="rg")),
                         gateway_address=f"{name}.{GATEWAY_DOMAIN}:{free_port()}", log_dir=tmp_path)
            for name, cluster in region_clusters.items()
        }
        try:
            yield TwoRegions(regions=regions)
        finally:
            for region in regions.values():
                for number, process in enumerate(region.operators, start=1):
                    if process.running():
                        process.kill()
                    print(f"----- log of region {region.name}'s operator process {number} ({process.log_path}) -----")
                    print(process.log_tail(200))
                if region.prometheus is not None and region.operators:
                    for process in region.operators:
                        region.prometheus.remove_scrape_target(f"127.0.0.1:{process.metrics_port}")

