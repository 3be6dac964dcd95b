"""The local control plane: build it from pinned Go modules, start regions on loopback."""

from .build import COMPONENTS, ControlPlaneBinaries, Pins, build_control_plane, pins
from .launcher import LocalCluster, free_port, install_crds, local_clusters, state_root, stop_recorded

__all__ = [
    "COMPONENTS",
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
]
