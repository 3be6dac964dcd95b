"""The transplant's pure decision (decide/transplant.py), table-driven, without a cluster."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from regionshift.api.models import DarkClusterSpec, RegionFailoverSpec, Transplant, TransplantStep
from regionshift.controllers.darkcluster import acted_on, dark_replicas
from regionshift.controllers.regionfailover.transplant import dark_capacity
from regionshift.decide.transplant import (
    RETURN_PATIENCE_SECONDS,
    Autoscaler,
    Participant,
    PostEvent,
    ScaleMain,
    SetAutoscalerMin,
    SetTransplanted,
    decide,
    saving_since,
)

T0 = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.timezone.utc)
SETTLED = T0 - dt.timedelta(seconds=30)


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def web(**kw: Any) -> Participant:
    base: dict[str, Any] = dict(deployment="web", dark_cluster="web", replicas=2, ready=2, dark_serving=2, dark_warm=2,
                                transplanted=0)
    base.update(kw)
    return Participant(**base)


def entry(step: TransplantStep, *, since: dt.datetime = T0, **kw: Any) -> Transplant:
    base: dict[str, Any] = dict(deployment="web", dark_cluster="web", step=step, recorded_replicas=2, raised_to=4,
                                moved_replicas=2, since=stamp(since))
    base.update(kw)
    return Transplant(**base)


def writes(decision: Any) -> list[Any]:
    return [a for a in decision.actions if not isinstance(a, PostEvent)]


def reasons(decision: Any) -> list[str]:
    return [a.reason for a in decision.actions if isinstance(a, PostEvent)]


HPA = Autoscaler(name="web", min_replicas=2, max_replicas=10)

# (case, after_seconds, saving_since, taking_part, participant, recorded, expected writes, expected steps, events)
CASES = [
    ("never by default", None, SETTLED, True, web(), None, [], [], []),
    ("not settled long enough", 60, SETTLED, True, web(), None, [], [], []),
    ("not saving", 10, None, True, web(), None, [], [], []),
    ("no evacuation any more", 10, SETTLED, False, web(), None, [], [], []),
    ("no dark pod serving", 10, SETTLED, True, web(dark_serving=0), None, [], [], []),
    ("start: raise main", 10, SETTLED, True, web(), None,
     [ScaleMain(deployment="web", replicas=4, from_replicas=2)], [TransplantStep.RAISING], ["TransplantStarted"]),
    ("start with an autoscaler: raise minReplicas", 10, SETTLED, True, web(autoscaler=HPA, replicas=3), None,
     [SetAutoscalerMin(autoscaler="web", deployment="web", min_replicas=5, from_min_replicas=2)],
     [TransplantStep.RAISING], ["TransplantStarted"]),
    ("autoscaler at its ceiling: nothing moves", 10, SETTLED, True,
     web(autoscaler=Autoscaler(name="web", min_replicas=2, max_replicas=2)), None, [], [], []),
    ("autoscaler with room for one: one moves", 10, SETTLED, True,
     web(autoscaler=Autoscaler(name="web", min_replicas=2, max_replicas=3)), None,
     [SetAutoscalerMin(autoscaler="web", deployment="web", min_replicas=3, from_min_replicas=2)],
     [TransplantStep.RAISING], ["TransplantStarted"]),
    ("raising: new pods not Ready yet", 10, SETTLED, True, web(replicas=4, ready=3), entry(TransplantStep.RAISING),
     [], [TransplantStep.RAISING], []),
    ("raising: main lost the raise, raised again", 10, SETTLED, True, web(replicas=2, ready=2),
     entry(TransplantStep.RAISING), [ScaleMain(deployment="web", replicas=4, from_replicas=2)],
     [TransplantStep.RAISING], []),
    ("raising: main Ready, lower the dark one", 10, SETTLED, True, web(replicas=4, ready=4),
     entry(TransplantStep.RAISING), [SetTransplanted(dark_cluster="web", replicas=2)],
     [TransplantStep.TRANSPLANTED], ["Transplanted"]),
    ("transplanted: holds, nothing to write", 10, SETTLED, True, web(replicas=4, ready=4, transplanted=2,
                                                                       dark_serving=0, dark_warm=0),
     entry(TransplantStep.TRANSPLANTED), [], [TransplantStep.TRANSPLANTED], []),
    ("transplanted: the field was lost (restart), written again", 10, SETTLED, True, web(replicas=4, ready=4),
     entry(TransplantStep.TRANSPLANTED), [SetTransplanted(dark_cluster="web", replicas=2)],
     [TransplantStep.TRANSPLANTED], []),
    ("failing back: still holds", 10, None, True, web(replicas=4, ready=4, transplanted=2, dark_serving=0,
                                                      dark_warm=0),
     entry(TransplantStep.TRANSPLANTED), [], [TransplantStep.TRANSPLANTED], []),
    ("evacuation over: give the dark capacity back first", 10, None, False,
     web(replicas=4, ready=4, transplanted=2, dark_serving=0, dark_warm=0), entry(TransplantStep.TRANSPLANTED),
     [SetTransplanted(dark_cluster="web", replicas=0)], [TransplantStep.RETURNING], ["TransplantReturning"]),
    ("returning: dark not warm yet", 10, None, False, web(replicas=4, ready=4, dark_serving=0, dark_warm=1),
     entry(TransplantStep.RETURNING), [], [TransplantStep.RETURNING], []),
    ("returning: dark warm, main back to its record", 10, None, False,
     web(replicas=4, ready=4, dark_serving=0, dark_warm=2), entry(TransplantStep.RETURNING),
     [ScaleMain(deployment="web", replicas=2, from_replicas=4)], [], ["TransplantReturned"]),
    ("returning: dark never warm, main back after the patience", 10, None, False,
     web(replicas=4, ready=4, dark_serving=0, dark_warm=0),
     entry(TransplantStep.RETURNING, since=T0 - dt.timedelta(seconds=RETURN_PATIENCE_SECONDS + 1)),
     [ScaleMain(deployment="web", replicas=2, from_replicas=4)], [], ["TransplantReturned"]),
    ("returning: someone changed main since the raise, left alone", 10, None, False,
     web(replicas=6, ready=6, dark_serving=0, dark_warm=2), entry(TransplantStep.RETURNING), [], [],
     ["TransplantReturned"]),
    ("returning with an autoscaler: its recorded minReplicas", 10, None, False,
     web(replicas=5, ready=5, dark_serving=0, dark_warm=2, autoscaler=Autoscaler(name="web", min_replicas=5,
                                                                                 max_replicas=10)),
     entry(TransplantStep.RETURNING, autoscaler="web", raised_to=5),
     [SetAutoscalerMin(autoscaler="web", deployment="web", min_replicas=2, from_min_replicas=5)], [],
     ["TransplantReturned"]),
    ("evacuation over while raising: main back at once (dark never lowered)", 10, None, False,
     web(replicas=4, ready=3), entry(TransplantStep.RAISING), [ScaleMain(deployment="web", replicas=2, from_replicas=4)],
     [], ["TransplantReturning", "TransplantReturned"]),
]


@pytest.mark.parametrize(("after", "since", "taking_part", "participant", "recorded", "actions", "steps", "events"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(after: int | None, since: dt.datetime | None, taking_part: bool, participant: Participant,
                recorded: Transplant | None, actions: list[Any], steps: list[TransplantStep],
                events: list[str]) -> None:
    decision = decide(after_seconds=after, saving_since=since, taking_part=taking_part, participants=[participant],
                      transplants=[recorded] if recorded else [], now=T0)
    assert writes(decision) == actions
    assert [TransplantStep(t.step) for t in decision.transplants] == steps
    assert reasons(decision) == events


def test_a_new_transplant_records_what_to_return_to_and_is_flagged_for_recording_first() -> None:
    decision = decide(after_seconds=0, saving_since=SETTLED, taking_part=True, participants=[web(replicas=3)],
                      transplants=[], now=T0)
    assert decision.started == ["web"]
    [t] = decision.transplants
    assert (t.recorded_replicas, t.raised_to, t.moved_replicas, t.autoscaler) == (3, 5, 2, None)
    assert decision.moving and decision.writes


def test_the_whole_way_keeps_ready_serving_pods_and_returns_exactly() -> None:
    """Simulate the world between steps: ready serving pods (main + dark serving) never drop before the return."""
    world = {"replicas": 2, "ready": 2, "dark_serving": 2, "dark_warm": 2, "transplanted": 0}
    transplants: list[Transplant] = []
    serving = []
    now = T0
    for taking_part in [True] * 4 + [False] * 4:
        decision = decide(after_seconds=0, saving_since=SETTLED, taking_part=taking_part,
                          participants=[web(**world)], transplants=transplants, now=now)
        for action in writes(decision):
            if isinstance(action, ScaleMain):
                world["replicas"] = action.replicas
            elif isinstance(action, SetTransplanted):
                world["transplanted"] = action.replicas
        transplants = decision.transplants
        # the cluster catches up: main pods get Ready, the dark Deployment follows sized - transplanted
        world["ready"] = world["replicas"]
        dark = max(0, 2 - world["transplanted"])
        world["dark_warm"] = dark
        world["dark_serving"] = dark if taking_part else 0
        if taking_part:
            serving.append(world["ready"] + world["dark_serving"])
        now += dt.timedelta(seconds=1)
    assert min(serving) >= 4
    assert transplants == [] and world == {"replicas": 2, "ready": 2, "dark_serving": 0, "dark_warm": 2,
                                           "transplanted": 0}


def test_a_deployment_that_left_drops_its_record_with_a_warning() -> None:
    decision = decide(after_seconds=0, saving_since=SETTLED, taking_part=True, participants=[],
                      transplants=[entry(TransplantStep.TRANSPLANTED)], now=T0)
    assert decision.transplants == [] and writes(decision) == []
    assert [(a.type, a.reason) for a in decision.actions if isinstance(a, PostEvent)] == [
        ("Warning", "TransplantDropped")]


@pytest.mark.parametrize(("roles", "evacuations", "expected"), [
    (None, [], None),
    ({"east": "Savior", "west": "Evacuated"}, [("west", "Evacuated", stamp(SETTLED))], SETTLED),
    ({"east": "Serving", "west": "Evacuated"}, [("west", "Evacuated", stamp(SETTLED))], None),
    ({"east": "Savior", "west": "Evacuated"}, [("west", "Evacuating", None)], None),
    ({"east": "Savior", "west": "Evacuated"}, [("west", "FailingBack", stamp(SETTLED))], None),
    ({"east": "Savior", "west": "Evacuated", "north": "Evacuated"},
     [("west", "Evacuated", stamp(SETTLED)), ("north", "Evacuated", stamp(T0))], T0),
])
def test_saving_since(roles: dict[str, str] | None, evacuations: list[tuple[str, str, str | None]],
                      expected: dt.datetime | None) -> None:
    assert saving_since(here="east", roles=roles, evacuations=evacuations) == expected


@pytest.mark.parametrize(("status", "expected"), [
    ({"warmReplicas": 2, "readyReplicas": 2}, (2, 2)),
    ({"warmReplicas": 0, "readyReplicas": 0, "transplantedReplicas": 2, "desiredReplicas": 0}, (2, 2)),
    ({"warmReplicas": 2, "readyReplicas": 2, "transplantedReplicas": 2, "desiredReplicas": 0}, (2, 2)),
    ({"warmReplicas": 2, "readyReplicas": 2, "transplantedReplicas": 2, "desiredReplicas": 2}, (4, 4)),
    ({"warmReplicas": 1, "readyReplicas": 0, "transplantedReplicas": 1}, (2, 1)),
])
def test_transplanted_replicas_still_count_as_savior_capacity(status: dict[str, Any],
                                                              expected: tuple[int, int]) -> None:
    assert dark_capacity(status) == expected


@pytest.mark.parametrize(("status", "expected"), [
    ({}, 2), ({"transplantedReplicas": 1}, 1), ({"transplantedReplicas": 2}, 0), ({"transplantedReplicas": 5}, 0),
])
def test_the_dark_cluster_keeps_sized_less_transplanted(status: dict[str, Any], expected: int) -> None:
    spec = DarkClusterSpec.model_validate({"targetDeployment": "web", "replicas": {"fixedReplicas": 2}})
    assert dark_replicas(spec=spec, status=status) == expected


def test_a_transplant_wakes_the_dark_cluster() -> None:
    body = {"metadata": {"generation": 1}, "status": {"evacuationGate": "Open"}}
    moved = {"metadata": {"generation": 1}, "status": {"evacuationGate": "Open", "transplantedReplicas": 2}}
    assert acted_on(body) != acted_on(moved)


@pytest.mark.parametrize("value", [-1, 604801])
def test_transplant_after_seconds_is_validated(value: int) -> None:
    spec = {"region": "east", "peers": [{"name": "west"}], "selector": {"matchLabels": {"tier": "web"}},
            "signal": {"prometheusUrl": "http://p", "query": "q{region}"}, "darkCapacity": {"transplantAfterSeconds": value}}
    with pytest.raises(ValueError):
        RegionFailoverSpec.model_validate(spec)
    assert RegionFailoverSpec.model_validate({**spec, "darkCapacity": {}}).dark_capacity.transplant_after_seconds is None


# ---------------------------------------------------------------- the controller, with the API server mocked


def _deployment(name: str, replicas: int, ready: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": {"tier": "web"}},
            "spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}


def _rf_spec() -> RegionFailoverSpec:
    return RegionFailoverSpec.model_validate({
        "region": "east", "peers": [{"name": "west"}], "selector": {"matchLabels": {"tier": "web"}}, "mode": "Manual",
        "signal": {"prometheusUrl": "http://p", "query": "q{region}"}, "darkCapacity": {"transplantAfterSeconds": 0}})


def _mock_cluster(monkeypatch: pytest.MonkeyPatch, *, scale_refused: bool) -> dict[str, list[Any]]:
    """The API server mocked: the one failure a real one would not give on demand (a refused scale)."""
    from regionshift.adapters import events, kube

    calls: dict[str, list[Any]] = {"scale": [], "transplanted": [], "apply": [], "events": []}
    dc = {"metadata": {"name": "web", "ownerReferences": [{"uid": "rf-uid", "controller": True}]},
          "spec": {"targetDeployment": "web"}, "status": {"warmReplicas": 2, "readyReplicas": 0}}

    def scale(**kw: Any) -> None:
        calls["scale"].append(kw)
        if scale_refused:
            raise kube.ApiException(status=409, reason="Conflict")

    monkeypatch.setattr(kube, "list_deployments", lambda **kw: [_deployment("web", 4, 4)])
    monkeypatch.setattr(kube, "list_custom", lambda **kw: [dc])
    monkeypatch.setattr(kube, "list_horizontal_pod_autoscalers", lambda **kw: [])
    monkeypatch.setattr(kube, "scale_deployment", scale)
    monkeypatch.setattr(kube, "set_transplanted_replicas", lambda **kw: calls["transplanted"].append(kw))
    monkeypatch.setattr(kube, "apply_custom_status", lambda **kw: calls["apply"].append(kw["status"]))
    monkeypatch.setattr(events, "post_event", lambda **kw: calls["events"].append((kw["reason"], kw["message"])))
    return calls


@pytest.mark.parametrize("refused", [False, True], ids=["returned", "lowering refused (mocked)"])
def test_a_return_whose_lowering_is_refused_keeps_its_record_and_says_so(
    monkeypatch: pytest.MonkeyPatch, refused: bool,
) -> None:
    import asyncio

    from regionshift.api.models import RegionFailoverStatus
    from regionshift.controllers.regionfailover.transplant import transplant

    calls = _mock_cluster(monkeypatch, scale_refused=refused)
    before = RegionFailoverStatus(transplants=[entry(TransplantStep.RETURNING)])
    body = {"apiVersion": "regionshift.io/v1alpha1", "kind": "RegionFailover",
            "metadata": {"name": "shop", "namespace": "ns", "uid": "rf-uid", "generation": 1}}
    moving = asyncio.run(transplant(body=body, spec=_rf_spec(), before=before, after=RegionFailoverStatus(), now=T0))
    assert [c["replicas"] for c in calls["scale"]] == [2]
    [applied] = calls["apply"]
    [condition] = applied["conditions"]
    if refused:
        assert moving
        assert [t["step"] for t in applied["transplants"]] == ["Returning"]
        assert (condition["type"], condition["status"], condition["reason"]) == (
            "TransplantApplied", "False", "TransplantFailed")
        assert any(reason == "TransplantFailed" for reason, _ in calls["events"])
    else:
        assert "transplants" not in applied  # left out: server-side apply removes the list this manager held
        assert (condition["type"], condition["status"]) == ("TransplantApplied", "True")
        assert ("TransplantReturned", "transplant web returned: dark capacity 2 warm, main 4→2") in calls["events"]
