"""FineTuneJob status from what was observed: phase, kstatus conditions, times, retries. Pure.

Two observations, one outcome model: on a cluster, the batch Job and its pods (`observe`, `compute_status`);
in `kubetune run`, the trainer child process (`TrainerProcess`, `observe_process`, `local_status`). Both
go through `outcome_status`, so phase, `observedGeneration` and conditions are written the same way.

kstatus (read by Flux, Argo CD and `kubectl wait`): `observedGeneration` is the spec generation seen;
`Reconciling` and `Stalled` are present only while True; `Ready` is the outcome (True once the model is
trained); jobs add `Succeeded` / `Failed` once they have an outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kubetune import constants as c
from kubetune.api.clock import now_iso, parse_time
from kubetune.api.finetunejob import FineTuneJob, FineTuneJobStatus
from kubetune.builders import names
from kubetune.builders.runconfig import FINAL
from kubetune.builders.training import built_from, spec_hash, training_job_name
from kubetune.status import conditions as kstatus

Phase, Reason, Cond = c.Phase, c.Reason, c.Condition
IN_PROGRESS = frozenset({Phase.PENDING, Phase.VALIDATING, Phase.QUEUED, Phase.RUNNING})


CONDITION_MESSAGE_CHARS = 4000  # of a condition's message with its detail (a log's tail, a data report)


@dataclass(frozen=True)
class Outcome:
    """What the job is doing now, in one phase, one reason and one sentence.

    `detail` (several lines: a data-validation report, a log's tail) goes into the conditions' message
    after the sentence, never into `status.message`."""

    phase: str
    reason: str
    message: str
    detail: str = ""


def _true_condition(batch_status: dict[str, Any], *types: str) -> dict[str, Any] | None:
    for cond in batch_status.get("conditions") or []:
        if cond.get("type") in types and cond.get("status") == "True":
            return cond
    return None


TERMINATION_MESSAGE_CHARS = 1000  # of a container's termination message, in a condition message


def _terminations(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Terminated states of trainer containers (current and last), newest pods first.

    Each `message` is one line: the trainer's termination message (its failure reason), or, where the
    container left none and Kubernetes took the log's tail (FallbackToLogsOnError), the tail's last line;
    a container the kernel killed for memory (OOMKilled) says so, whatever its log ended with.
    """
    out = []
    for pod in sorted(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "", reverse=True):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != c.TRAINER_CONTAINER:
                continue
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                term = state.get("terminated")
                if not term:
                    continue
                lines = [line.strip() for line in str(term.get("message") or "").splitlines() if line.strip()]
                message = lines[-1][:TERMINATION_MESSAGE_CHARS] if lines else ""
                if term.get("reason") == "OOMKilled":
                    message = "out of memory (OOMKilled): the trainer used more than spec.resources.memory; raise it"
                out.append({**term, "message": message})
    return out


def _waiting_reason(pods: list[dict[str, Any]]) -> str | None:
    """Why a pod is not running yet: Unschedulable, ImagePullBackOff, ... with its message."""
    for pod in pods:
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".rstrip(": ")
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                return f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    return None


def _pod_running(batch_status: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """A trainer pod runs now (the Job's own counts stand in when no pod is listed)."""
    running = any((p.get("status") or {}).get("phase") == "Running" for p in pods)
    return running or (batch_status.get("ready") or 0) > 0 or (not pods and (batch_status.get("active") or 0) > 0)


def trainer_started(batch_job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> bool:
    """Whether training has started: a trainer pod of this batch Job runs, or one has run (a container
    terminated, or the Job succeeded). Pods that only wait (unschedulable, pulling the image, queued by
    Kueue) do not count. When it becomes true, `status.startTime` is recorded, and from then on the CRD's
    spec-freeze rule (`has(oldSelf.status.startTime)`) refuses spec edits."""
    if batch_job is None:
        return False
    bstatus = batch_job.get("status") or {}
    return _pod_running(bstatus, pods) or (bstatus.get("succeeded") or 0) > 0 or bool(_terminations(pods))


def started_at(batch_job: dict[str, Any] | None, pods: list[dict[str, Any]], now: dt.datetime) -> str:
    """When training started: the first trainer container start seen, else the Job's startTime, else now."""
    starts = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != c.TRAINER_CONTAINER:
                continue
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                for detail in (state.get("running"), state.get("terminated")):
                    if detail and detail.get("startedAt"):
                        starts.append(detail["startedAt"])
    if starts:
        return min(starts)
    return ((batch_job or {}).get("status") or {}).get("startTime") or now_iso(now)


def is_stale(job: FineTuneJob, child: dict[str, Any] | None) -> bool:
    """Whether `child` (the training Job or the run-config ConfigMap) was built from an earlier spec.

    Children made before they carried a spec hash count as current: they are never re-created by an upgrade."""
    built = built_from(child)
    return built is not None and built != spec_hash(job)


SpecAction = Literal["keep", "recreate", "refuse"]


def spec_action(job: FineTuneJob, children: list[dict[str, Any] | None], started: bool) -> SpecAction:
    """What a spec edit does to the training children: nothing when they match the spec; before training
    started, re-create the stale ones (the job consumed nothing); after, refuse it (the CRD's freeze rule
    refuses such edits; one can only slip through while the start is not yet recorded in status)."""
    if not any(is_stale(job, child) for child in children):
        return "keep"
    return "refuse" if started else "recreate"


def observed_generation(job: FineTuneJob, batch_job: dict[str, Any] | None) -> int | None:
    """The spec generation the operator has acted on: the current one while the batch Job matches the spec
    (or there is none yet), else the one recorded before (an edit not applied yet, or refused)."""
    if batch_job is not None and is_stale(job, batch_job):
        return job.status.observed_generation if job.status else None
    return job.metadata.generation


def refused_message(job: FineTuneJob) -> str:
    return (
        f"the spec edit of generation {job.metadata.generation} was not applied: training had already started, "
        "so the spec is frozen (only suspend and ttlSecondsAfterFinished may change); revert the edit, or "
        "create a new FineTuneJob (e.g. with baseModel.fromJob to continue from this one)"
    )


def observe(job: FineTuneJob, batch_job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> Outcome | None:
    """The job's phase from what Kubernetes reports; None when there is nothing new to say
    (a finished job whose batch Job was garbage-collected keeps its recorded outcome)."""
    spec = job.spec
    status = job.status
    train_name = training_job_name(job)
    if batch_job is None:
        if status and status.phase in c.FINISHED_PHASES:
            return None
        return Outcome(Phase.PENDING, Reason.PENDING, "creating the training Job")

    bstatus = batch_job.get("status") or {}
    if _true_condition(bstatus, c.JOB_COMPLETE, "SuccessCriteriaMet"):
        return Outcome(Phase.SUCCEEDED, Reason.SUCCEEDED, f"training finished; the model is at {_output_uri(job)}")

    failed = _true_condition(bstatus, c.JOB_FAILED, c.JOB_FAILURE_TARGET)
    if failed:
        terms = _terminations(pods)
        data_errors = status.data.errors if status and status.data else []
        if data_errors or any(t.get("exitCode") == c.EXIT_DATA_VALIDATION_FAILED for t in terms):
            first = "; ".join(data_errors[:3]) or next((t.get("message") for t in terms if t.get("message")), "")
            detail = f": {first}" if first else ""
            return Outcome(
                Phase.FAILED,
                Reason.DATA_VALIDATION_FAILED,
                f"the training data is invalid{detail} (all problems in status.data.errors); "
                "fix the data and create a new FineTuneJob",
            )
        reason = failed.get("reason") or Reason.FAILED
        last = next((t.get("message") or t.get("reason") for t in terms if t.get("message") or t.get("reason")), None)
        tail = f"; last error: {last.strip()}" if last else ""
        if reason == Reason.BACKOFF_LIMIT_EXCEEDED:
            msg = (
                f"the trainer failed {bstatus.get('failed', spec.backoff_limit + 1)} times "
                f"(spec.backoffLimit: {spec.backoff_limit}){tail}; see `kubectl logs job/{train_name}`"
            )
            return Outcome(Phase.FAILED, Reason.BACKOFF_LIMIT_EXCEEDED, msg)
        if reason == Reason.DEADLINE_EXCEEDED:
            msg = (
                f"training ran longer than spec.activeDeadlineSeconds ({spec.active_deadline_seconds}s); "
                "raise it or train on less data (spec.dataset.maxExamples, hyperparameters.maxSteps)"
            )
            return Outcome(Phase.FAILED, Reason.DEADLINE_EXCEEDED, msg)
        return Outcome(Phase.FAILED, reason, f"{failed.get('message') or 'the training Job failed'}{tail}")

    if (batch_job.get("spec") or {}).get("suspend"):
        if spec.suspend:
            return Outcome(Phase.SUSPENDED, Reason.SUSPENDED, "suspended (spec.suspend: true); set it false to resume")
        if spec.queue_name:
            return Outcome(Phase.QUEUED, Reason.QUEUED, f"waiting for Kueue to admit it to queue {spec.queue_name!r}")
        return Outcome(Phase.PENDING, Reason.RESUMED, "resuming")

    retries = bstatus.get("failed") or 0
    retry_note = f" (retry {retries} of {spec.backoff_limit}, resuming from the latest checkpoint)" if retries else ""
    if _pod_running(bstatus, pods):
        return _running(status, retry_note)
    why = _waiting_reason(pods)
    return Outcome(Phase.PENDING, Reason.PENDING, f"waiting for the trainer pod{': ' + why if why else ''}{retry_note}")


def _running(status: FineTuneJobStatus | None, note: str = "") -> Outcome:
    """A trainer that runs: validating the data, loading the model, or at a step (from what it reported).

    Its pod runs, so training has started (`status.startTime`, see `trainer_started`). The phase is
    Validating until the trainer reports a training step (`status.progress.step`) or its data valid
    (`status.data` with a format and no errors: it has moved on to loading the model); then Running."""
    progress = status.progress if status else None
    if progress and progress.step is not None:
        total = f"/{progress.total_steps}" if progress.total_steps else ""
        return Outcome(Phase.RUNNING, Reason.TRAINING, f"training: step {progress.step}{total}{note}")
    if _data_valid(status):
        return Outcome(Phase.RUNNING, Reason.TRAINING, f"data valid; loading the model{note}")
    if status and status.data and status.data.errors:
        msg = f"validating the training data: the trainer found problems (status.data.errors){note}"
        return Outcome(Phase.VALIDATING, Reason.VALIDATING, msg)
    return Outcome(Phase.VALIDATING, Reason.VALIDATING, f"validating the training data{note}")


TRAINER_PHASES = frozenset({Phase.VALIDATING, Phase.RUNNING})


def lags_trainer(status: Mapping[str, Any] | None) -> bool:
    """Whether the recorded phase (a FineTuneJob's raw `status`) is behind what its trainer reported since:
    Validating while the trainer has reported its data valid or a step, or Running while it reports data
    errors and no step. The trainer patches these fields through the status subresource, and no Job or pod
    event follows such a patch, so the operator watches the FineTuneJob itself for them.

    Only Validating and Running follow the trainer (the batch Job and pods decide the other phases), and the
    answer compares phases, so it turns False once the operator has written the phase the reports imply: its
    own status write does not set off another. Cheap: it reads `phase`, `data` and `progress` only."""
    status = status or {}
    recorded = status.get("phase")
    if recorded not in TRAINER_PHASES:
        return False
    try:
        reported = FineTuneJobStatus.model_validate({"data": status.get("data"), "progress": status.get("progress")})
    except ValueError:
        return False  # a report the schema refuses cannot be acted on; the next one may
    return _running(reported).phase != recorded


def _output_uri(job: FineTuneJob) -> str:
    return names.job_output_uri(job)


def conditions(
    outcome: Outcome,
    old: list[dict[str, Any]],
    generation: int | None,
    now: str,
    *,
    data_valid: bool | None = None,
    extra: Sequence[tuple[str, str, str]] = (),
) -> list[dict[str, Any]]:
    """kstatus conditions for an outcome (see status.conditions), plus Suspended and DataValid.

    `extra` adds (type, reason, message) conditions that are True (e.g. WaitingForSourceJob).
    """
    phase = outcome.phase
    message = f"{outcome.message}\n{outcome.detail}"[:CONDITION_MESSAGE_CHARS] if outcome.detail else outcome.message
    wanted = kstatus.wanted(
        outcome.reason,
        message,
        ready=phase == Phase.SUCCEEDED,
        reconciling=phase in IN_PROGRESS,
        stalled=phase == Phase.FAILED,
        failed=phase == Phase.FAILED,
        succeeded=phase == Phase.SUCCEEDED,
    )
    if phase == Phase.SUSPENDED:
        wanted.append((Cond.SUSPENDED, "True", outcome.reason, message))
    if outcome.reason == Reason.DATA_VALIDATION_FAILED:
        wanted.append((Cond.DATA_VALID, "False", outcome.reason, message))
    elif data_valid:
        wanted.append((Cond.DATA_VALID, "True", "DataValid", "the training data passed validation"))
    for ctype, reason, text in extra:
        wanted.append((ctype, "True", reason, text))
    return kstatus.conditions(wanted, old, generation, now)


def outcome_status(
    outcome: Outcome,
    old: list[dict[str, Any]],
    generation: int | None,
    now: str,
    *,
    data_valid: bool | None = None,
    extra: Sequence[tuple[str, str, str]] = (),
) -> dict[str, Any]:
    """phase, message, observedGeneration and conditions of an outcome (the fields every status write has)."""
    return {
        "phase": outcome.phase,
        "message": outcome.message,
        "observedGeneration": generation,
        "conditions": conditions(outcome, old, generation, now, data_valid=data_valid, extra=extra),
    }


def _data_valid(status: FineTuneJobStatus | None) -> bool:
    data = status.data if status else None
    return bool(data and data.format and not data.errors)


def gpu_seconds(job: FineTuneJob, start: str | None, end: str | None, now: dt.datetime) -> float | None:
    """GPU time: GPUs per node x nodes x wall seconds since the start."""
    begin = parse_time(start)
    if begin is None:
        return None
    finish = parse_time(end) or now
    res = job.spec.resources
    return round(max(0.0, (finish - begin).total_seconds()) * res.gpus * res.nodes, 1)


def compute_status(
    job: FineTuneJob,
    batch_job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The status fields the operator owns, as a merge patch; {} when there is nothing to change.

    The trainer owns data/progress/metrics/checkpoints/bestCheckpoint; this never writes them.
    """
    now = now or dt.datetime.now(dt.UTC)
    outcome = observe(job, batch_job, pods)
    if outcome is None:
        return {}
    status = job.status
    generation = observed_generation(job, batch_job)
    started = bool(status and status.start_time) or trainer_started(batch_job, pods)
    extra = []
    if started and is_stale(job, batch_job) and outcome.phase not in c.FINISHED_PHASES:
        refused = refused_message(job)
        outcome = Outcome(outcome.phase, outcome.reason, f"{outcome.message}; {refused}")
        extra.append((Cond.STALLED, Reason.SPEC_CHANGE_REFUSED, refused))
    patch = outcome_status(
        outcome, kstatus.previous(status), generation, now_iso(now), data_valid=_data_valid(status), extra=extra
    )
    bstatus = (batch_job or {}).get("status") or {}
    start = (status.start_time if status else None) or (started_at(batch_job, pods, now) if started else None)
    if start:
        patch["startTime"] = start
    patch["retries"] = int(bstatus.get("failed") or 0)
    if outcome.phase in c.FINISHED_PHASES:
        done = (status.completion_time if status else None) or bstatus.get("completionTime")
        if not done:
            cond = _true_condition(bstatus, c.JOB_FAILED, c.JOB_FAILURE_TARGET, c.JOB_COMPLETE)
            done = (cond or {}).get("lastTransitionTime") or now_iso(now)
        patch["completionTime"] = done
        seconds = gpu_seconds(job, start, done, now)
        if seconds is not None:
            patch["gpuSeconds"] = seconds
    if outcome.phase == Phase.SUCCEEDED:
        best = status.best_checkpoint if status else None
        recorded = status.output.checkpoint if status and status.output else None
        patch["output"] = {"uri": _output_uri(job), "checkpoint": best or recorded or FINAL}
    return patch


def generation_seen(job: FineTuneJob) -> dict[str, Any] | None:
    """A finished job whose spec was edited (suspend, ttlSecondsAfterFinished) and whose batch Job is gone:
    the patch that records the new generation, on the status and its conditions; None when there is none."""
    status, generation = job.status, job.metadata.generation
    if not status or status.phase not in c.FINISHED_PHASES or generation is None:
        return None
    if status.observed_generation is not None and status.observed_generation >= generation:
        return None
    conds = [{**cond, "observedGeneration": generation} for cond in kstatus.previous(status)]
    return {"observedGeneration": generation, "conditions": conds}


def changed(job: FineTuneJob, patch: dict[str, Any]) -> bool:
    """Whether applying `patch` would change the recorded status (so unchanged states are not re-written)."""
    return kstatus.changes(job.status, patch)


def child_refused(child: str, message: str) -> Outcome:
    """The API server refused a child the operator built from the spec (a 422 on create): Failed (Ready
    False, Stalled and Failed True) with the server's message; the operator does not retry the same spec."""
    return Outcome(
        Phase.FAILED,
        Reason.CHILD_REFUSED,
        f"the API server refused {child} built from this spec: {message}; fix the spec (not retried until it changes)",
    )


def claim_held(message: str, stalled: bool) -> tuple[Outcome, list[tuple[str, str, str]]]:
    """A job that waits for its `<job>-data` claim to be freed (builders.retention.on_job_created): Pending
    (it starts by itself once the claim is gone), and Stalled True while only a person can free it, so that
    Argo CD shows it Degraded and `kubectl describe` says what to do."""
    outcome = Outcome(Phase.PENDING, Reason.PVC_CONFLICT, message)
    return outcome, [(Cond.STALLED, Reason.PVC_CONFLICT, message)] if stalled else []


def transition_event(old_phase: str | None, new: Outcome | None) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Kubernetes Event for a phase change; None when the phase holds."""
    if new is None or new.phase == old_phase:
        return None
    if new.phase == Phase.FAILED:
        return "Warning", new.reason, new.message
    if new.phase == Phase.RUNNING and old_phase in (None, Phase.PENDING, Phase.QUEUED, Phase.VALIDATING):
        return "Normal", c.EVENT_STARTED, new.message
    if new.phase == Phase.PENDING and old_phase is None:
        return None  # the Created event already told this
    return "Normal", new.reason, new.message


# --- The local runtime: `kubetune run` observes the trainer as a child process ---

STOPPED_BY_SIGNAL = frozenset({c.EXIT_STOPPED_WITH_CHECKPOINT, c.EXIT_INTERRUPTED})


@dataclass(frozen=True)
class TrainerProcess:
    """What `kubetune run` saw of its trainer child process: the local stand-in for the batch Job and pods.

    `exit_code` is None while it runs. `stopped`: interrupted from outside (Ctrl-C, SIGTERM), whatever
    the code. `output`: the data-validation report (exit 3) or the last lines of its log. `resume_from`:
    the newest complete checkpoint, where the next run resumes."""

    exit_code: int | None = None
    stopped: bool = False
    output: str = ""
    log_path: str = ""
    resume_from: str | None = None


def observe_process(job: FineTuneJob, proc: TrainerProcess) -> Outcome:
    """The job's phase from its local trainer process (the counterpart of `observe`)."""
    if proc.stopped or proc.exit_code in STOPPED_BY_SIGNAL:
        where = (
            f"it resumes from {proc.resume_from}"
            if proc.resume_from
            else "no checkpoint was complete yet, so it starts over"
        )
        return Outcome(Phase.SUSPENDED, Reason.SUSPENDED, f"interrupted; run `kubetune run` again: {where}")
    if proc.exit_code is None:
        return _running(job.status)
    if proc.exit_code == c.EXIT_OK:
        return Outcome(Phase.SUCCEEDED, Reason.SUCCEEDED, f"training finished; the model is at {_output_uri(job)}")
    if proc.exit_code == c.EXIT_DATA_VALIDATION_FAILED:
        return Outcome(
            Phase.FAILED,
            Reason.DATA_VALIDATION_FAILED,
            "the training data is invalid (all problems in status.data.errors); nothing was trained",
            proc.output,
        )
    where = f"; last lines of {proc.log_path}" if proc.log_path else ""
    return Outcome(Phase.FAILED, Reason.FAILED, f"the trainer exited with code {proc.exit_code}{where}", proc.output)


def local_status(job: FineTuneJob, outcome: Outcome, now: str) -> dict[str, Any]:
    """The status fields `kubetune run` owns for an outcome, as a merge patch (as `compute_status` does on a
    cluster): phase, message, observedGeneration, conditions, startTime once running, completionTime once done."""
    status = job.status
    patch = outcome_status(
        outcome, kstatus.previous(status), job.metadata.generation, now, data_valid=_data_valid(status)
    )
    if outcome.phase in (Phase.VALIDATING, Phase.RUNNING) and not (status and status.start_time):
        patch["startTime"] = now
    patch["completionTime"] = now if outcome.phase in c.FINISHED_PHASES else None
    return patch
