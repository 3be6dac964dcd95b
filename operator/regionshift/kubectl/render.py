"""What ``kubectl regionshift status`` and ``plan`` print: pure functions, nothing decided here.

``status`` shows the RegionFailover as the API server returns it (its spec for the names and
the mode, its status for the rest), parsed with the status models of
:mod:`regionshift.api.models`. ``plan`` shows a plan computed by the operator's DryRun logic
(:mod:`regionshift.kubectl.plan`) and what it was computed from. The text fits an 80-column terminal:
the tables are 80 columns wide for names of up to 10 characters and 100 at most (longer
cells are cut with ``…``); PHASE/ROLE is a region's evacuation phase while it has one, else its
role (Savior, Serving), weights are
``region=weight`` lists, and times are ages (``12s``) or seconds since the decision (``+3.2s``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from regionshift.api.models import (
    EvacuationTimeline,
    Mode,
    Phase,
    RegionEvacuation,
    RegionFailoverStatus,
    Verdict,
)
from regionshift.kubectl.plan import PlanNow

__all__ = ["WIDTH", "render_plan", "render_status", "table"]

WIDTH = 80
"""The terminal width the text is laid out for."""


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def table(rows: Sequence[Sequence[str]], *, widths: Sequence[int] | None = None, indent: str = "") -> list[str]:
    """Rows (the first is the header) as aligned columns; a column is cut to its width in ``widths``."""
    if not rows:
        return []
    cols = len(rows[0])
    limits = list(widths) if widths is not None else [10**6] * cols
    cells = [[_clip(str(cell), limits[i]) for i, cell in enumerate(row)] for row in rows]
    sizes = [max(len(row[i]) for row in cells) for i in range(cols)]
    return [indent + "  ".join(cell.ljust(sizes[i]) for i, cell in enumerate(row)).rstrip() for row in cells]


def _num(value: float | None) -> str:
    """A number in at most 6 characters: 1234, 12.3k, 4.56M, 0.731."""
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g}k"
    if magnitude >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _age(value: str | None, now: dt.datetime) -> str:
    """``value`` (RFC 3339) as an age like kubectl's: 12s, 5m, 3h, 2d; ``-`` when absent."""
    at = _parse_time(value)
    if at is None:
        return "-"
    seconds = max(int((now - at).total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _weights(weights: Mapping[str, int] | None) -> str:
    if not weights:
        return "-"
    return " ".join(f"{region}={weight}" for region, weight in sorted(weights.items()))


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def _after(seconds: float | None) -> str:
    return "-" if seconds is None else f"+{seconds:.1f}s"


def _region_phase(evacuation: RegionEvacuation) -> str:
    if evacuation.phase == Phase.FAILING_BACK:
        return f"FailingBack {round(evacuation.share * 100)}%"
    return str(evacuation.phase)


def _timeline_lines(timeline: EvacuationTimeline, *, title: str, now: dt.datetime) -> list[str]:
    lines = [f"{title} {timeline.region} (by {timeline.actor}, decided {_age(timeline.decided_at, now)} ago)"
             + (f": {timeline.reason}" if timeline.reason else "")]
    milestones = [
        ("ungated", timeline.ungated_at, timeline.ungated_after_seconds),
        ("shifted", timeline.shifted_at, timeline.shifted_after_seconds),
        ("settled", timeline.settled_at, timeline.settled_after_seconds),
        ("failback started", timeline.failback_started_at, timeline.failback_started_after_seconds),
        ("failback done", timeline.failback_done_at, timeline.failback_done_after_seconds),
    ]
    rows = [["MILESTONE", "AFTER DECISION", "AT"]]
    rows += [[label, _after(after), at or "-"] for label, at, after in milestones]
    return lines + table(rows, indent="  ")


def render_status(*, rf: Mapping[str, Any], now: dt.datetime) -> str:
    """The ``status`` text of one RegionFailover ``rf`` (a dict as the API server returns it) at ``now``."""
    metadata = rf.get("metadata") or {}
    spec = rf.get("spec") or {}
    status = RegionFailoverStatus.model_validate(rf.get("status") or {})
    mode = spec.get("mode") or Mode.DRY_RUN.value
    phase = status.phase or "-"
    header = (f"RegionFailover {metadata.get('namespace', '')}/{metadata.get('name', '')}"
              f"  region {spec.get('region', '-')}  mode {mode}  phase {phase}"
              f"  evaluated {_age(status.last_evaluated_at, now)} ago")
    lines = [_clip(header, WIDTH * 3 // 2)]
    if spec.get("evacuate"):
        lines.append(f"spec.evacuate: {', '.join(spec['evacuate'])}")
    if status.evacuation_gate:
        lines.append(f"evacuation gate: {status.evacuation_gate}")
    lines.append("")

    evacuations = {evacuation.region: evacuation for evacuation in status.evacuations}
    roles = status.roles or {}
    names = [s.name for s in status.regions]
    names += [name for name in [spec.get("region"), *(p.get("name") for p in spec.get("peers") or [])]
              if name and name not in names]
    by_name = {s.name: s for s in status.regions}
    rows = [["REGION", "SIGNAL", "EXPECTED", "RATIO", "VERDICT", "GUARD", "PHASE/ROLE"]]
    for name in names:
        signal = by_name.get(name)
        rows.append([
            name,
            _num(signal.actual) if signal else "-",
            _num(signal.expected) if signal else "-",
            f"{signal.ratio:.2f}" if signal and signal.ratio is not None else "-",
            str(signal.verdict) if signal else "-",
            (signal.held_back_by or "-") if signal else "-",
            _region_phase(evacuations[name]) if name in evacuations else str(roles.get(name, "-")),
        ])
    lines += table(rows, widths=[16, 6, 8, 5, 9, 14, 15])

    messages = [(s.name, s.message) for s in status.regions if s.message and s.verdict != Verdict.HEALTHY]
    if messages:
        lines.append("")
    for name, message in messages:
        lines.append(_clip(f"  {name}: {message}", WIDTH * 3 // 2))

    if status.weights:
        lines.append("")
        rows = [["ROUTE", "PROVIDER", "REGION", "CURRENT", "DESIRED", "HOLDS"]]
        for route in status.weights:
            holds = "CONFLICT" if route.conflict else ("yes" if route.holds else "no")
            current, desired = route.current or {}, route.desired or {}
            for i, region in enumerate(sorted(set(current) | set(desired)) or ["-"]):
                first = i == 0
                rows.append([route.route if first else "", str(route.provider) if first else "", region,
                             _int(current.get(region)), _int(desired.get(region)), holds if first else ""])
        lines += table(rows, widths=[20, 12, 14, 7, 7, 8])

    for evacuation in status.evacuations:
        lines.append("")
        if evacuation.waiting_for:
            lines.append(f"{evacuation.region} waits for: {evacuation.waiting_for}")
        lines += _timeline_lines(evacuation.timeline, title=f"evacuation {evacuation.phase}:", now=now)
    if not status.evacuations and status.last_evacuation is not None:
        lines.append("")
        lines += _timeline_lines(status.last_evacuation, title="last evacuation:", now=now)

    if status.deferred:
        lines.append("")
        lines += [f"deferred {region}: {why}" for region, why in sorted(status.deferred.items())]
    if status.recommendation is not None and status.recommendation.regions:
        lines.append("")
        lines.append(f"recommended: evacuate {', '.join(status.recommendation.regions)}"
                     f" ({status.recommendation.reason}); run: kubectl regionshift evacuate REGION")
    if status.history:
        last = status.history[-1]
        lines.append("")
        lines.append(f"last transition: {last.region} {last.from_phase} -> {last.to_phase}"
                     f" by {last.actor} {_age(last.at, now)} ago" + (f": {last.reason}" if last.reason else ""))
    troubled = [c for c in status.conditions if c.status != "True"]
    if troubled:
        lines.append("")
        lines += [_clip(f"condition {c.type}={c.status} {c.reason}: {c.message}", WIDTH * 3 // 2) for c in troubled]
    return "\n".join(lines) + "\n"


def render_plan(*, rf: Mapping[str, Any], computed: PlanNow, problems: Sequence[str] = (),
                prometheus_url: str = "") -> str:
    """The ``plan`` text: what evacuating a region would do here now (:func:`regionshift.kubectl.plan.plan_now`).

    ``problems``: what could not be observed (:mod:`regionshift.kubectl.live`), each counted
    as the operator would count it; ``prometheus_url``: where the peers' capacity was read.
    """
    metadata = rf.get("metadata") or {}
    where = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
    region, here = computed.region, computed.here
    lines = [_clip(f"RegionFailover {where}  region {here}  mode {computed.mode.value}: evacuating {region} now", WIDTH * 3 // 2)]
    if computed.plan is None:
        evacuation = computed.evacuation
        if evacuation is not None:
            lines.append(f"  {region} is {evacuation.phase} here already (by {evacuation.actor}): nothing more to plan;"
                         " kubectl regionshift status shows its progress")
        else:
            lines.append(f"  nothing would be planned for {region} here")
    else:
        plan = computed.plan
        if computed.together:
            lines.append(f"  planned together with {', '.join(computed.together)}: verdict Unhealthy")
        lines.append(f"  ungate here: {', '.join(plan.ungate) or 'nothing'}")
        if plan.weights:
            rows = [["ROUTE", "PROVIDER", "FROM", "TO"]]
            rows += [[w.route, str(w.provider), _weights(w.from_weights), _weights(w.to_weights)] for w in plan.weights]
            lines += table(rows, widths=[16, 12, 30, 30], indent="  ")
        else:
            lines.append("  weights: no route would change here")
        if plan.message:
            lines.append(_clip(f"  {plan.message}", WIDTH * 3))
    lines.append("")
    lines.append("computed now with the operator's DryRun logic over what this region observes:")
    verdicts = ", ".join(f"{name} {verdict.value}" for name, verdict in computed.verdicts.items())
    lines.append(f"  verdicts: {verdicts}")
    warm = ", ".join(f"{name} {count}" + (" (here)" if name == here else "") for name, count in computed.warm.items())
    lines.append(f"  warm dark replicas: {warm}" + (f" (peers from {prometheus_url})" if prometheus_url else ""))
    lines += [_clip(f"  ! {problem}", WIDTH * 3) for problem in problems]
    if computed.matches_stored is not None:
        lines.append("  status.plan, as the operator last wrote it, says the same" if computed.matches_stored else
                     "  status.plan, as the operator last wrote it, differs: the observations moved since its last run")
    lines.append("")
    lines.append("Nothing was written. Each region plans its own part: run this in every region (--context).")
    lines.append(f"To evacuate {region}: kubectl regionshift evacuate {region} in every region, or commit spec.evacuate.")
    return "\n".join(lines) + "\n"
