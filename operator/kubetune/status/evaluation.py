"""Evaluation status from what was observed: phase, kstatus conditions (Ready, Passed), times, the verdict. Pure.

Observed on a cluster: the current evaluation Job (`observe`, `compute_status`); in `kubetune run`: the
evaluator child process (`observe_process`). Both describe the run as an `EvalRun` (the models it scores
and its times) and go through `status_patch`. The evaluation pod (or process) itself writes
`results/baseline/report`; `best` and `passed` are ranked here as promotion ranks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune import constants as c
from kubetune.api.evaluation import Evaluation
from kubetune.builders.evaluation import evaluated_models
from kubetune.builders.promotion import best_result, select_metric
from kubetune.status import conditions as kstatus


@dataclass(frozen=True)
class EvalOutcome:
    phase: str
    reason: str
    message: str
    passed: bool | None = None


@dataclass(frozen=True)
class EvalRun:
    """One run of the evaluator as observed: the models it scores, when it started and ended (if known)."""

    models: list[str] = field(default_factory=list)
    start_time: str | None = None
    completion_time: str | None = None


def job_state(batch_job: dict[str, Any]) -> str:
    """Complete, Failed or Active."""
    for cond in (batch_job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in (c.JOB_COMPLETE, "SuccessCriteriaMet"):
            return "Complete"
        if cond.get("type") in (c.JOB_FAILED, c.JOB_FAILURE_TARGET):
            return "Failed"
    return "Active"


def run_of(batch_job: dict[str, Any] | None) -> EvalRun | None:
    """The run a batch Job stands for (None: no Job)."""
    if batch_job is None:
        return None
    bstatus = batch_job.get("status") or {}
    return EvalRun(evaluated_models(batch_job), bstatus.get("startTime"), bstatus.get("completionTime"))


def summary(evaluation: Evaluation, models: list[str]) -> tuple[bool, str]:
    """(passed, "Evaluated 3 checkpoints: best checkpoint-400 exact_match 0.88, passed") from the results."""
    status = evaluation.status
    results = [r for r in (status.results if status else []) if not models or r.model in models]
    metric = select_metric(evaluation)
    passed = any(r.passed for r in results)
    best = best_result(evaluation, results, passing_only=passed)
    head = f"Evaluated {len(results)} model{'s' if len(results) != 1 else ''}"
    if best is None:
        return False, f"{head}: no {metric} score reported"
    if passed:
        verdict = "passed"
    else:
        verdict = "no model passed" + (": " + "; ".join(best.failures[:3]) if best.failures else " the criteria")
    return passed, f"{head}: best {best.model} {metric} {best.metrics[metric]:.4g}, {verdict}"


def scored(evaluation: Evaluation, models: list[str]) -> EvalOutcome:
    """A finished run: Succeeded, passed or not, from the results the evaluator wrote into the status."""
    passed, message = summary(evaluation, models)
    return EvalOutcome(c.Phase.SUCCEEDED, c.Reason.PASSED if passed else c.Reason.NOT_PASSED, message, passed)


def evaluating(models: list[str]) -> EvalOutcome:
    return EvalOutcome(c.Phase.RUNNING, c.Reason.EVALUATING, f"evaluating {len(models)} model(s): {', '.join(models)}")


def observe(
    evaluation: Evaluation,
    batch_job: dict[str, Any] | None,
    waiting: str | None = None,
    waiting_reason: str = c.Reason.WAITING_FOR_CHECKPOINTS,
) -> EvalOutcome:
    """The phase of an Evaluation from its current Job (None: not created yet); `waiting` is why it cannot start
    (`waiting_reason`: for checkpoints, or for a judge's ModelDeployment)."""
    if waiting is not None:
        return EvalOutcome(c.Phase.PENDING, waiting_reason, waiting)
    if batch_job is None:
        return EvalOutcome(c.Phase.PENDING, c.Reason.PENDING, "creating the evaluation Job")
    name = (batch_job.get("metadata") or {}).get("name")
    state = job_state(batch_job)
    if state == "Complete":
        return scored(evaluation, evaluated_models(batch_job))
    if state == "Failed":
        cond = next(
            (x for x in (batch_job.get("status") or {}).get("conditions") or [] if x.get("type") == c.JOB_FAILED), {}
        )
        why = cond.get("message") or cond.get("reason") or "the evaluation Job failed"
        return EvalOutcome(c.Phase.FAILED, c.Reason.EVALUATION_FAILED, f"{why}; see `kubectl logs job/{name}`")
    if (batch_job.get("spec") or {}).get("suspend"):  # created suspended for Kueue, which alone resumes it
        queue = ((batch_job.get("metadata") or {}).get("labels") or {}).get(c.LABEL_KUEUE_QUEUE, "")
        return EvalOutcome(c.Phase.QUEUED, c.Reason.QUEUED, f"waiting for Kueue to admit job/{name} (queue {queue!r})")
    return evaluating(evaluated_models(batch_job))


def observe_process(
    evaluation: Evaluation, models: list[str], exit_code: int | None, *, stopped: bool = False, log_path: str = ""
) -> EvalOutcome:
    """The phase of an Evaluation from its local evaluator process (`exit_code` None: it runs; `stopped`:
    interrupted, it runs again next time); finished, from the results it wrote into `evaluation`'s status."""
    if stopped:
        return EvalOutcome(c.Phase.PENDING, c.Reason.PENDING, "interrupted; it runs again next time")
    if exit_code is None:
        return evaluating(models)
    if exit_code != c.EXIT_OK:
        where = f"; see {log_path}" if log_path else ""
        return EvalOutcome(
            c.Phase.FAILED, c.Reason.EVALUATION_FAILED, f"the evaluator exited with code {exit_code}{where}"
        )
    return scored(evaluation, models)


def status_patch(evaluation: Evaluation, outcome: EvalOutcome, run: EvalRun | None, now: str) -> dict[str, Any]:
    """The status fields the operator (or `kubetune run`) owns, as a merge patch."""
    status = evaluation.status
    phase = outcome.phase
    wanted = kstatus.wanted(
        outcome.reason,
        outcome.message,
        ready=phase == c.Phase.SUCCEEDED,
        reconciling=phase in (c.Phase.PENDING, c.Phase.QUEUED, c.Phase.RUNNING),
        stalled=phase == c.Phase.FAILED,
        failed=phase == c.Phase.FAILED,
    )
    if outcome.passed is not None:
        wanted.append((c.Condition.PASSED, "True" if outcome.passed else "False", outcome.reason, outcome.message))
    generation = evaluation.metadata.generation
    patch = kstatus.outcome(phase, outcome.message, wanted, kstatus.previous(status), generation, now)
    if phase == c.Phase.RUNNING:
        running_since = status.start_time if status and status.phase == c.Phase.RUNNING else None
        patch["startTime"] = (run.start_time if run else None) or running_since or now
        patch["completionTime"] = None
    if phase in c.FINISHED_PHASES:
        ended = run.completion_time if run else None
        patch["completionTime"] = (status.completion_time if status else None) or ended or now
    if phase == c.Phase.SUCCEEDED and run is not None:
        patch["evaluatedCheckpoints"] = run.models
        patch["passed"] = outcome.passed
        # Ranked here as promotion ranks (selectBy, the metric's direction), over the pod's results.
        best = best_result(evaluation, status.results if status else [], passing_only=bool(outcome.passed))
        if best is not None:
            patch["best"] = best.model
    return patch


def refused(old: dict[str, Any] | None, generation: int | None, message: str, now: str) -> dict[str, Any]:
    """The status of an Evaluation that admission refused (`old`: its status as stored): Failed, Stalled with reason
    InvalidSpec and the fields named, as a FineTuneJob or ModelDeployment says it; {} when that is already written."""
    old = old or {}
    if old.get("phase") == c.Phase.FAILED and old.get("message") == message:
        return {}
    wanted = kstatus.wanted(c.Reason.INVALID_SPEC, message, ready=False, stalled=True, failed=True)
    return kstatus.outcome(c.Phase.FAILED, message, wanted, old.get("conditions") or [], generation, now)


def compute_status(
    evaluation: Evaluation, outcome: EvalOutcome, batch_job: dict[str, Any] | None, now: str
) -> dict[str, Any]:
    """The status fields the operator owns, as a merge patch, from the current evaluation Job."""
    return status_patch(evaluation, outcome, run_of(batch_job), now)


def changed(evaluation: Evaluation, patch: dict[str, Any]) -> bool:
    """Whether applying `patch` would change the recorded status (so unchanged states are not re-written)."""
    return kstatus.changes(evaluation.status, patch)
