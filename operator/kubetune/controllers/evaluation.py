"""Evaluation handlers: run the evaluation Job once the FineTuneJob has checkpoints, again when new ones appear.

The evaluation pod writes `results/baseline/report` into the Evaluation's status itself; this writes
phase, conditions (Ready, Passed), times, `evaluatedCheckpoints`, `best`, `passed`, Events and the
`kubetune_evaluation_score` metric. A reconcile reads everything fresh under the object's lock, so
watch events, timers and restarts can all call it.
"""

from __future__ import annotations

from typing import Any

import kopf

from kubetune import constants as c
from kubetune import k8s, metrics
from kubetune.api.clock import now_iso
from kubetune.api.common import SecretKeyRef
from kubetune.api.evaluation import Evaluation
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.api.runconfig import EvalRunConfig
from kubetune.builders import evaluation as ev
from kubetune.builders.runconfig import JudgeNotReady, eval_targets, resolve_judge_endpoints
from kubetune.controllers import common, config, propagation
from kubetune.errors import UnresolvedReference
from kubetune.status import evaluation as ev_status

EVAL = (c.GROUP, c.VERSION, c.PLURALS[c.EVALUATION])
FTJ = (c.GROUP, c.VERSION, c.PLURALS[c.FINETUNEJOB])
MDEP = (c.GROUP, c.VERSION, c.PLURALS[c.MODELDEPLOYMENT])
EVAL_JOB_FILTER = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_ROLE: c.ROLE_EVAL}
RESYNC_SECONDS = config.timer_interval()  # the safety net behind the watch events (KUBETUNE_RESYNC_SECONDS)


def _key(namespace: str, name: str) -> tuple[str, str, str]:
    return (c.EVALUATION, namespace, name)


def _owned(batch_job: dict[str, Any], uid: str | None) -> bool:
    return any(ref.get("uid") == uid for ref in batch_job["metadata"].get("ownerReferences") or [])


def _active(batch_job: dict[str, Any]) -> bool:
    return ev_status.job_state(batch_job) == "Active"


async def _sources(evaluation: Evaluation) -> tuple[FineTuneJob | None, str | None, SecretKeyRef | None]:
    """The FineTuneJob (or ModelDeployment endpoint, and the Secret key of its API key) an Evaluation scores."""
    ref, namespace = evaluation.spec.model, evaluation.metadata.namespace
    job, endpoint, deployment = None, None, None
    if ref.fine_tune_job is not None:
        body = await k8s.get_or_none(c.FINETUNEJOB, namespace, ref.fine_tune_job.name)
        job = FineTuneJob.model_validate(body) if body else None
    if ref.model_deployment is not None:
        body = await k8s.get_or_none(c.MODELDEPLOYMENT, namespace, ref.model_deployment.name)
        deployment = ModelDeployment.model_validate(body) if body else None
        endpoint = deployment.status.endpoint if deployment and deployment.status else None
    return job, endpoint, ev.endpoint_api_key_ref(evaluation, deployment)


async def _start(
    body: dict[str, Any],
    evaluation: Evaluation,
    job: FineTuneJob | None,
    cfg: EvalRunConfig,
    settings: config.OperatorConfig,
    endpoint_key: SecretKeyRef | None = None,
) -> dict[str, Any]:
    """Create RBAC, run config and the Job for this run; delete the finished runs it supersedes."""
    name = ev.eval_job_name(evaluation, cfg.targets)
    *prerequisites, workload = ev.build_children(
        evaluation, job, cfg, settings.pods, settings.propagation, endpoint_key=endpoint_key
    )
    await common.ensure(list(prerequisites))
    batch_job, created = await k8s.create_if_absent(workload)
    namespace = evaluation.metadata.namespace
    for old in await k8s.list_objects("Job", namespace, labels=ev.job_labels(evaluation)):
        old_name = old["metadata"]["name"]
        if old_name != name and _owned(old, evaluation.metadata.uid):
            await k8s.delete("Job", namespace, old_name)
            await k8s.delete("ConfigMap", namespace, old_name)
    if created:
        models = ", ".join(t.name for t in cfg.targets)
        await common.event(
            body, "Normal", c.EVENT_EVALUATION_STARTED, f"Evaluating {len(cfg.targets)} model(s): {models}"
        )
    return batch_job


