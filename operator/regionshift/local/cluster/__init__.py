"""The local control plane: build it from pinned Go modules, start regions on loopback.

The third-party CRDs the traffic providers write to (Gateway API, external-dns) come from
their pinned Go modules too (:mod:`.thirdparty`); pass them to ``LocalCluster(crds=...)``
or :func:`install_crds` where a region needs them. By default a region has none.
"""

from .build import COMPONENTS, ControlPlaneBinaries, Pins, build_control_plane, pins
from .launcher import LocalCluster, free_port, install_crds, local_clusters, state_root, stop_recorded
from .thirdparty import THIRD_PARTY, CrdModule, third_party_crds

__all__ = [
    "COMPONENTS",
    "CrdModule",
    "THIRD_PARTY",
    "ControlPlaneBinaries",
    "LocalCluster",
    "Pins",
    "build_control_plane",
    "free_port",
    "install_crds",
    "local_clusters",
    "pins",
    "state_root",
    "stop_recorded",
    "third_party_crds",
]
