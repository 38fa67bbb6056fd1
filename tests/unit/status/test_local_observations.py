"""The local runtime's observations (a child process instead of a batch Job or a Deployment) give the phases,
conditions and times the operator writes, through the same functions."""

from __future__ import annotations

from kubetune.api import Evaluation, FineTuneJob, ModelDeployment
from kubetune.builders.promotion import Decision
from kubetune.status import evaluation as ev_status
from kubetune.status import finetunejob as ftj_status
from kubetune.status import modeldeployment as md_status
from kubetune.status.finetunejob import TrainerProcess
from kubetune.status.modeldeployment import Workload

NOW = "2025-01-01T12:00:00Z"


def ftj(status=None) -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "team", "generation": 3},
            "spec": {"baseModel": {"uri": "hf://m"}, "dataset": {"train": {"uri": "t.jsonl"}}},
            "status": status,
        }
    )


def kinds(patch) -> dict[str, str]:
    return {cd["type"]: cd["status"] for cd in patch["conditions"]}


def test_a_running_trainer_validates_then_trains_and_the_start_is_recorded_once():
    first = ftj_status.local_status(ftj(), ftj_status.observe_process(ftj(), TrainerProcess()), NOW)
    assert (first["phase"], first["startTime"], first["observedGeneration"]) == ("Validating", NOW, 3)
    assert kinds(first) == {"Ready": "False", "Reconciling": "True"} and first["completionTime"] is None
    training = ftj({"startTime": "earlier", "data": {"format": "chat"}, "progress": {"step": 4, "totalSteps": 10}})
    patch = ftj_status.local_status(training, ftj_status.observe_process(training, TrainerProcess()), NOW)
    assert (patch["phase"], patch["message"]) == ("Running", "training: step 4/10") and "startTime" not in patch
    assert kinds(patch) == {"Ready": "False", "Reconciling": "True", "DataValidated": "True"}


def test_exit_codes_become_succeeded_failed_or_suspended_as_on_a_cluster():
    job = ftj({"startTime": "earlier", "data": {"format": "chat"}})
    done = ftj_status.local_status(job, ftj_status.observe_process(job, TrainerProcess(exit_code=0)), NOW)
    assert done["phase"] == "Succeeded" and done["completionTime"] == NOW
    assert kinds(done) == {"Ready": "True", "Succeeded": "True", "DataValidated": "True"}

    report = "train.jsonl:3: messages: expected an array\ntrain.jsonl:9: not valid JSON"
    bad = ftj_status.observe_process(job, TrainerProcess(exit_code=3, output=report))
    patch = ftj_status.local_status(job, bad, NOW)
    assert (patch["phase"], bad.reason) == ("Failed", "DataValidationFailed") and "\n" not in patch["message"]
    assert kinds(patch) == {"Ready": "False", "Stalled": "True", "Failed": "True", "DataValidated": "False"}
    ready = next(cd for cd in patch["conditions"] if cd["type"] == "Ready")
    assert ready["message"].endswith(report)  # the report in the condition, one sentence in status.message

    crashed = ftj_status.observe_process(job, TrainerProcess(exit_code=1, output="Traceback ...", log_path="t.log"))
    assert (crashed.phase, crashed.message) == ("Failed", "the trainer exited with code 1; last lines of t.log")

    for proc in (TrainerProcess(exit_code=143, resume_from="checkpoint-4"), TrainerProcess(stopped=True)):
        outcome = ftj_status.observe_process(job, proc)
        patch = ftj_status.local_status(job, outcome, NOW)
        assert patch["phase"] == "Suspended" and kinds(patch)["Suspended"] == "True"
        assert "Reconciling" not in kinds(patch) and patch["completionTime"] is None
    assert (
        "resumes from checkpoint-4"
        in ftj_status.observe_process(job, TrainerProcess(exit_code=143, resume_from="checkpoint-4")).message
    )


def test_the_local_evaluator_is_scored_and_ranked_as_the_operator_does():
    ev = Evaluation.model_validate(
        {
            "metadata": {"name": "e", "namespace": "team", "generation": 1},
            "spec": {"model": {"fineTuneJob": {"name": "travel"}}, "dataset": {"uri": "t.jsonl"}},
            "status": {
                "startTime": "earlier",
                "best": "checkpoint-1",  # what the evaluator said; the ranking by selectBy decides
                "results": [
                    {"model": "checkpoint-1", "metrics": {"exact_match": 0.5}, "passed": True},
                    {"model": "checkpoint-2", "metrics": {"exact_match": 0.9}, "passed": True},
                ],
            },
        }
    )
    models = ["checkpoint-1", "checkpoint-2"]
    running = ev_status.observe_process(ev, models, None)
    assert (running.phase, running.reason) == ("Running", "Evaluating")
    outcome = ev_status.observe_process(ev, models, 0)
    patch = ev_status.status_patch(ev, outcome, ev_status.EvalRun(models, "earlier"), NOW)
    assert (patch["phase"], patch["passed"], patch["best"]) == ("Succeeded", True, "checkpoint-2")
    assert patch["evaluatedCheckpoints"] == models and patch["completionTime"] == NOW
    assert kinds(patch) == {"Ready": "True", "Passed": "True"}
    failed = ev_status.observe_process(ev, models, 1, log_path="evaluate.log")
    assert (failed.phase, failed.message) == ("Failed", "the evaluator exited with code 1; see evaluate.log")
    assert ev_status.observe_process(ev, models, None, stopped=True).phase == "Pending"


def test_a_local_server_is_ready_at_its_own_endpoint_and_pending_once_stopped():
    md = ModelDeployment.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "team", "generation": 1},
            "spec": {"model": {"fineTuneJob": {"name": "travel"}}},
        }
    )
    promote = Decision("promote", "checkpoint-4", "pvc://c/checkpoint-4", "Promoted", "best checkpoint")
    local = "http://127.0.0.1:8001/v1"
    ready = md_status.status_patch(md, promote, Workload(True, 1, local), [], NOW)
    assert (ready["phase"], ready["endpoint"], ready["servedCheckpoint"]) == ("Ready", local, "checkpoint-4")
    assert kinds(ready) == {"Ready": "True"}
    idle = md_status.status_patch(md, promote, Workload(idle="not started (--no-serve)"), [], NOW)
    assert (idle["phase"], idle["endpoint"], idle["readyReplicas"]) == ("Pending", None, 0)
    assert "servedCheckpoint" not in idle and kinds(idle) == {"Ready": "False", "Reconciling": "True"}
    broken = md_status.status_patch(md, promote, Workload(failure=("Failed", "the server did not start")), [], NOW)
    assert broken["phase"] == "Failed" and kinds(broken) == {"Ready": "False", "Stalled": "True"}
    stopped = md_status.stopped_status(md, "checkpoint-4 was served until `kubetune run` stopped", NOW)
    assert (stopped["phase"], stopped["endpoint"], stopped["readyReplicas"]) == ("Pending", None, 0)
