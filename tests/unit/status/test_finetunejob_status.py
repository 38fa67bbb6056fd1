"""FineTuneJob status from its batch Job and pods: phases, kstatus conditions, reasons."""

import datetime as dt

from kubetune.api import FineTuneJob
from kubetune.api.progress import merge_patch
from kubetune.status.finetunejob import changed, compute_status, lags_trainer, observe, transition_event

NOW = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def ftj(status=None, generation=2, **spec) -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "travel", "namespace": "team", "uid": "u", "generation": generation},
            "spec": {"baseModel": {"uri": "hf://m"}, "dataset": {"train": {"uri": "pvc://d/t.jsonl"}}, **spec},
            "status": status,
        }
    )


def batch(suspend=False, **status):
    return {"metadata": {"name": "travel-train"}, "spec": {"suspend": suspend}, "status": status}


def cond(type_, reason="", ts="2025-01-01T11:59:00Z"):
    return {"type": type_, "status": "True", "reason": reason, "message": "", "lastTransitionTime": ts}


def pod(phase="Running", exit_code=None, message=None, waiting=None):
    cs = {"name": "trainer", "state": {}}
    if exit_code is not None:
        cs["state"] = {"terminated": {"exitCode": exit_code, "reason": "Error", "message": message}}
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting, "message": "back-off pulling image"}}
    return {"metadata": {"name": "p"}, "status": {"phase": phase, "containerStatuses": [cs]}}


def types(patch):
    return {c["type"]: c["status"] for c in patch["conditions"]}


def test_new_job_is_pending_and_reconciling_with_observed_generation():
    patch = compute_status(ftj(), None, [], NOW)
    assert patch["phase"] == "Pending"
    assert patch["observedGeneration"] == 2
    assert types(patch) == {"Ready": "False", "Reconciling": "True"}
    assert all(c["observedGeneration"] == 2 for c in patch["conditions"])


def test_running_pod_validates_data_first_then_trains():
    running = batch(active=1, ready=1, startTime="2025-01-01T11:00:00Z")
    patch = compute_status(ftj(), running, [pod()], NOW)
    assert (patch["phase"], patch["startTime"]) == ("Validating", "2025-01-01T11:00:00Z")
    job = ftj(status={"data": {"format": "chat"}, "progress": {"step": 40, "totalSteps": 100}})
    patch = compute_status(job, running, [pod()], NOW)
    assert patch["phase"] == "Running"
    assert "step 40/100" in patch["message"]
    assert types(patch)["DataValidated"] == "True"
    assert "Stalled" not in types(patch)


def test_the_trainers_first_report_moves_validating_to_running_and_the_operators_write_settles_it():
    """The trainer's status patch (no Job or pod event) is what the operator's FineTuneJob watch acts on."""
    running = batch(active=1, ready=1, startTime="2025-01-01T11:00:00Z")
    validating = compute_status(ftj(), running, [pod()], NOW)
    assert validating["phase"] == "Validating" and not lags_trainer(validating)  # nothing reported yet
    for report in ({"data": {"format": "chat", "trainExamples": 90}}, {"progress": {"step": 1, "totalSteps": 60}}):
        reported = merge_patch(validating, report)  # the trainer's patch of its own fields
        assert lags_trainer(reported), report
        written = compute_status(ftj(status=reported), running, [pod()], NOW)
        assert (written["phase"], written["startTime"]) == ("Running", "2025-01-01T11:00:00Z")
        settled = merge_patch(reported, written)
        assert not lags_trainer(settled)  # the operator's own write does not set off another
        assert not lags_trainer(merge_patch(settled, {"progress": {"step": 2, "totalSteps": 60}}))


def test_only_a_report_of_valid_data_or_a_step_means_running():
    running = batch(active=1, ready=1)
    invalid = {"phase": "Validating", "data": {"format": "chat", "errors": ["train.jsonl:3: 'messages' is missing"]}}
    assert not lags_trainer(invalid)
    patch = compute_status(ftj(status=invalid), running, [pod()], NOW)
    assert patch["phase"] == "Validating" and "status.data.errors" in patch["message"]
    # Errors found after the data was reported valid (maxSeqLength, with the tokenizer), before any step.
    assert lags_trainer({**invalid, "phase": "Running"})
    assert not lags_trainer({**invalid, "phase": "Running", "progress": {"step": 5}})


def test_phases_the_batch_job_decides_do_not_follow_the_trainers_reports():
    reported = {"data": {"format": "chat"}, "progress": {"step": 30, "totalSteps": 60}}
    for phase in ("Pending", "Queued", "Suspended", "Succeeded", "Failed", None):
        assert not lags_trainer({**reported, "phase": phase}), phase
    assert not lags_trainer(None)
    assert not lags_trainer({"phase": "Validating", "progress": {"step": "thirty"}})  # refused by the schema


def test_job_status_alone_is_enough_without_pods():
    assert compute_status(ftj(), batch(active=1), [], NOW)["phase"] == "Validating"


def test_succeeded_job_is_ready_with_output_and_completion_time():
    job = ftj(status={"startTime": "2025-01-01T10:00:00Z", "bestCheckpoint": "checkpoint-400"}, resources={"gpus": 2})
    done = batch(succeeded=1, completionTime="2025-01-01T11:00:00Z", conditions=[cond("Complete")])
    patch = compute_status(job, done, [], NOW)
    assert patch["phase"] == "Succeeded"
    assert types(patch) == {"Ready": "True", "Succeeded": "True"}
    assert patch["completionTime"] == "2025-01-01T11:00:00Z"
    assert patch["output"] == {"uri": "pvc://travel-data/output", "checkpoint": "checkpoint-400"}
    assert patch["gpuSeconds"] == 2 * 3600


