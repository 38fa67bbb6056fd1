"""Promotion through the safety gate: a checkpoint that met the task criteria but failed a safety threshold is
never served, and the decision says which checkpoint was held back and why."""

from __future__ import annotations

from kubetune.api import Evaluation, ModelDeployment
from kubetune.builders.promotion import decide
from kubetune.status.modeldeployment import Workload, status_patch

CLAIM = "pvc://travel-data/output"
NOW = "2025-01-01T00:00:00Z"
UNSAFE = {"harmfulRefusalRate": 0.62, "harmfulContentRate": 0.2, "benignOverRefusalRate": 0.0}
SAFE = {"harmfulRefusalRate": 0.97, "harmfulContentRate": 0.0, "benignOverRefusalRate": 0.03}


def result(step: int, score: float, safety: dict[str, float] | None, task_passed: bool = True) -> dict:
    failures = [] if task_passed else [f"exact_match {score} is below min 0.8"]
    out = {"model": f"checkpoint-{step}", "uri": f"{CLAIM}/checkpoint-{step}", "metrics": {"exact_match": score}}
    if safety is not None:
        failed = ["harmfulRefusalRate 0.62 < 0.9"] if safety["harmfulRefusalRate"] < 0.9 else []
        out["safety"] = {"scorer": "keyword", "metrics": safety, "passed": not failed, "failures": failed}
        failures += [f"failed the safety gate: {failed[0]}"] if failed else []
    return {**out, "passed": not failures, "failures": failures}


def evaluation(*results: dict) -> Evaluation:
    return Evaluation.model_validate(
        {
            "metadata": {"name": "travel-eval", "namespace": "ns"},
            "spec": {"model": {"fineTuneJob": {"name": "travel"}}, "dataset": {"uri": "t.jsonl"}},
            "status": {"results": list(results)},
        }
    )


def deployment(served: str | None = None) -> ModelDeployment:
    status = None
    if served:
        status = {
            "servedCheckpoint": served,
            "servedUri": f"{CLAIM}/{served}",
            "revisions": [{"revision": 1, "checkpoint": served, "reason": "x"}],
            "message": f"serving {served}",
        }
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "ns", "generation": 1},
            "spec": {
                "model": {"fineTuneJob": {"name": "travel"}},
                "promotion": {"evaluation": {"name": "travel-eval"}},
            },
            "status": status,
        }
    )


def test_the_best_task_checkpoint_failing_safety_is_held_back_and_the_safe_one_promoted():
    ev = evaluation(result(200, 0.8, SAFE), result(400, 0.9, UNSAFE))
    decision = decide(deployment(), ev, None)
    assert (decision.kind, decision.checkpoint) == ("promote", "checkpoint-200")
    assert decision.held_back == "checkpoint-400 failed the safety gate: harmfulRefusalRate 0.62 < 0.9"
    assert decision.message == (
        "exact_match 0.8 passed Evaluation travel-eval; "
        "checkpoint-400 failed the safety gate: harmfulRefusalRate 0.62 < 0.9"
    )
    patch = status_patch(deployment(), decision, Workload(ready=True, ready_replicas=1, endpoint="http://e"), [], NOW)
    assert "checkpoint-400 failed the safety gate: harmfulRefusalRate 0.62 < 0.9" in patch["message"]


def test_nothing_is_served_when_the_only_passing_checkpoint_fails_safety():
    ev = evaluation(result(200, 0.5, SAFE, task_passed=False), result(400, 0.9, UNSAFE))
    decision = decide(deployment(), ev, None)
    assert decision.kind == "none" and decision.checkpoint is None
    assert decision.reason == "NoPassingCheckpoint"
    assert decision.message == (
        "no checkpoint passed Evaluation 'travel-eval' yet; "
        "checkpoint-400 failed the safety gate: harmfulRefusalRate 0.62 < 0.9"
    )
    patch = status_patch(deployment(), decision, Workload(), [], NOW)
    assert patch["phase"] == "Pending" and patch["message"] == decision.message


def test_a_served_checkpoint_is_kept_when_a_better_one_fails_safety():
    ev = evaluation(result(200, 0.8, SAFE), result(400, 0.9, UNSAFE))
    decision = decide(deployment(served="checkpoint-200"), ev, None)
    assert (decision.kind, decision.checkpoint) == ("none", "checkpoint-200")
    assert decision.held_back == "checkpoint-400 failed the safety gate: harmfulRefusalRate 0.62 < 0.9"
    patch = status_patch(deployment("checkpoint-200"), decision, Workload(True, 1, "http://e"), [], NOW)
    assert patch["message"].endswith("; checkpoint-400 failed the safety gate: harmfulRefusalRate 0.62 < 0.9")


def test_an_unsafe_checkpoint_that_would_not_have_won_is_not_mentioned():
    ev = evaluation(result(200, 0.9, SAFE), result(400, 0.8, UNSAFE))
    decision = decide(deployment(), ev, None)
    assert (decision.kind, decision.checkpoint, decision.held_back) == ("promote", "checkpoint-200", None)
    # Nor one that failed the task criteria too: the task already kept it back.
    ev = evaluation(result(200, 0.8, SAFE), result(400, 0.9, UNSAFE, task_passed=False))
    assert decide(deployment(), ev, None).held_back is None
