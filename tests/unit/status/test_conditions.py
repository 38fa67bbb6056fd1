"""kstatus conditions shared by the three kinds: presence, order, transition times, observed generation."""

from kubetune.status import conditions as kstatus


def types(conds):
    return [(cd["type"], cd["status"]) for cd in conds]


def test_ready_always_the_others_only_while_true_in_a_fixed_order():
    assert kstatus.wanted("R", "m", ready=True) == [("Ready", "True", "R", "m")]
    every = kstatus.wanted("R", "m", ready=False, reconciling=True, stalled=True, failed=True, succeeded=True)
    assert [w[:2] for w in every] == [
        ("Ready", "False"),
        ("Reconciling", "True"),
        ("Stalled", "True"),
        ("Failed", "True"),
        ("Succeeded", "True"),
    ]


def test_transition_time_moves_only_when_a_status_flips_and_dropped_conditions_go():
    first = kstatus.conditions(kstatus.wanted("A", "a", ready=False, reconciling=True), [], 1, "T1")
    assert types(first) == [("Ready", "False"), ("Reconciling", "True")]
    assert {cd["observedGeneration"] for cd in first} == {1}
    held = kstatus.conditions(kstatus.wanted("B", "b", ready=False, reconciling=True), first, 2, "T2")
    assert [cd["lastTransitionTime"] for cd in held] == ["T1", "T1"]
    assert held[0]["reason"] == "B" and held[0]["observedGeneration"] == 2
    done = kstatus.conditions(kstatus.wanted("C", "c", ready=True), held, None, "T3")
    assert types(done) == [("Ready", "True")]  # Reconciling is gone, not False
    assert done[0]["lastTransitionTime"] == "T3" and "observedGeneration" not in done[0]


def test_changes_compares_the_patch_with_the_recorded_status():
    from kubetune.api.common import CommonStatus

    status = CommonStatus.model_validate({"message": "m", "observedGeneration": 3})
    assert not kstatus.changes(status, {"message": "m", "observedGeneration": 3})
    assert kstatus.changes(status, {"message": "other"})
    assert kstatus.changes(None, {"message": "m"}) and not kstatus.changes(None, {})
