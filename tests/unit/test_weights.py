"""The weight arithmetic of evacuation and failback, and the invariants checked before every write."""

from __future__ import annotations

import pytest

from regionshift.api.models import TrafficProviderKind
from regionshift.decide.weights import (
    Layer,
    WeightInvariantError,
    apportion,
    check_invariants,
    failback_share,
    layer_of,
    target_weights,
    unplaced,
)

PROXY, DNS = Layer.PROXY, Layer.DNS


@pytest.mark.parametrize(
    ("total", "capacity", "expected"),
    [
        (100, {"a": 1, "b": 1}, {"a": 50, "b": 50}),
        (100, {"a": 1, "b": 2}, {"a": 33, "b": 67}),
        (1, {"a": 1, "b": 1}, {"a": 1, "b": 0}),
        (10, {"a": 3, "b": 0}, {"a": 10}),
        (0, {}, {}),
    ],
)
def test_apportion_sums_to_the_total_in_proportion(total: int, capacity: dict[str, int], expected: dict[str, int]) -> None:
    parts = apportion(total, capacity)
    assert parts == expected and sum(parts.values()) == total


def test_apportion_refuses_to_lose_weight() -> None:
    with pytest.raises(ValueError, match="no region has capacity"):
        apportion(5, {"a": 0})


# (name, recorded, shares, capacity, resolvable, layer, expected)
CASES = [
    ("evacuated split by ready capacity", {"east": 100, "west": 0, "central": 0}, {"east": 0.0},
     {"west": 10, "central": 30}, {"east", "west", "central"}, PROXY,
     {"east": 0, "west": 250, "central": 750}),
    ("savior without warm capacity gets nothing", {"east": 100, "west": 0, "central": 0}, {"east": 0.0},
     {"west": 10, "central": 0}, {"east", "west", "central"}, PROXY,
     {"east": 0, "west": 1000, "central": 0}),
    ("a peer whose backend does not resolve gets nothing", {"east": 100}, {"east": 0.0},
     {"west": 10, "central": 10}, {"east", "west"}, PROXY, {"east": 0, "west": 1000}),
    ("gateway default weight 1 is scaled for resolution", {"east": 1}, {"east": 0.0},
     {"west": 1, "central": 2}, {"east", "west", "central"}, PROXY, {"east": 0, "west": 333, "central": 667}),
    ("failback half way", {"east": 100, "west": 0}, {"east": 0.5}, {"west": 4},
     {"east", "west"}, PROXY, {"east": 500, "west": 500}),
    ("every share 1 restores the recorded weights exactly", {"east": 7, "west": 0}, {"east": 1.0},
     {"west": 4}, {"east", "west"}, PROXY, {"east": 7, "west": 0}),
    ("no savior: the weight stays", {"east": 100, "west": 0}, {"east": 0.0}, {"west": 0},
     {"east", "west"}, PROXY, {"east": 100, "west": 0}),
    ("savior that is itself evacuated receives nothing", {"east": 50, "west": 50, "central": 0},
     {"east": 0.0, "west": 0.0}, {"west": 5, "central": 5}, {"east", "west", "central"}, PROXY,
     {"east": 0, "west": 0, "central": 1000}),
    ("savior's own spillover route", {"west": 90, "east": 10}, {"east": 0.0}, {"west": 3},
     {"west", "east"}, PROXY, {"west": 1000, "east": 0}),
    ("dns: own record lowered, others take it elsewhere", {"east": 100}, {"east": 0.0}, {"west": 3},
     {"east"}, DNS, {"east": 0}),
    ("dns: visible records take the weight, never scaled", {"east": 100, "west": 100}, {"east": 0.0},
     {"west": 3}, set(), DNS, {"east": 0, "west": 200}),
    ("dns: never adds a record", {"west": 100}, {"east": 0.0}, {"west": 3}, set(), DNS, {"west": 100}),
    ("dns: no savior anywhere keeps the record", {"east": 100}, {"east": 0.0}, {}, set(), DNS, {"east": 100}),
    ("dns failback step", {"east": 100}, {"east": 0.3}, {"west": 3}, set(), DNS, {"east": 30}),
]


