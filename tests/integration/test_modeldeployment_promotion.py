"""Promotion through the API server: the best passing checkpoint is served, a better one rolls it forward,
a pin rolls it back, and each change is a revision with its reason and an Event."""

from __future__ import annotations

from typing import Any

from harness import (
    CLAIM,
    EVAL_PATH,
    FTJ_PATH,
    GROUP_PATH,
    NAMESPACE,
    Cluster,
    checkpoints,
    evaluation,
    example,
    wait_for,
)
from harness import (
    model_deployment as serving,
)

MDEP_PATH = f"{GROUP_PATH}/namespaces/{NAMESPACE}/modeldeployments/travel"


def result(step: int, score: float, passed: bool) -> dict[str, Any]:
    return {
        "model": f"checkpoint-{step}",
        "uri": f"{CLAIM}/checkpoint-{step}",
        "metrics": {"exact_match": score},
        "passed": passed,
    }


def trained_job(cluster: Cluster, *steps: int) -> None:
    """A FineTuneJob that trained: the Job controller's and the trainer's parts played here."""
    cluster.apply(example(resources={"gpus": 0}))
    wait_for(lambda: cluster.objects("jobs").get("travel-train"), what="the training Job")
    cluster.patch_status(FTJ_PATH, {"checkpoints": checkpoints(*steps), "bestCheckpoint": f"checkpoint-{steps[-1]}"})
    cluster.finish_job("travel-train")
    wait_for(lambda: cluster.ftj("travel")["status"].get("phase") == "Succeeded", what="the job to succeed")


def model_deployment(**promotion: Any) -> dict[str, Any]:
    return serving(promotion={"evaluation": {"name": "travel-eval"}, "policy": "auto", **promotion})


def mdep(cluster: Cluster) -> dict[str, Any]:
    return cluster.get(MDEP_PATH) or {}


def served(cluster: Cluster, checkpoint: str, revision: int):
    """The ModelDeployment once it serves `checkpoint` as revision `revision` (and its Deployment does too)."""

    def check():
        status = mdep(cluster).get("status") or {}
        dep = cluster.objects("deployments").get("travel")
        annotations = dep["spec"]["template"]["metadata"]["annotations"] if dep else {}
        revisions = status.get("revisions") or []
        ok = (
            status.get("servedCheckpoint") == checkpoint
            and len(revisions) == revision
            and annotations.get("kubetune.dev/checkpoint") == checkpoint
        )
        return ok and (status, dep)

    return wait_for(check, what=f"{checkpoint} served as revision {revision}")


def roll_out(cluster: Cluster) -> None:
    """The Deployment controller's part: the current template has a ready replica."""
    dep = cluster.objects("deployments")["travel"]
    generation = dep["metadata"]["generation"]
    cluster.patch_status(
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/travel",
        {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1},
    )


def event_reasons(cluster: Cluster) -> list[str]:
    return [e["reason"] for e in cluster.events("travel") if e["involvedObject"]["kind"] == "ModelDeployment"]


def test_promote_roll_forward_and_roll_back(cluster: Cluster, operator) -> None:
    trained_job(cluster, 200, 400)
    cluster.apply(evaluation())
    # The evaluation pod writes its results: checkpoint-200 passes, checkpoint-400 not yet scored well.
    eval_job = wait_for(
        lambda: next((n for n in cluster.objects("jobs") if n.startswith("travel-eval-eval-")), None),
        what="the eval Job",
    )
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.82, True), result(400, 0.6, False)]})
    cluster.finish_job(eval_job)

    cluster.apply(model_deployment())
    status, dep = served(cluster, "checkpoint-200", 1)
    assert status["revisions"][0]["reason"] == "exact_match 0.82 passed Evaluation travel-eval"
    assert status["endpoint"] == "http://travel.default.svc:8000/v1"
    assert status["phase"] == "Deploying"
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["kubetune-trainer", "serve"]  # no GPUs: the image's own server
    assert "travel" in cluster.objects("services")
    config = cluster.objects("configmaps")["travel-serve-config"]["data"]["run-config.json"]
    assert f"{CLAIM}/checkpoint-200" in config

    roll_out(cluster)
    wait_for(lambda: mdep(cluster)["status"]["phase"] == "Ready", what="Ready")

    # A better passing checkpoint appears: roll forward.
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.82, True), result(400, 0.9, True)]})
    status, _ = served(cluster, "checkpoint-400", 2)
    assert status["revisions"][1]["reason"] == (
        "exact_match 0.9 passed Evaluation travel-eval, better than checkpoint-200 (0.82)"
    )
    assert status["phase"] == "Deploying"  # the new template has not rolled out yet
    assert f"{CLAIM}/checkpoint-400" in cluster.objects("configmaps")["travel-serve-config"]["data"]["run-config.json"]

    # A pin to the earlier checkpoint: roll back.
    cluster.kubectl(
        "patch", "modeldeployment", "travel", "--type=merge", "-p", '{"spec":{"promotion":{"pin":"checkpoint-200"}}}'
    )
    status, _ = served(cluster, "checkpoint-200", 3)
    assert status["revisions"][2]["reason"] == "pinned to checkpoint-200 (rollback from checkpoint-400)"
    assert [r["revision"] for r in status["revisions"]] == [1, 2, 3]

    reasons = wait_for(lambda: (r := event_reasons(cluster)) and "RolledBack" in r and r, what="events")
    assert {"Promoted", "Ready", "RolledForward", "RolledBack"} <= set(reasons)
    out = cluster.kubectl("get", "mdep", "travel")
    assert "travel" in out


