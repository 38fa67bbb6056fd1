"""An Evaluation through the API server: it waits for checkpoints, runs the evaluation Job, reports the
outcome, and runs again (replacing the old Job) when the FineTuneJob gets new checkpoints."""

from __future__ import annotations

import json
from typing import Any

from harness import EVAL_PATH, FTJ_PATH, NAMESPACE, Cluster, checkpoints, evaluation, example, wait_for
from prometheus_client import REGISTRY


def eval_jobs(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {n: j for n, j in cluster.objects("jobs").items() if n.startswith("travel-eval-eval-")}


def status(cluster: Cluster) -> dict[str, Any]:
    return (cluster.get(EVAL_PATH) or {}).get("status") or {}


def test_evaluation_waits_runs_reports_and_reruns_on_new_checkpoints(cluster: Cluster, operator) -> None:
    cluster.apply(example(resources={"gpus": 0}))
    cluster.apply(evaluation(gpus=1))
    waiting = wait_for(lambda: status(cluster).get("phase") == "Pending" and status(cluster), what="Pending")
    assert waiting["conditions"][0]["reason"] == "WaitingForCheckpoints"
    assert "has no checkpoint 'all' yet" in waiting["message"]
    assert not eval_jobs(cluster)

    # The trainer saves two checkpoints: the evaluation starts while training goes on.
    cluster.patch_status(FTJ_PATH, {"checkpoints": checkpoints(100, 200)})
    (name, job), *_ = wait_for(lambda: list(eval_jobs(cluster).items()), what="the evaluation Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"][:2] == ["kubetune-trainer", "evaluate"]
    assert pod["containers"][0]["image"] == "registry.test/kubetune-trainer:test"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    run_config = json.loads(cluster.objects("configmaps")[name]["data"]["run-config.json"])
    assert [t["name"] for t in run_config["targets"]] == ["checkpoint-100", "checkpoint-200"]
    role = cluster.objects("roles")["travel-eval-eval-runner"]
    assert role["rules"][0]["resourceNames"] == ["travel-eval"]
    wait_for(lambda: status(cluster).get("phase") == "Running", what="Running")

    # The pod writes its results; the Job completes.
    results = [
        {"model": "checkpoint-100", "metrics": {"exact_match": 0.6}, "passed": False},
        {"model": "checkpoint-200", "metrics": {"exact_match": 0.88}, "passed": True},
    ]
    cluster.patch_status(EVAL_PATH, {"results": results, "baseline": {"metrics": {"exact_match": 0.31}}})
    cluster.finish_job(name)
    done = wait_for(lambda: status(cluster).get("phase") == "Succeeded" and status(cluster), what="Succeeded")
    assert done["passed"] is True and done["best"] == "checkpoint-200"
    assert done["evaluatedCheckpoints"] == ["checkpoint-100", "checkpoint-200"]
    conditions = {c["type"]: c for c in done["conditions"]}
    assert conditions["Passed"]["status"] == "True" and conditions["Ready"]["status"] == "True"
    evaluated = wait_for(
        lambda: [e for e in cluster.events("travel-eval") if e["reason"] == "Evaluated"], what="the Evaluated event"
    )
    assert evaluated[0]["message"] == "Evaluated 2 models: best checkpoint-200 exact_match 0.88, passed"

    # A new checkpoint: a new run over all three; the finished Job it supersedes is removed.
    cluster.patch_status(FTJ_PATH, {"checkpoints": checkpoints(100, 200, 300)})
    wait_for(lambda: name not in eval_jobs(cluster) and len(eval_jobs(cluster)) == 1, what="a new evaluation Job")
    (new_name,) = eval_jobs(cluster)
    wait_for(lambda: name not in cluster.objects("configmaps"), what="the old run config removed")
    new_config = json.loads(cluster.objects("configmaps")[new_name]["data"]["run-config.json"])
    assert [t["name"] for t in new_config["targets"]] == ["checkpoint-100", "checkpoint-200", "checkpoint-300"]
    wait_for(lambda: status(cluster).get("phase") == "Running", what="Running again")
    labels = {"resource_namespace": NAMESPACE, "evaluation": "travel-eval", "metric": "exact_match"}
    assert REGISTRY.get_sample_value("kubetune_evaluation_score", {**labels, "model": "checkpoint-200"}) == 0.88
    assert REGISTRY.get_sample_value("kubetune_evaluation_score", {**labels, "model": "baseline"}) == 0.31