@pytest.mark.parametrize(("name", "recorded", "shares", "capacity", "resolvable", "layer", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_target_weights(name: str, recorded: dict[str, int], shares: dict[str, float], capacity: dict[str, int],
                        resolvable: set[str], layer: Layer, expected: dict[str, int]) -> None:
    got = target_weights(recorded=recorded, shares=shares, capacity=capacity, resolvable=resolvable, layer=layer)
    assert got == expected
    if layer is PROXY and any(w for w in recorded.values()):
        assert any(got.values()), "a proxy route never ends with every weight 0"
    stuck = unplaced(recorded=recorded, shares=shares, capacity=capacity, resolvable=resolvable, layer=layer)
    assert stuck == (["east"] if name.startswith(("no savior", "dns: no savior")) else [])


def test_failback_steps_converge_on_the_recorded_weights() -> None:
    recorded = {"east": 3, "west": 1}
    seen = []
    for step in range(1, 20):
        share = failback_share(step=step, step_percent=30)
        seen.append(target_weights(recorded=recorded, shares={"east": share}, capacity={"west": 2},
                                   resolvable={"east", "west"}, layer=PROXY))
        if share == 1.0:
            break
    assert [s["east"] for s in seen[:-1]] == [225, 450, 675]  # 30 %, 60 %, 90 % of 750 (scaled ×250)
    assert seen[-1] == recorded


@pytest.mark.parametrize(("step", "percent", "share"), [(0, 10, 0.0), (1, 10, 0.1), (3, 25, 0.75), (4, 25, 1.0),
                                                        (3, 40, 1.0), (1, 100, 1.0)])
def test_failback_share(step: int, percent: int, share: float) -> None:
    assert failback_share(step=step, step_percent=percent) == share


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="not an integer"):
        target_weights(recorded={"east": -1}, shares={}, capacity={}, resolvable=set(), layer=PROXY)
    with pytest.raises(ValueError, match="share of east"):
        target_weights(recorded={"east": 1}, shares={"east": 1.5}, capacity={}, resolvable=set(), layer=PROXY)
    with pytest.raises(ValueError):
        failback_share(step=1, step_percent=0)


def _check(weights: dict[str, int], *, layer: Layer = PROXY, resolvable: frozenset[str] = frozenset({"west"}),
           elsewhere: bool = False) -> None:
    check_invariants(route="web", weights=weights, layer=layer, local="east", resolvable=resolvable,
                     serving_elsewhere=elsewhere)


@pytest.mark.parametrize(
    ("weights", "kwargs", "message"),
    [
        ({"east": 0, "west": 0}, {}, "every weight would be 0"),
        ({"east": 0}, {"layer": DNS}, "every weight would be 0"),
        ({"east": 0, "central": 5}, {}, "central would get weight 5 but its backend does not resolve"),
        ({"east": 1_000_001}, {}, "not an integer in 0..1000000"),
        ({"east": -1, "west": 1}, {}, "not an integer"),
        ({f"r{i}": 1 for i in range(17)} | {"east": 1}, {"resolvable": frozenset(f"r{i}" for i in range(17))},
         "more than the 16"),
    ],
)
def test_invariants_refuse_unsafe_weights(weights: dict[str, int], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(WeightInvariantError, match=message) as caught:
        _check(weights, **kwargs)  # type: ignore[arg-type]
    assert caught.value.route == "web" and "refusing weights on web" in str(caught.value)


def test_invariants_accept_safe_weights() -> None:
    _check({"east": 0, "west": 10})
    _check({"east": 10, "central": 0})  # a zero weight needs no resolving backend
    _check({"east": 0}, layer=DNS, elsewhere=True)  # the evacuated region's own record, saviors serve elsewhere


def test_layer_of_each_provider() -> None:
    assert layer_of(TrafficProviderKind.GATEWAY_API) is PROXY
    assert layer_of("IngressNginx") is PROXY
    assert layer_of(TrafficProviderKind.EXTERNAL_DNS) is DNS
