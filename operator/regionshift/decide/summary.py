"""One-line summaries of a RegionFailover's status, for the columns of ``kubectl get``.

A printer column is one JSONPath to one value: it cannot join a list or pick out the regions
of ``status.evacuations``. The state machine therefore writes the summary it needs into
``status.evacuatedRegions`` (the EVACUATED column) with :func:`evacuated_regions`. The
REASON column reads the last transition's reason straight from ``status.history``.
Pure functions only.
"""

from __future__ import annotations

from collections.abc import Iterable

from regionshift.api.models import Phase, RegionEvacuation

__all__ = ["evacuated_regions"]


def _one(evacuation: RegionEvacuation) -> str:
    phase = Phase(evacuation.phase)
    if phase is Phase.EVACUATED:
        return evacuation.region
    if phase is Phase.FAILING_BACK:
        return f"{evacuation.region} ({phase.value} {evacuation.share:.0%})"
    return f"{evacuation.region} ({phase.value})"


def evacuated_regions(evacuations: Iterable[RegionEvacuation]) -> str | None:
    """The regions under evacuation in one line, by name: ``us-west, eu-west (FailingBack 30%)``.

    A region that is Evacuated appears bare; one still Evacuating or FailingBack carries its
    phase in brackets, and while failing back the share of its own traffic it serves again.
    None when there is no evacuation (Steady), so the field is left out of the status.
    """
    parts = [_one(e) for e in sorted(evacuations, key=lambda e: e.region)]
    return ", ".join(parts) or None
