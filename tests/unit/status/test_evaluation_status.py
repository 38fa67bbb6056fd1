"""Evaluation status from its evaluation Job (and from the local evaluator): phases, Passed, best, times."""

from __future__ import annotations

from kubetune.api import Evaluation
from kubetune.status import evaluation as ev_status

NOW = "2025-01-01T00:00:00Z"


def evaluation(generation=1, status=None, **spec) -> Evaluation:
    return Evaluation.model_validate(
        {
            "metadata": {"name": "travel-eval", "namespace": "ns", "uid": "e-1", "generation": generation},
            "spec": {
                "model": {"fineTuneJob": {"name": "travel"}},
                "dataset": {"uri": "pvc://datasets/travel/test.jsonl"},
                "metrics": ["exact_match", "prompt_tokens"],
                "baseline": {"fewShot": 2},
                "resources": {"gpus": 1},
                **spec,
            },
            "status": status,
        }
    )


def complete(models="checkpoint-100,checkpoint-200", state="Complete") -> dict:
    return {
        "metadata": {"name": "travel-eval-eval-x", "annotations": {"kubetune.dev/evaluated-models": models}},
        "status": {
            "startTime": "2025-01-01T00:00:00Z",
            "completionTime": "2025-01-01T00:10:00Z",
            "conditions": [{"type": state, "status": "True", "message": "BackoffLimitExceeded: pod failed"}],
        },
    }


RESULTS = {
    "results": [
        {
            "model": "checkpoint-100",
            "metrics": {"exact_match": 0.7, "prompt_tokens": 40},
            "passed": False,
            "failures": ["exact_match 0.7 < min 0.8"],
        },
        {"model": "checkpoint-200", "metrics": {"exact_match": 0.88, "prompt_tokens": 38}, "passed": True},
    ]
}


def test_completed_job_records_passed_best_and_evaluated_checkpoints():
    e = evaluation(status=RESULTS)
    out = ev_status.observe(e, complete())
    assert out.phase == "Succeeded" and out.passed is True
    assert out.message == "Evaluated 2 models: best checkpoint-200 exact_match 0.88, passed"
    patch = ev_status.compute_status(e, out, complete(), NOW)
    assert patch["evaluatedCheckpoints"] == ["checkpoint-100", "checkpoint-200"]
    assert patch["passed"] is True and patch["best"] == "checkpoint-200"
    conds = {x["type"]: x for x in patch["conditions"]}
    assert conds["Passed"]["status"] == "True" and conds["Ready"]["status"] == "True"
    assert "Reconciling" not in conds
    assert patch["completionTime"] == "2025-01-01T00:10:00Z"


def test_nothing_passing_says_which_criteria_failed():
    status = {"results": [RESULTS["results"][0]]}
    out = ev_status.observe(evaluation(status=status), complete("checkpoint-100"))
    assert out.passed is False and out.reason == "CriteriaNotMet"
    assert "no model passed: exact_match 0.7 < min 0.8" in out.message
    patch = ev_status.compute_status(evaluation(status=status), out, complete("checkpoint-100"), NOW)
    assert {x["type"]: x["status"] for x in patch["conditions"]}["Passed"] == "False"


def test_running_failed_and_waiting():
    running = {"metadata": {"name": "j", "annotations": {"kubetune.dev/evaluated-models": "checkpoint-100"}}}
    out = ev_status.observe(evaluation(), running)
    assert (out.phase, out.reason) == ("Running", "Evaluating") and "checkpoint-100" in out.message
    patch = ev_status.compute_status(evaluation(), out, running, NOW)
    assert patch["startTime"] == NOW and patch["completionTime"] is None
    failed = ev_status.observe(evaluation(), complete(state="Failed"))
    assert failed.phase == "Failed" and "kubectl logs job/travel-eval-eval-x" in failed.message
    conds = {
        x["type"] for x in ev_status.compute_status(evaluation(), failed, complete(state="Failed"), NOW)["conditions"]
    }
    assert {"Stalled", "Failed"} <= conds
    waiting = ev_status.observe(evaluation(), None, "FineTuneJob 'travel' has no checkpoint 'all' yet")
    assert (waiting.phase, waiting.reason) == ("Pending", "WaitingForCheckpoints")
