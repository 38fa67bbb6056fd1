"""Which checkpoint a ModelDeployment serves, and why: pure promotion decisions.

Rules, in order:
1. `promotion.pin` wins: serve that checkpoint of the job. Pinning one older than the served one is a
   rollback; the revision says so ("pinned to checkpoint-200 (rollback from checkpoint-400)"). A pin to a
   checkpoint that does not exist stalls the deployment (Failed, reason PinnedCheckpointNotFound, naming
   the checkpoints there are); what was served before stays served.
2. `policy: manual` without a pin keeps what is served; the first time it takes what auto would.
3. `policy: auto` with `promotion.evaluation`: the best checkpoint that passed, ranked by the
   evaluation's `selectBy` (default: its first metric) in that metric's direction. It rolls forward
   only when strictly better than the served one; with nothing passing it keeps serving what it serves.
   A checkpoint whose task criteria held but which failed the evaluation's safety gate (spec.safety
   thresholds) did not pass, so it is never promoted; when it would have won, the decision says so
   (`held_back`: "checkpoint-400 failed the safety gate: harmfulRefusalRate 0.62 < 0.9").
4. Without an evaluation: `model.fineTuneJob.checkpoint` resolved from the job's status, or `model.uri`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any, Literal

from kubetune import constants as c
from kubetune.api.checkpoints import step_of
from kubetune.api.evaluation import LOWER_IS_BETTER, SAFETY_GATE_FAILED, Evaluation, ModelResult
from kubetune.api.finetunejob import FineTuneJob, FineTuneJobStatus
from kubetune.api.modeldeployment import ModelDeployment, ModelDeploymentStatus, Revision
from kubetune.builders.names import checkpoint_uri
from kubetune.builders.runconfig import checkpoint_location, resolve_checkpoint

Kind = Literal["promote", "rollforward", "rollback", "pin", "none"]

# Revisions kept in status (the numbering goes on; the oldest are dropped).
MAX_REVISIONS = 50

# Event reason of each kind of change.
EVENT_REASONS: dict[str, str] = {
    "promote": c.Reason.PROMOTED,
    "rollforward": c.Reason.ROLLED_FORWARD,
    "rollback": c.Reason.ROLLED_BACK,
    "pin": c.Reason.PINNED,
}


@dataclass(frozen=True)
class Decision:
    """What to serve. `kind == "none"` keeps what is served (`checkpoint` then names it, if anything).

    `reason` is a CamelCase reason for Events and conditions; `message` is the human sentence that
    becomes the revision's reason. `stalled`: the spec asks for something that cannot be served (the
    deployment fails until the spec or its sources change). `held_back`: a better checkpoint that the
    safety gate kept from being served, and why (status and a Warning Event say it).
    """

    kind: Kind
    checkpoint: str | None
    uri: str | None
    reason: str
    message: str
    stalled: bool = False
    held_back: str | None = None

    @property
    def changes(self) -> bool:
        return self.kind != "none"


def select_metric(evaluation: Evaluation) -> str:
    return evaluation.spec.select_by or evaluation.spec.metrics[0]


def better(metric: str, a: float, b: float) -> bool:
    """Whether score `a` is strictly better than `b` for `metric`."""
    return a < b if metric in LOWER_IS_BETTER else a > b


def _step(name: str, job: FineTuneJob | None) -> int | None:
    if job and job.status:
        for cp in job.status.checkpoints:
            if cp.name == name and cp.step is not None:
                return cp.step
    return step_of(name)


def best_result(evaluation: Evaluation, results: list[ModelResult], *, passing_only: bool = True) -> ModelResult | None:
    """The best result by the evaluation's metric (ties: the later checkpoint); None if none is ranked."""
    metric = select_metric(evaluation)
    ranked = [r for r in results if metric in r.metrics and (r.passed or not passing_only)]
    if not ranked:
        return None
    sign = -1 if metric in LOWER_IS_BETTER else 1

    def key(r: ModelResult) -> tuple[float, int]:
        return sign * r.metrics[metric], _step(r.model, None) or -1

    return max(ranked, key=key)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _uri_of(name: str, job: FineTuneJob | None, evaluation: Evaluation | None) -> str | None:
    """Where checkpoint `name` is: the job's status, else the evaluation's result, else the job's layout."""
    if job is not None:
        cp = resolve_checkpoint(job, name)
        if cp is not None:
            return checkpoint_location(job, cp)
    if evaluation is not None and evaluation.status:
        for r in evaluation.status.results:
            if r.model == name and r.uri:
                return r.uri
    return checkpoint_uri(job, name) if job is not None else None


