"""The evacuation handler's pure parts: stale verdicts, the canary split per region, the status it owns."""

from __future__ import annotations

import datetime as dt

from regionshift.api.models import (
    Condition,
    Phase,
    RegionEvacuation,
    RegionFailoverSpec,
    RegionFailoverStatus,
    RegionSignalStatus,
    Verdict,
)
from regionshift.controllers.regionfailover.evacuation import (
    OWNED_FIELDS,
    evacuation_payload,
    tuning_of,
    verdicts_of,
)
from regionshift.controllers.regionfailover.routes import _canary_as_regions

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)


def spec(**extra: object) -> RegionFailoverSpec:
    return RegionFailoverSpec.model_validate({
        "region": "east", "peers": [{"name": "west"}, {"name": "south"}],
        "signal": {"prometheusUrl": "http://127.0.0.1:9090", "query": 'sum(x{region="{region}"})', "stepSeconds": 5},
        "selector": {"matchLabels": {"app": "web"}}, **extra})


def status_evaluated(seconds_ago: float) -> RegionFailoverStatus:
    at = (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return RegionFailoverStatus(last_evaluated_at=at, regions=[
        RegionSignalStatus(name="east", verdict=Verdict.UNHEALTHY), RegionSignalStatus(name="west")])


def test_fresh_verdicts_are_taken_from_status() -> None:
    assert verdicts_of(spec=spec(), status=status_evaluated(10), now=NOW) == {
        "east": Verdict.UNHEALTHY, "west": Verdict.UNKNOWN}


def test_stale_verdicts_count_as_unknown_so_nothing_acts_on_old_data() -> None:
    assert verdicts_of(spec=spec(), status=status_evaluated(31), now=NOW) == {}
    assert verdicts_of(spec=spec(), status=RegionFailoverStatus(), now=NOW) == {}


def test_timings_come_from_the_spec() -> None:
    tuning = tuning_of(spec(detection={"dwellSeconds": 7}, failback={"cooldownSeconds": 3, "backoffSeconds": 9}))
    assert (tuning.dwell_seconds, tuning.cooldown_seconds, tuning.backoff_seconds) == (7.0, 3.0, 9.0)


def test_a_canary_that_carries_the_desired_split_reads_as_the_desired_weights() -> None:
    desired = {"east": 0, "west": 300, "south": 100}
    assert _canary_as_regions({"east": 0, "peers": 100}, here="east", peers=["west", "south"], desired=desired,
                              total=100) == desired


def test_another_canary_share_is_spread_over_the_peers() -> None:
    assert _canary_as_regions({"east": 75, "peers": 25}, here="east", peers=["west", "south"],
                              desired={"east": 0, "west": 1}, total=100) == {"east": 75, "south": 13, "west": 12}
    assert _canary_as_regions({"east": 100, "peers": 0}, here="east", peers=["west"], desired=None,
                              total=100) == {"east": 100, "west": 0}


def test_the_payload_holds_only_the_evacuations_fields_and_its_conditions() -> None:
    status = status_evaluated(0)
    status.phase = Phase.EVACUATED
    status.evacuations = [RegionEvacuation.model_validate({
        "region": "east", "phase": "Evacuated", "actor": "Verdict", "lastTransitionAt": "2026-11-28T12:00:00Z",
        "timeline": {"region": "east", "actor": "Verdict", "decidedAt": "2026-11-28T11:59:00Z"}})]
    condition = Condition(type="RoutesReady", status="True", reason="Read", message="ok",
                          last_transition_time="2026-11-28T12:00:00Z")
    payload = evacuation_payload(status, [condition])
    assert payload["phase"] == "Evacuated" and payload["evacuations"][0]["region"] == "east"
    assert "regions" not in payload and "lastEvaluatedAt" not in payload  # detection's
    assert [c["type"] for c in payload["conditions"]] == ["RoutesReady"]
    assert "roles" not in payload  # None is left out, so server-side apply removes it
    assert {"phase", "evacuations", "weights", "history"} <= OWNED_FIELDS


def test_weights_recorded_for_the_first_time_are_written_ahead_of_the_change() -> None:
    from regionshift.api.models import RouteWeights, TrafficProviderKind
    from regionshift.controllers.regionfailover.evacuation import with_new_records

    gateway, dns = TrafficProviderKind.GATEWAY_API, TrafficProviderKind.EXTERNAL_DNS
    before = RegionFailoverStatus(phase=Phase.STEADY, weights=[
        RouteWeights(provider=dns, route="web", current={"east": 100}, recorded={"east": 100})])
    after = before.model_copy(deep=True)
    after.phase = Phase.EVACUATING
    after.weights = [
        RouteWeights(provider=gateway, route="web", current={"east": 100}, recorded={"east": 100},
                     desired={"east": 0, "west": 100}, written={"east": 0, "west": 100}),
        RouteWeights(provider=dns, route="web", current={"east": 100}, recorded={"east": 100}, desired={"east": 0}),
    ]
    ahead = with_new_records(before, after)
    assert ahead is not None and ahead.phase == Phase.STEADY  # the rest of the status is the old one
    by_route = {(w.provider, w.route): w for w in ahead.weights}
    assert by_route[(gateway, "web")].recorded == {"east": 100}
    assert by_route[(gateway, "web")].written is None and by_route[(gateway, "web")].desired is None
    assert with_new_records(after, after) is None  # nothing new to record: nothing written ahead