def test_nothing_passing_serves_nothing_and_says_why(cluster: Cluster, operator) -> None:
    trained_job(cluster, 200)
    cluster.apply(evaluation())
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.5, False)]})
    cluster.apply(model_deployment())
    status = wait_for(lambda: mdep(cluster).get("status"), what="a status")
    assert status["phase"] == "Pending"
    assert status["conditions"][0]["reason"] == "NoPassingCheckpoint"
    assert "no checkpoint passed Evaluation 'travel-eval' yet" in status["message"]
    assert "travel" not in cluster.objects("deployments")
    # Then it passes: promoted.
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.85, True)]})
    served(cluster, "checkpoint-200", 1)


def test_a_pin_to_a_missing_checkpoint_fails_visibly_until_it_is_fixed(cluster: Cluster, operator) -> None:
    trained_job(cluster, 200, 400)
    cluster.apply(model_deployment(pin="checkpoint-999"))
    status = wait_for(lambda: (s := mdep(cluster).get("status") or {}).get("phase") == "Failed" and s, what="Failed")
    conditions = {cond["type"]: cond for cond in status["conditions"]}
    assert conditions["Stalled"]["reason"] == conditions["Ready"]["reason"] == "PinnedCheckpointNotFound"
    assert conditions["Ready"]["status"] == "False"
    assert "'checkpoint-999'" in status["message"] and "it has: checkpoint-200, checkpoint-400" in status["message"]
    assert status["observedGeneration"] == 1
    assert "travel" not in cluster.objects("deployments")
    warning = wait_for(
        lambda: next((e for e in cluster.events("travel") if e["reason"] == "PinnedCheckpointNotFound"), None),
        what="the Warning event",
    )
    assert warning["type"] == "Warning" and "checkpoint-999" in warning["message"]

    cluster.kubectl(
        "patch", "modeldeployment", "travel", "--type=merge", "-p", '{"spec":{"promotion":{"pin":"checkpoint-400"}}}'
    )
    status, _ = served(cluster, "checkpoint-400", 1)
    assert "Stalled" not in {cond["type"] for cond in status["conditions"]}


def test_the_serving_deployment_follows_the_spec_by_server_side_apply(cluster: Cluster, operator) -> None:
    """What the operator applied and no longer applies goes (a node selector dropped from the spec); a field it
    owns that someone else changed is taken back, on the emulator and on a real API server alike."""
    trained_job(cluster, 200)
    cluster.apply(evaluation())
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.9, True)]})
    placed = model_deployment()
    placed["spec"]["resources"] = {"gpus": 0, "nodeSelector": {"pool": "cpu"}}
    cluster.apply(placed)
    _, dep = served(cluster, "checkpoint-200", 1)
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "cpu"}

    # Someone edits a field the operator owns: the next reconcile (this Deployment's own event) takes it back.
    cluster.http.patch(
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/travel",
        json={"spec": {"template": {"metadata": {"annotations": {"kubetune.dev/checkpoint": "tampered"}}}}},
        headers={"Content-Type": "application/merge-patch+json"},
    ).raise_for_status()
    served(cluster, "checkpoint-200", 1)

    cluster.apply(model_deployment())  # the node selector is gone from the spec
    wait_for(
        lambda: "nodeSelector" not in cluster.objects("deployments")["travel"]["spec"]["template"]["spec"],
        what="the node selector removed from the Deployment",
    )
    assert len(mdep(cluster)["status"]["revisions"]) == 1  # the same checkpoint: no new revision