def _known(name: str, job: FineTuneJob | None, evaluation: Evaluation | None) -> bool:
    if job is not None and resolve_checkpoint(job, name) is not None:
        return True
    return bool(evaluation and evaluation.status and any(r.model == name and r.uri for r in evaluation.status.results))


def _is_earlier(target: str, current: str, job: FineTuneJob | None, history: list[Revision]) -> bool:
    """Whether `target` is older than `current`: by step when both are known, else by when it was served."""
    a, b = _step(target, job), _step(current, job)
    if a is not None and b is not None:
        return a < b
    return any(r.checkpoint == target for r in history)


def _keep(status: ModelDeploymentStatus, reason: str, message: str, *, stalled: bool = False) -> Decision:
    return Decision("none", status.served_checkpoint, status.served_uri, reason, message, stalled)


def _pin_not_found(
    pin: str, status: ModelDeploymentStatus, evaluation: Evaluation | None, job: FineTuneJob | None
) -> Decision:
    """The stalled decision for a pin that names no checkpoint: which pin, which checkpoints exist, what to do."""
    if job is not None:
        source = f"FineTuneJob {job.metadata.name!r}"
        have = [cp.name for cp in (job.status or FineTuneJobStatus()).checkpoints]
    else:
        source = f"Evaluation {evaluation.metadata.name!r}" if evaluation is not None else "the model"
        have = [r.model for r in evaluation.status.results if r.uri] if evaluation and evaluation.status else []
    message = f"spec.promotion.pin {pin!r} is not a checkpoint of {source} (it has: {', '.join(have) or 'none'})"
    phase = job.status.phase if job is not None and job.status else None
    if job is not None and phase not in c.FINISHED_PHASES:
        message += f"; the job is {phase or 'not started'}: a checkpoint it saves under that name will be served"
    if status.served_checkpoint:
        message += f"; still serving {status.served_checkpoint}"
    message += '; set spec.promotion.pin to one of its checkpoints, or to "" to follow the promotion policy'
    return _keep(status, c.Reason.PIN_NOT_FOUND, message, stalled=True)


def _pin(
    deployment: ModelDeployment, status: ModelDeploymentStatus, evaluation: Evaluation | None, job: FineTuneJob | None
) -> Decision:
    pin = deployment.spec.promotion.pin
    current = status.served_checkpoint
    if pin == current:
        return _keep(status, c.Reason.PINNED, f"serving pinned checkpoint {pin}")
    if not _known(pin, job, evaluation):
        return _pin_not_found(pin, status, evaluation, job)
    uri = _uri_of(pin, job, evaluation)
    if current and _is_earlier(pin, current, job, status.revisions):
        return Decision("rollback", pin, uri, c.Reason.ROLLED_BACK, f"pinned to {pin} (rollback from {current})")
    suffix = f" (was {current})" if current else ""
    return Decision("pin", pin, uri, c.Reason.PINNED, f"pinned to {pin}{suffix}")


def held_back_by_safety(evaluation: Evaluation, results: list[ModelResult], chosen: ModelResult | None) -> str | None:
    """Why the checkpoint that would have been served is not: it met the task criteria and was better than
    `chosen` (or nothing was chosen) but failed the safety gate. None when the gate changed nothing."""
    metric = select_metric(evaluation)
    gated = best_result(evaluation, [r for r in results if r.failed_only_safety()], passing_only=False)
    if gated is None:
        return None
    if (
        chosen is not None
        and metric in chosen.metrics
        and not better(metric, gated.metrics[metric], chosen.metrics[metric])
    ):
        return None
    reasons = "; ".join(gated.safety.failures) if gated.safety else ""
    return f"{gated.model} {SAFETY_GATE_FAILED}: {reasons}"


def _from_evaluation(
    deployment: ModelDeployment, status: ModelDeploymentStatus, evaluation: Evaluation | None, job: FineTuneJob | None
) -> Decision:
    decision = _passing_from_evaluation(deployment, status, evaluation, job)
    if evaluation is None or evaluation.status is None:
        return decision
    results = evaluation.status.results
    chosen = next((r for r in results if r.model == decision.checkpoint and r.passed), None)
    held_back = held_back_by_safety(evaluation, results, chosen if decision.checkpoint else None)
    if held_back is None:
        return decision
    if decision.changes or decision.reason == c.Reason.NO_PASSING_CHECKPOINT:
        return replace(decision, message=f"{decision.message}; {held_back}", held_back=held_back)
    return replace(decision, held_back=held_back)


