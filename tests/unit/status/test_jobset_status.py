"""A multi-node FineTuneJob's status from its JobSet, computed as from a batch Job."""

import datetime as dt

from kubetune.api import FineTuneJob
from kubetune.status.finetunejob import compute_status
from kubetune.status.jobset import as_batch_job

NOW = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
AT = "2025-01-01T11:59:00Z"


def ftj(status=None, **spec) -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "travel", "namespace": "team", "uid": "u", "generation": 1},
            "spec": {
                "baseModel": {"uri": "hf://m"},
                "dataset": {"train": {"uri": "pvc://d/t.jsonl"}},
                "resources": {"nodes": 2},
                **spec,
            },
            "status": status,
        }
    )


def jobset(suspend=False, conditions=(), restarts=0, counted=0, active=0, ready=0):
    status = {"restarts": restarts, "restartsCountTowardsMax": counted, "conditions": list(conditions)}
    status["replicatedJobsStatus"] = [
        {"name": "node", "active": active, "ready": ready, "succeeded": 0, "failed": 0, "suspended": 0}
    ]
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": "travel-train", "uid": "js"},
        "spec": {"suspend": suspend},
        "status": status,
    }


def cond(type_, reason, message=""):
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": AT}


def status_of(job, js, pods=()):
    return compute_status(job, as_batch_job(js), list(pods), NOW)


def test_queued_jobset_waits_for_kueue_and_a_running_one_validates_then_trains():
    assert status_of(ftj(queueName="q"), jobset(suspend=True))["phase"] == "Queued"
    assert status_of(ftj(suspend=True), jobset(suspend=True))["phase"] == "Suspended"
    patch = status_of(ftj(), jobset(active=1, ready=1))
    assert patch["phase"] == "Validating" and patch["retries"] == 0


def test_completed_jobset_succeeds_with_its_completion_time():
    patch = status_of(ftj(), jobset(conditions=[cond("Completed", "AllJobsCompleted")]))
    assert patch["phase"] == "Succeeded"
    assert patch["completionTime"] == AT


def test_group_restarts_that_count_are_the_retries():
    # two crashes (counted) and one preemption (not counted): retries is 2
    patch = status_of(ftj(), jobset(restarts=3, counted=2, active=1, ready=1))
    assert patch["retries"] == 2
    assert "retry 2 of 3" in patch["message"]


def test_jobset_out_of_restarts_fails_as_backoff_limit_exceeded():
    failed = cond("Failed", "ReachedMaxRestarts", "jobset failed due to reaching max number of restarts")
    patch = status_of(ftj(backoffLimit=2), jobset(conditions=[failed], restarts=2, counted=2))
    assert patch["phase"] == "Failed"
    assert any(c["reason"] == "BackoffLimitExceeded" for c in patch["conditions"])
    assert "failed 3 times (spec.backoffLimit: 2)" in patch["message"]


def test_invalid_data_fails_the_jobset_as_data_validation_failed():
    failed = cond("Failed", "FailJobSetFailurePolicyAction", "applying FailJobSet failure policy action")
    pod = {
        "metadata": {"name": "travel-train-node-0-0", "labels": {}},
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"name": "trainer", "state": {"terminated": {"exitCode": 3, "message": "line 4"}}}],
        },
    }
    patch = status_of(ftj(), jobset(conditions=[failed]), [pod])
    assert patch["phase"] == "Failed"
    assert any(c["reason"] == "DataValidationFailed" for c in patch["conditions"])
