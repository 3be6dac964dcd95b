"""Crash points for the crash-safety tests: kill the operator at an exact step of its work.

An operator killed at a random moment proves little; one killed right after it decided,
right after opening its gate, between two route writes or in the middle of a failback proves
that every action converges when the restarted operator resumes from the status alone. No
signal sent from outside can hit those moments reliably, so the operator kills itself
there, with SIGKILL (no cleanup, no final status write, as in a node failure), when it is
started with ``REGIONSHIFT_FAILPOINTS`` naming the point. Without that variable (always,
outside tests) :func:`failpoint` does nothing.

Points (see where :func:`failpoint` is called):

* ``after-decision``: the state machine decided writes; none is carried out yet;
* ``mid-ungate``: the savior's evacuation gate (its RegionFailover's ``status.evacuationGate``)
  is written open and its DarkClusters woken; the rest of the run (routes, status) is not done;
* ``mid-shift``: the first route write of an evacuation run is done, the others are not;
* ``mid-failback``: the first route write of a failback run is done, the others are not;
* ``mid-transplant``: a transplant run made its first write (e.g. raised a main Deployment),
  the rest of the run (its status) is not written.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["ENVIRONMENT_VARIABLE", "POINTS", "failpoint"]

ENVIRONMENT_VARIABLE = "REGIONSHIFT_FAILPOINTS"
POINTS = frozenset({"after-decision", "mid-ungate", "mid-shift", "mid-failback", "mid-transplant"})


def failpoint(name: str) -> None:
    """SIGKILL this process when ``name`` is listed (comma-separated) in $REGIONSHIFT_FAILPOINTS."""
    if name not in POINTS:
        raise ValueError(f"unknown failpoint {name!r}")
    armed = os.environ.get(ENVIRONMENT_VARIABLE, "")
    if name in {p.strip() for p in armed.split(",")}:
        # straight to stderr: log records may go through a queue whose writer thread dies with us
        sys.stderr.write(f"failpoint {name}: killing the operator (SIGKILL)\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
