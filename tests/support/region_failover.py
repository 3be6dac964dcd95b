"""A RegionFailover as a user of two local regions writes it, for tests that run one per region.

:func:`region_failover` builds the manifest one region applies: this region's name, its
peers (each with a ``gatewayAddress`` ``<region>.localhost:PORT`` and the shared ``dnsRecord``, see
:meth:`tests.support.regions.TwoRegions.peers_of`), the signal of a
:class:`~tests.support.shared_signal.SignalScenario` read from the shared Prometheus, the
participant selector of :mod:`tests.support.region_traffic`, the three traffic providers on
the route ``web``, the mode, and fast detection and failback for tests. The spec is checked
against the pydantic model before it is returned, so a typo fails where it was made rather
than as an admission error or an operator that ignores a field.

Defaults chosen for tests, each overridable by keyword (a dict argument is merged over
the default, any other spec field is passed through ``**spec``):

* signal: one sample a second (``stepSeconds: 1``), seven days of history at a minute;
* detection: three samples under 0.7 of the forecast; ``rolloutGuardSeconds: 0`` because
  the test creates its Deployments moments before it makes a region drop (with the guard on,
  that drop would be held back as ``RecentRollout`` in the region's own operator);
  ``staleAfterSeconds: 5``;
* dark capacity: sized from the scenario's replica history, with ``minReplicas: 2`` so every
  savior has warm capacity whatever the phase of the synthetic day;
* failback: 50 % steps every 5 s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from regionshift.api.models import API_GROUP, API_VERSION, Mode, RegionFailoverSpec, TrafficProviderKind
from tests.support.region_traffic import APP, PARTICIPANT_LABELS
from tests.support.shared_signal import HISTORY_DAYS, SignalScenario

__all__ = ["ALL_PROVIDERS", "region_failover"]

ALL_PROVIDERS: tuple[TrafficProviderKind, ...] = (
    TrafficProviderKind.GATEWAY_API,
    TrafficProviderKind.INGRESS_NGINX,
    TrafficProviderKind.EXTERNAL_DNS,
)

SIGNAL: Mapping[str, Any] = {"stepSeconds": 1, "historyDays": HISTORY_DAYS - 1, "historyStepSeconds": 60,
                             "refitIntervalSeconds": 3600, "timeoutSeconds": 5}
DETECTION: Mapping[str, Any] = {"ratioThreshold": 0.7, "consecutiveSamples": 3, "minimumExpected": 1.0,
                                "globalDropFraction": 0.5, "rolloutGuardSeconds": 0, "staleAfterSeconds": 5}
DARK_CAPACITY: Mapping[str, Any] = {"headroomRatio": 1.0, "minReplicas": 2, "maxReplicas": 20, "horizonSeconds": 3600}
FAILBACK: Mapping[str, Any] = {"stepPercent": 50, "stepIntervalSeconds": 5, "ratioThreshold": 0.8}


def region_failover(
    *,
    region: str,
    peers: Sequence[Mapping[str, Any]],
    prometheus_url: str,
    scenario: SignalScenario,
    name: str = "domain",
    mode: Mode | str = Mode.DRY_RUN,
    routes: Sequence[str] = (APP,),
    providers: Sequence[TrafficProviderKind | str] = ALL_PROVIDERS,
    selector: Mapping[str, str] = PARTICIPANT_LABELS,
    evacuate: Sequence[str] = (),
    signal: Mapping[str, Any] | None = None,
    detection: Mapping[str, Any] | None = None,
    dark_capacity: Mapping[str, Any] | None = None,
    failback: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """The RegionFailover ``name`` of ``region`` (a manifest dict, validated against the model).

    ``peers``: ``spec.peers`` entries (``{"name", "gatewayAddress", "dnsRecord"}``);
    ``providers`` each own every route of ``routes``; ``signal``, ``detection``,
    ``dark_capacity`` and ``failback`` are merged over the test defaults; ``**spec`` sets any
    other spec field (camelCase) as given.
    """
    body_spec: dict[str, Any] = {
        "region": region,
        "peers": [dict(peer) for peer in peers],
        "signal": {"prometheusUrl": prometheus_url, "query": scenario.query, **SIGNAL, **(signal or {})},
        "detection": {**DETECTION, **(detection or {})},
        "selector": {"matchLabels": dict(selector)},
        "darkCapacity": {"replicasQuery": scenario.replicas_query, **DARK_CAPACITY, **(dark_capacity or {})},
        "traffic": [{"kind": TrafficProviderKind(kind).value, "routes": list(routes)} for kind in providers],
        "mode": Mode(mode).value,
        "failback": {**FAILBACK, **(failback or {})},
    }
    if evacuate:
        body_spec["evacuate"] = list(evacuate)
    body_spec.update(spec)
    RegionFailoverSpec.model_validate(body_spec)
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "RegionFailover",
        "metadata": {"name": name},
        "spec": body_spec,
    }
