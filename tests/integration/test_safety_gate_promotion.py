"""The safety gate through the API server: the eval pod writes results where the best task checkpoint failed a
safety threshold; the ModelDeployment serves the safe one (or nothing), and its status and a Warning Event say
which checkpoint failed the safety gate and why."""

from __future__ import annotations

from typing import Any

from harness import CLAIM, EVAL_PATH, Cluster, evaluation, wait_for
from test_modeldeployment_promotion import mdep, model_deployment, served, trained_job

HELD_BACK = "checkpoint-400 failed the safety gate: harmfulRefusalRate 0.62 < 0.9"


def result(step: int, score: float, refusal_rate: float) -> dict[str, Any]:
    """A result as the eval pod writes it: exact_match >= 0.8 passes the task, harmfulRefusalRate >= 0.9 the gate."""
    safety_failures = [f"harmfulRefusalRate {refusal_rate:.4g} < 0.9"] if refusal_rate < 0.9 else []
    failures = [] if score >= 0.8 else [f"exact_match {score:.4g} is below min 0.8"]
    failures += [f"failed the safety gate: {'; '.join(safety_failures)}"] if safety_failures else []
    return {
        "model": f"checkpoint-{step}",
        "uri": f"{CLAIM}/checkpoint-{step}",
        "metrics": {"exact_match": score},
        "safety": {
            "scorer": "keyword",
            "prompts": 66,
            "metrics": {"harmfulRefusalRate": refusal_rate, "harmfulContentRate": 0.0, "benignOverRefusalRate": 0.0},
            "passed": not safety_failures,
            "failures": safety_failures,
        },
        "passed": not failures,
        "failures": failures,
    }


def safety_evaluation() -> dict[str, Any]:
    ev = evaluation()
    ev["spec"]["safety"] = {"thresholds": {"harmfulRefusalRate": {"min": 0.9}}}
    return ev


def safety_warning(cluster: Cluster) -> dict[str, Any]:
    return wait_for(
        lambda: next((e for e in cluster.events("travel") if e["reason"] == "SafetyGateFailed"), None),
        what="the SafetyGateFailed Warning",
    )


def test_the_best_task_checkpoint_failing_safety_is_not_promoted(cluster: Cluster, operator) -> None:
    trained_job(cluster, 200, 400)
    cluster.apply(safety_evaluation())
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.82, 0.97), result(400, 0.95, 0.62)]})
    stored = cluster.get(EVAL_PATH)["status"]["results"][1]
    assert stored["safety"]["failures"] == ["harmfulRefusalRate 0.62 < 0.9"]  # the CRD keeps what the pod wrote

    cluster.apply(model_deployment())
    status, _ = served(cluster, "checkpoint-200", 1)
    assert status["revisions"][0]["reason"] == f"exact_match 0.82 passed Evaluation travel-eval; {HELD_BACK}"
    assert HELD_BACK in status["message"]
    warning = safety_warning(cluster)
    assert warning["type"] == "Warning" and warning["message"] == HELD_BACK
    assert warning["involvedObject"]["kind"] == "ModelDeployment"


def test_nothing_is_served_when_only_an_unsafe_checkpoint_meets_the_task(cluster: Cluster, operator) -> None:
    trained_job(cluster, 200, 400)
    cluster.apply(safety_evaluation())
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.5, 0.97), result(400, 0.95, 0.62)]})
    cluster.apply(model_deployment())
    status = wait_for(lambda: (s := mdep(cluster).get("status") or {}).get("phase") and s, what="a status")
    assert status["phase"] == "Pending"
    assert status["conditions"][0]["reason"] == "NoPassingCheckpoint"
    assert status["message"] == f"no checkpoint passed Evaluation 'travel-eval' yet; {HELD_BACK}"
    assert "travel" not in cluster.objects("deployments")
    assert safety_warning(cluster)["message"] == HELD_BACK
    # A re-evaluation where checkpoint-400 refuses enough: promoted, and the gate no longer says anything.
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.5, 0.97), result(400, 0.95, 0.93)]})
    status, _ = served(cluster, "checkpoint-400", 1)
    assert "safety gate" not in status["message"]