def _passing_from_evaluation(
    deployment: ModelDeployment, status: ModelDeploymentStatus, evaluation: Evaluation | None, job: FineTuneJob | None
) -> Decision:
    ref = deployment.spec.promotion.evaluation
    assert ref is not None
    current = status.served_checkpoint
    if evaluation is None:
        return _keep(status, c.Reason.WAITING_FOR_EVALUATION, f"Evaluation {ref.name!r} not found")
    results = evaluation.status.results if evaluation.status else []
    metric = select_metric(evaluation)
    best = best_result(evaluation, results)
    if best is None:
        message = (
            f"no checkpoint passed Evaluation {ref.name!r} yet"
            if results
            else f"Evaluation {ref.name!r} has no results yet"
        )
        if current:
            message += f"; still serving {current}"
        return _keep(status, c.Reason.NO_PASSING_CHECKPOINT, message)
    score = best.metrics[metric]
    uri = best.uri or _uri_of(best.model, job, evaluation)
    passed = f"{metric} {_fmt(score)} passed Evaluation {ref.name}"
    if current is None:
        return Decision("promote", best.model, uri, c.Reason.PROMOTED, passed)
    if best.model == current:
        return _keep(status, c.Reason.UP_TO_DATE, f"serving the best passing checkpoint {current}")
    if deployment.spec.promotion.policy == "manual":
        return _keep(status, c.Reason.UP_TO_DATE, f"policy manual: staying on {current} ({best.model} is better)")
    served = next((r for r in results if r.model == current), None)
    if served is not None and served.passed and metric in served.metrics:
        if not better(metric, score, served.metrics[metric]):
            return _keep(status, c.Reason.UP_TO_DATE, f"{current} is as good as any passing checkpoint")
        why = f"{passed}, better than {current} ({_fmt(served.metrics[metric])})"
    elif served is not None:
        why = f"{passed}; {current} did not pass"
    else:
        why = f"{passed}; {current} was not evaluated"
    return Decision("rollforward", best.model, uri, c.Reason.ROLLED_FORWARD, why)


def _from_model(deployment: ModelDeployment, status: ModelDeploymentStatus, job: FineTuneJob | None) -> Decision:
    model = deployment.spec.model
    current = status.served_checkpoint
    if model.uri:
        name = PurePosixPath(model.uri.rstrip("/")).name or model.uri
        if status.served_uri == model.uri:
            return _keep(status, c.Reason.UP_TO_DATE, f"serving {model.uri}")
        return Decision("promote", name, model.uri, c.Reason.PROMOTED, f"spec.model.uri {model.uri}")
    ref = model.fine_tune_job
    assert ref is not None
    if job is None:
        return _keep(status, c.Reason.WAITING_FOR_CHECKPOINTS, f"FineTuneJob {ref.name!r} not found")
    cp = resolve_checkpoint(job, ref.checkpoint)
    if cp is None:
        return _keep(
            status,
            c.Reason.WAITING_FOR_CHECKPOINTS,
            f"FineTuneJob {ref.name!r} has no checkpoint {ref.checkpoint!r} yet",
        )
    uri = checkpoint_location(job, cp)
    if cp.name == current and uri == status.served_uri:
        return _keep(status, c.Reason.UP_TO_DATE, f"serving {current}")
    if deployment.spec.promotion.policy == "manual" and current:
        return _keep(status, c.Reason.UP_TO_DATE, f"policy manual: staying on {current}")
    message = f"{ref.checkpoint} checkpoint of FineTuneJob {ref.name}"
    if current is None:
        return Decision("promote", cp.name, uri, c.Reason.PROMOTED, message)
    if _is_earlier(cp.name, current, job, []):
        return Decision("rollback", cp.name, uri, c.Reason.ROLLED_BACK, f"{message} (back from {current})")
    return Decision("rollforward", cp.name, uri, c.Reason.ROLLED_FORWARD, f"{message} (was {current})")


def decide(deployment: ModelDeployment, evaluation: Evaluation | None, job: FineTuneJob | None) -> Decision:
    """What `deployment` should serve given its Evaluation and FineTuneJob as they are now."""
    status = deployment.status or ModelDeploymentStatus()
    promotion = deployment.spec.promotion
    if promotion.pin:
        return _pin(deployment, status, evaluation, job)
    if promotion.evaluation is not None:
        return _from_evaluation(deployment, status, evaluation, job)
    return _from_model(deployment, status, job)


def next_revisions(status: ModelDeploymentStatus | None, decision: Decision, now: str) -> list[dict[str, Any]]:
    """`status.revisions` after `decision` (camelCase dicts for a status patch); unchanged for "none"."""
    history = list((status or ModelDeploymentStatus()).revisions)
    if decision.changes and decision.checkpoint:
        number = (history[-1].revision if history else 0) + 1
        history.append(
            Revision(
                revision=number,
                checkpoint=decision.checkpoint,
                uri=decision.uri,
                promoted_at=now,
                reason=decision.message,
            )
        )
    return [r.to_k8s() for r in history[-MAX_REVISIONS:]]