def test_success_without_ranked_checkpoints_points_at_final():
    patch = compute_status(ftj(), batch(conditions=[cond("Complete")]), [], NOW)
    assert patch["output"]["checkpoint"] == "final"


def test_backoff_limit_exceeded_is_failed_and_stalled_with_the_last_error():
    failed = batch(failed=4, conditions=[cond("Failed", "BackoffLimitExceeded")])
    patch = compute_status(ftj(), failed, [pod("Failed", exit_code=1, message="CUDA out of memory")], NOW)
    assert patch["phase"] == "Failed"
    assert types(patch) == {"Ready": "False", "Stalled": "True", "Failed": "True"}
    failed_cond = next(c for c in patch["conditions"] if c["type"] == "Failed")
    assert failed_cond["reason"] == "BackoffLimitExceeded"
    assert "CUDA out of memory" in failed_cond["message"] and "backoffLimit" in failed_cond["message"]
    assert patch["retries"] == 4
    assert patch["completionTime"] == "2025-01-01T11:59:00Z"


def test_exit_code_3_means_the_data_was_invalid():
    failed = batch(failed=1, conditions=[cond("Failed", "PodFailurePolicy")])
    job = ftj(status={"data": {"errors": ["train.jsonl:7: missing 'messages'"]}})
    patch = compute_status(job, failed, [pod("Failed", exit_code=3)], NOW)
    assert patch["conditions"][0]["reason"] == "DataValidationFailed"
    assert "train.jsonl:7" in patch["message"]
    assert types(patch)["DataValidated"] == "False"


def test_deadline_exceeded_says_what_to_change():
    patch = compute_status(ftj(), batch(conditions=[cond("Failed", "DeadlineExceeded")]), [], NOW)
    assert patch["conditions"][0]["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds" in patch["message"]


def test_suspended_and_queued():
    suspended = compute_status(ftj(suspend=True), batch(suspend=True), [], NOW)
    assert suspended["phase"] == "Suspended"
    assert types(suspended) == {"Ready": "False", "Suspended": "True"}  # not reconciling: at rest on purpose
    queued = compute_status(ftj(queueName="gpu-queue"), batch(suspend=True), [], NOW)
    assert queued["phase"] == "Queued"
    assert "gpu-queue" in queued["message"]
    assert types(queued)["Reconciling"] == "True"


def test_unschedulable_pod_explains_the_wait_and_retries_are_counted():
    waiting = pod("Pending", waiting="ImagePullBackOff")
    patch = compute_status(ftj(), batch(active=1, failed=1), [waiting], NOW)
    assert patch["phase"] == "Pending"
    assert "ImagePullBackOff" in patch["message"]
    assert "retry 1 of 3" in patch["message"]
    assert patch["retries"] == 1


def test_transition_time_holds_while_the_condition_holds():
    first = compute_status(ftj(), batch(active=1), [], NOW)
    later = NOW + dt.timedelta(minutes=5)
    job = ftj(status=first)
    second = compute_status(job, batch(active=1), [], later)
    assert [c["lastTransitionTime"] for c in second["conditions"]] == [
        c["lastTransitionTime"] for c in first["conditions"]
    ]
    assert not changed(job, second)


def test_finished_job_keeps_its_outcome_after_the_batch_job_is_gone():
    job = ftj(status={"phase": "Succeeded", "output": {"uri": "pvc://x", "checkpoint": "final"}})
    assert observe(job, None, []) is None
    assert compute_status(job, None, [], NOW) == {}


def test_events_on_transitions_only():
    running = observe(ftj(status={"progress": {"step": 1}}), batch(active=1), [])
    assert transition_event("Pending", running)[1] == "Started"
    assert transition_event("Running", running) is None
    failed = observe(ftj(), batch(conditions=[cond("Failed", "BackoffLimitExceeded")]), [])
    assert transition_event("Running", failed)[:2] == ("Warning", "BackoffLimitExceeded")


def _failed_condition(patch):
    return next(c for c in patch["conditions"] if c["type"] == "Failed")


def test_the_failed_condition_carries_the_trainers_termination_message_not_the_log_noise():
    """With FallbackToLogsOnError a container that wrote no message leaves its log's tail: the last line says why."""
    tail = 'step 3/10 loss 2.1\nTraceback (most recent call last):\n  File "train.py", line 9\n' + (
        "out of disk: [Errno 28] No space left on device (raise spec.storage.size)\n\n"
    )
    failed = batch(failed=4, conditions=[cond("Failed", "BackoffLimitExceeded")])
    patch = compute_status(ftj(), failed, [pod("Failed", exit_code=1, message=tail)], NOW)
    message = _failed_condition(patch)["message"]
    assert "last error: out of disk: [Errno 28] No space left on device (raise spec.storage.size)" in message
    assert "step 3/10" not in message and "Traceback" not in message and "\n" not in message


def test_an_oom_killed_trainer_says_out_of_memory():
    failed = batch(failed=4, conditions=[cond("Failed", "BackoffLimitExceeded")])
    killed = pod("Failed", exit_code=137, message="step 7/10 loss 1.9\n")
    killed["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = "OOMKilled"
    message = _failed_condition(compute_status(ftj(), failed, [killed], NOW))["message"]
    assert "out of memory (OOMKilled)" in message and "spec.resources.memory" in message and "step 7" not in message
