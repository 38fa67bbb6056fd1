"""ModelDeployment status from the promotion decision and the serving workload: Ready, Deploying, Pending, Failed."""

from __future__ import annotations

import pytest

from kubetune.api import ModelDeployment
from kubetune.builders.promotion import Decision
from kubetune.status import modeldeployment as md_status

CKPT = "pvc://travel-data/output/checkpoint-400"


def md(**spec) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "travel-assistant", "namespace": "ns", "uid": "m-1", "generation": 2},
            "spec": {"model": {"fineTuneJob": {"name": "travel"}}, **spec},
        }
    )


PROMOTE = Decision("promote", "checkpoint-400", CKPT, "Promoted", "exact_match 0.88 passed")


@pytest.mark.parametrize(
    ("apps_status", "generation", "phase", "ready"),
    [
        (None, 1, "Deploying", 0),
        ({"observedGeneration": 2, "updatedReplicas": 1, "readyReplicas": 1}, 2, "Ready", 1),
        ({"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1}, 2, "Deploying", 1),  # old template
        ({"observedGeneration": 2, "updatedReplicas": 1, "readyReplicas": 0}, 2, "Deploying", 0),
    ],
)
def test_status_is_ready_once_the_current_template_has_a_ready_replica(apps_status, generation, phase, ready):
    deployment = md()
    apps = None if apps_status is None else {"metadata": {"generation": generation}, "status": apps_status}
    patch = md_status.compute_status(deployment, PROMOTE, apps, [], "2025-01-01T00:00:00Z")
    assert (patch["phase"], patch["readyReplicas"]) == (phase, ready)
    assert patch["servedCheckpoint"] == "checkpoint-400"
    assert patch["endpoint"] == "http://travel-assistant.ns.svc:8000/v1"
    ready_cond = next(x for x in patch["conditions"] if x["type"] == "Ready")
    assert ready_cond["status"] == ("True" if phase == "Ready" else "False")
    assert any(x["type"] == "Reconciling" for x in patch["conditions"]) == (phase != "Ready")


def test_status_without_anything_to_serve_is_pending_with_the_reason():
    nothing = Decision("none", None, None, "NoPassingCheckpoint", "no checkpoint passed Evaluation 'e' yet")
    patch = md_status.compute_status(md(), nothing, None, [], "2025-01-01T00:00:00Z")
    assert patch["phase"] == "Pending" and "servedCheckpoint" not in patch
    assert patch["conditions"][0]["reason"] == "NoPassingCheckpoint"


def test_a_stalled_decision_fails_the_deployment_while_the_old_checkpoint_is_still_served():
    message = "spec.promotion.pin 'checkpoint-999' is not a checkpoint of FineTuneJob 'travel' (it has: checkpoint-400)"
    stalled = Decision("none", "checkpoint-400", "pvc://c/checkpoint-400", "PinnedCheckpointNotFound", message, True)
    apps = {
        "metadata": {"generation": 1},
        "status": {"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1},
    }
    patch = md_status.compute_status(md(), stalled, apps, [], "2025-01-01T00:00:00Z")
    assert (patch["phase"], patch["message"]) == ("Failed", message)
    conds = {x["type"]: x for x in patch["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "PinnedCheckpointNotFound"
    assert conds["Stalled"]["status"] == "True" and conds["Stalled"]["message"] == message
    assert "Reconciling" not in conds
    assert (patch["servedCheckpoint"], patch["readyReplicas"]) == ("checkpoint-400", 1)


# --- T3 D3, D4: scaled to zero is Ready; a rollout that cannot succeed says why --------------------------------


def _apps(replicas: int, status: dict, generation: int = 2) -> dict:
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas}, "status": status}


def test_a_deployment_scaled_to_zero_on_purpose_is_ready_and_says_it_is_idle():
    scaled = md(autoscaling={"minReplicas": 0, "wakeQuery": "sum(rate(requests_total[1m]))"})
    apps = _apps(0, {"observedGeneration": 2, "conditions": [{"type": "Available", "status": "True"}]})
    patch = md_status.compute_status(scaled, PROMOTE, apps, [], "2025-01-01T00:00:00Z")
    assert (patch["phase"], patch["readyReplicas"]) == ("Ready", 0)
    assert "scaled to zero" in patch["message"]
    # still terminating its last replica, or an old template: not idle yet
    going = _apps(0, {"observedGeneration": 2, "replicas": 1})
    assert md_status.compute_status(scaled, PROMOTE, going, [], "t")["phase"] == "Deploying"
    stale = _apps(0, {"observedGeneration": 1})
    assert md_status.compute_status(scaled, PROMOTE, stale, [], "t")["phase"] == "Deploying"


def _waiting_pod(reason: str, message: str) -> dict:
    waiting = {"waiting": {"reason": reason, "message": message}}
    return {"metadata": {"uid": "p"}, "status": {"containerStatuses": [{"name": "server", "state": waiting}]}}


def test_a_pod_waiting_on_a_missing_api_key_secret_stalls_and_names_spec_auth():
    secured = md(auth={"apiKeySecretRef": {"name": "travel-key", "key": "token"}})
    apps = _apps(1, {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1})
    pod = _waiting_pod("CreateContainerConfigError", 'secret "travel-key" not found')
    patch = md_status.compute_status(secured, PROMOTE, apps, [], "t", [pod])
    assert patch["phase"] == "Failed"
    assert "spec.auth.apiKeySecretRef" in patch["message"] and "travel-key" in patch["message"]
    stalled = next(x for x in patch["conditions"] if x["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "CreateContainerConfigError")


def test_a_pod_waiting_on_its_image_is_said_while_deploying_and_stalls_at_the_progress_deadline():
    pod = _waiting_pod("ImagePullBackOff", 'Back-off pulling image "vllm/vllm-openai:nope"')
    apps = _apps(1, {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1})
    patch = md_status.compute_status(md(), PROMOTE, apps, [], "t", [pod])
    assert patch["phase"] == "Deploying" and "ImagePullBackOff" in patch["message"]
    progressing = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "travel-assistant-serve-abc" has timed out progressing.',
    }
    apps["status"]["conditions"] = [progressing]
    patch = md_status.compute_status(md(), PROMOTE, apps, [], "t", [pod])
    assert patch["phase"] == "Failed" and "timed out progressing" in patch["message"]
    assert "ImagePullBackOff" in patch["message"]
    stalled = next(x for x in patch["conditions"] if x["type"] == "Stalled")
    assert stalled["reason"] == "ProgressDeadlineExceeded"