def _scored_already(evaluation: Evaluation, job: FineTuneJob | None, endpoint: str | None) -> bool:
    """Finished for this generation, with every model it would score now among those it scored."""
    status = evaluation.status
    if status is None or status.phase not in c.FINISHED_PHASES:
        return False
    if status.observed_generation != evaluation.metadata.generation:
        return False
    try:
        targets = eval_targets(evaluation, job, endpoint)
    except UnresolvedReference:
        return True  # nothing new to score either
    return {t.name for t in targets} <= set(status.evaluated_checkpoints)


async def reconcile(state: common.OperatorState, namespace: str, name: str) -> None:
    """Bring one Evaluation up to date: start a run when there is something new to score, report its state."""
    async with state.lock(*_key(namespace, name)):
        # Jobs before the Evaluation: the pod writes its results before its Job completes, so a
        # completed Job read first is never paired with an Evaluation read before those results.
        all_runs = await k8s.list_objects("Job", namespace, labels=ev.labels_of_runs(name))
        body = await k8s.get_or_none(c.EVALUATION, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            evaluation = common.parse(Evaluation, body, state)
        except kopf.PermanentError as err:  # refused by admission: said in status and an Event, once
            patch = ev_status.refused(body.get("status"), body["metadata"].get("generation"), str(err), now_iso())
            if patch:
                await k8s.patch_status(c.EVALUATION, namespace, name, patch)
                await common.event(body, "Warning", c.Reason.INVALID_SPEC, str(err))
            raise
        status = evaluation.status
        job, endpoint, endpoint_key = await _sources(evaluation)
        waiting_reason = c.Reason.WAITING_FOR_CHECKPOINTS
        try:
            judges = resolve_judge_endpoints(
                evaluation.spec, await common.read_judge_deployments(evaluation.spec, namespace)
            )
            cfg = ev.run_config(evaluation, job, state.config.pods, endpoint, judge_endpoints=judges)
            waiting = None
        except JudgeNotReady as err:
            if _scored_already(evaluation, job, endpoint):
                return  # a judge that stopped serving after the run changes nothing scored
            cfg, waiting, waiting_reason = None, str(err), c.Reason.WAITING_FOR_JUDGE
        except UnresolvedReference as err:
            cfg, waiting = None, str(err)
        runs = [j for j in all_runs if _owned(j, evaluation.metadata.uid)]
        current: dict[str, Any] | None = None
        if cfg is not None:
            wanted = ev.eval_job_name(evaluation, cfg.targets)
            current = next((j for j in runs if j["metadata"]["name"] == wanted), None)
            done = (
                status is not None
                and status.phase in c.FINISHED_PHASES
                and status.observed_generation == evaluation.metadata.generation
                and {t.name for t in cfg.targets} <= set(status.evaluated_checkpoints)
            )
            if current is None and done:
                return  # scored already; its Job was cleaned up
            if current is None:
                busy = next((j for j in runs if _active(j)), None)
                if busy is not None:
                    current = busy  # new checkpoints wait until the running evaluation finishes
                else:
                    current = await _start(body, evaluation, job, cfg, state.config, endpoint_key)
        elif runs and status and status.results:
            waiting = None  # a job's checkpoints may have gone (keep): report the last run
            current = max(runs, key=lambda j: j["metadata"].get("creationTimestamp") or "")
        outcome = ev_status.observe(evaluation, current, waiting, waiting_reason)
        patch = ev_status.compute_status(evaluation, outcome, current, now_iso())
        if not ev_status.changed(evaluation, patch):
            return
        await k8s.patch_status(c.EVALUATION, namespace, name, patch)
        await _post_transition_event(body, status.phase if status else None, outcome)


async def _post_transition_event(body: dict[str, Any], old_phase: str | None, outcome: ev_status.EvalOutcome) -> None:
    """An Event per phase transition: started is told by _start; finished, failed and waiting here."""
    if outcome.phase == old_phase:
        return
    if outcome.phase == c.Phase.SUCCEEDED:
        await common.event(body, "Normal" if outcome.passed else "Warning", c.Reason.EVALUATED, outcome.message)
    elif outcome.phase == c.Phase.FAILED:
        await common.event(body, "Warning", outcome.reason, outcome.message)
    elif outcome.phase == c.Phase.PENDING and outcome.reason in (
        c.Reason.WAITING_FOR_CHECKPOINTS,
        c.Reason.WAITING_FOR_JUDGE,
    ):
        await common.event(body, "Normal", outcome.reason, outcome.message)


# --- Handlers ---


@kopf.on.resume(*EVAL)
@kopf.on.create(*EVAL)
@kopf.on.update(*EVAL)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def evaluation_changed(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    with metrics.track("evaluation.reconcile"):
        await reconcile(common.state(memo), namespace, name)


@kopf.timer(*EVAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, idle=None)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def evaluation_resync(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    with metrics.track("evaluation.resync"):
        await reconcile(common.state(memo), namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=EVAL_JOB_FILTER)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def evaluation_job_changed(
    event: kopf.RawEvent, body: kopf.Body, namespace: str, memo: kopf.Memo, **_: Any
) -> None:
    """An evaluation Job started, finished or failed: update its Evaluation."""
    owner = common.live_child_owner(event, body, c.EVALUATION)
    if owner:
        with metrics.track("evaluation.job_event"):
            await reconcile(common.state(memo), namespace, owner)


@kopf.index(*EVAL)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def evaluations_by_job(spec: kopf.Spec, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], str]:
    """Evaluation names by (namespace, the FineTuneJob they score), so a job's event finds them without a LIST."""
    job = ((spec.get("model") or {}).get("fineTuneJob") or {}).get("name")
    return {(namespace, job): name} if job else {}


@kopf.on.event(*FTJ)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def evaluations_follow_job(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    evaluations_by_job: kopf.Index[tuple[str, str], str],
    **_: Any,
) -> None:
    """A FineTuneJob got new checkpoints (or finished): reconcile the Evaluations that score it."""
    status = body.get("status") or {}
    seen = (status.get("phase"), tuple(cp.get("name") for cp in status.get("checkpoints") or []))
    if not common.changed_since_last_event(memo, "evaluations", event, seen) or event.get("type") == "DELETED":
        return
    with metrics.track("evaluation.job_checkpoints"):
        for evaluation in sorted(set(evaluations_by_job.get((namespace, name), []))):
            await reconcile(common.state(memo), namespace, evaluation)


@kopf.index(*EVAL)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def evaluations_by_judge(spec: kopf.Spec, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], str]:
    """Evaluation names by (namespace, a ModelDeployment one of their judges is served by)."""
    metric = spec.get("judge") if "judge" in (spec.get("metrics") or []) else None
    safety = spec.get("safety") or {}
    judges = [metric, safety.get("judge") if safety.get("scorer") == "judge" else None]
    found = [((j.get("endpoint") or {}).get("modelDeployment") or {}).get("name") for j in judges if j]
    return {(namespace, md): name for md in found if md}


@kopf.on.event(*MDEP)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def evaluations_follow_judge(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    evaluations_by_judge: kopf.Index[tuple[str, str], str],
    **_: Any,
) -> None:
    """A judge's ModelDeployment became Ready (or moved): the Evaluations waiting for it start."""
    status = body.get("status") or {}
    seen = (status.get("phase"), status.get("endpoint"))
    if not common.changed_since_last_event(memo, "judged_evaluations", event, seen):
        return
    with metrics.track("evaluation.judge_event"):
        for evaluation in sorted(set(evaluations_by_judge.get((namespace, name), []))):
            await reconcile(common.state(memo), namespace, evaluation)


@kopf.on.event(*EVAL)
async def pass_on_metadata(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """A label or annotation the Evaluation passes on changed: its ServiceAccount, Role, RoleBinding and each
    run's Job and ConfigMap follow (controllers.propagation), also once it has finished."""
    state = common.state(memo)

    async def children() -> tuple[propagation.ChildRef, list[propagation.ChildRef]] | None:
        try:
            evaluation = Evaluation.model_validate(dict(body))
        except ValueError:
            return None
        rbac = [(m["kind"], m["metadata"]["name"]) for m in ev.build_rbac(evaluation)]
        namespace = evaluation.metadata.namespace
        runs = await k8s.list_objects("Job", namespace, labels=ev.job_labels(evaluation))
        names = sorted(j["metadata"]["name"] for j in runs if _owned(j, evaluation.metadata.uid))
        return rbac[0], [*rbac, *(("ConfigMap", n) for n in names), *(("Job", n) for n in names)]

    await propagation.follow(event, body, memo, state.config.propagation, children, logger, "evaluation.metadata")


@kopf.on.event(*EVAL)
async def evaluation_scores(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The score metric follows every status write, including the evaluation pod's."""
    meta, state = body.get("metadata") or {}, common.state(memo)
    if event.get("type") == "DELETED":
        state.metrics.forget_evaluation(meta.get("namespace", ""), meta.get("name", ""))
        state.forget(*_key(meta.get("namespace", ""), meta.get("name", "")))
    else:
        state.metrics.observe_evaluation(body)
