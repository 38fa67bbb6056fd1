"""FineTuneJob handlers: create the children, follow the training Job and its pods, suspend/resume, delete.

Every step is idempotent (children are created if absent, status is a merge patch of the fields the
operator owns), so the operator may restart at any moment: `on.resume` runs the same reconcile.

The training Jobs and pods are read from Kopf indexes (`training_jobs`, `training_pods`) that the watches
keep, by FineTuneJob, as an informer's cache would: no LIST per event, so the cost of an event does not
grow with the number of jobs. Kopf fills the indexes before any handler runs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import kopf

from kubetune import constants as c
from kubetune import k8s, metrics
from kubetune.api.clock import now_iso
from kubetune.api.finetunejob import MUTABLE_AFTER_START, FineTuneJob
from kubetune.api.runconfig import TrainRunConfig
from kubetune.builders import jobset
from kubetune.builders.meta import Propagation, propagate
from kubetune.builders.names import job_claim_name
from kubetune.builders.pods import PodSettings
from kubetune.builders.rbac import build_rbac
from kubetune.builders.runconfig import (
    JudgeNotReady,
    checkpoint_location,
    judge_deployments,
    resolve_checkpoint,
    resolve_judge_endpoints,
)
from kubetune.builders.storage import build_pvc
from kubetune.builders.training import (
    build_headless_service,
    build_run_config_map,
    build_training_job,
    config_map_name,
    headless_service_name,
    job_run_config,
    training_job_name,
)
from kubetune.controllers import common, propagation, retention
from kubetune.status import finetunejob as st
from kubetune.status.jobset import as_batch_job
from kubetune.status.memoryplan import plan_event, plan_signature

FTJ = (c.GROUP, c.VERSION, c.PLURALS[c.FINETUNEJOB])
CHILD_FILTER = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_ROLE: c.ROLE_TRAIN}
Phase, Reason, Cond = c.Phase, c.Reason, c.Condition


def _key(namespace: str, name: str) -> tuple[str, str, str]:
    return (c.FINETUNEJOB, namespace, name)


# --- What the watches keep of the training Jobs and pods ---


def _job_of_pod(body: kopf.Body | dict[str, Any]) -> str | None:
    """The FineTuneJob a trainer pod belongs to: its annotation (the full name), else its label."""
    meta = body.get("metadata") or {}
    return (meta.get("annotations") or {}).get(c.LABEL_JOB) or (meta.get("labels") or {}).get(c.LABEL_JOB)


_META_KEPT = ("name", "namespace", "uid", "labels", "annotations", "ownerReferences", "creationTimestamp")


def _cached(body: kopf.Body, *, spec: bool) -> dict[str, Any]:
    """What status and spec-edit decisions read of a child: metadata, status and (for a Job) its spec without
    the pod template, so that thousands of them stay small in memory."""
    meta = body.get("metadata") or {}
    out: dict[str, Any] = {
        "metadata": {k: meta[k] for k in _META_KEPT if k in meta},
        "status": dict(body.get("status") or {}),
    }
    if spec:
        out["spec"] = {k: v for k, v in (body.get("spec") or {}).items() if k != "template"}
    return out


@kopf.index("batch", "v1", "jobs", labels=CHILD_FILTER)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def training_jobs(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Training Jobs by (namespace, FineTuneJob name)."""
    owner = common.owner_name(body, c.FINETUNEJOB)
    return {(namespace, owner): _cached(body, spec=True)} if owner else {}


@kopf.index("", "v1", "pods", labels=CHILD_FILTER)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def training_pods(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Trainer pods by (namespace, FineTuneJob name)."""
    owner = _job_of_pod(body)
    return {(namespace, owner): _cached(body, spec=False)} if owner else {}


@dataclass(frozen=True)
class Watched:
    """The two indexes above, as a handler receives them (kwargs `training_jobs`, `training_pods`)."""

    jobs: kopf.Index[tuple[str, str], dict[str, Any]]
    pods: kopf.Index[tuple[str, str], dict[str, Any]]

    def jobs_of(self, job: FineTuneJob) -> list[dict[str, Any]]:
        """The training Jobs this FineTuneJob owns (by uid: not those of a deleted namesake)."""
        found = self.jobs.get((job.metadata.namespace or "", job.metadata.name), [])
        return [j for j in found if _owned_by(j, job.metadata.uid)]

    def pods_of(self, job: FineTuneJob) -> list[dict[str, Any]]:
        return list(self.pods.get((job.metadata.namespace or "", job.metadata.name), []))


async def _write_status(body: dict[str, Any], patch: dict[str, Any], outcome: st.Outcome | None) -> None:
    """Patch the operator's status fields and tell the transition as an Event."""
    meta = body["metadata"]
    old_phase = (body.get("status") or {}).get("phase")
    await k8s.patch_status(c.FINETUNEJOB, meta["namespace"], meta["name"], patch)
    ev = st.transition_event(old_phase, outcome)
    if ev:
        await common.event(body, *ev)


async def _write_source_status(
    body: dict[str, Any], job: FineTuneJob, outcome: st.Outcome, extra: list[tuple[str, str, str]]
) -> None:
    """Write a status that the batch Job cannot tell (waiting for a source job, stalled on one)."""
    old = (body.get("status") or {}).get("conditions") or []
    patch = st.outcome_status(outcome, old, job.metadata.generation, now_iso(), extra=extra)
    if outcome.phase == Phase.FAILED:
        patch["completionTime"] = now_iso()
    if st.changed(job, patch):
        await _write_status(body, patch, outcome)


async def _resolve_source(body: dict[str, Any], job: FineTuneJob, state: common.OperatorState) -> str:
    """`baseModel.fromJob` -> the source checkpoint's URI, once the source job has succeeded.

    Waits (TemporaryError) while the source runs; stalls (PermanentError) when it failed or lacks the checkpoint.
    """
    ref = job.spec.base_model.from_job
    assert ref is not None
    if job.status and job.status.base_model_uri:
        return job.status.base_model_uri  # resolved before a restart: keep the same checkpoint
    source_body = await k8s.get_or_none(c.FINETUNEJOB, job.metadata.namespace, ref.name)
    source = common.parse(FineTuneJob, source_body, state) if source_body else None
    phase = source.status.phase if source and source.status else None
    if phase == Phase.FAILED:
        msg = (
            f"source FineTuneJob {ref.name!r} failed, so there is no checkpoint to continue from; "
            "fix and re-run it, or point spec.baseModel at another job or uri"
        )
        await _write_source_status(body, job, st.Outcome(Phase.FAILED, Reason.SOURCE_FAILED, msg), [])
        raise kopf.PermanentError(msg)
    if phase != Phase.SUCCEEDED:
        now = f"it is {phase}" if phase else ("it has not started" if source else "it does not exist yet")
        msg = f"waiting for FineTuneJob {ref.name!r} (spec.baseModel.fromJob) to succeed; {now}"
        extra = [(Cond.WAITING_FOR_SOURCE, Reason.WAITING_FOR_SOURCE, msg)]
        await _write_source_status(body, job, st.Outcome(Phase.PENDING, Reason.WAITING_FOR_SOURCE, msg), extra)
        raise kopf.TemporaryError(msg, delay=state.config.source_poll_seconds)
    assert source is not None
    checkpoint = resolve_checkpoint(source, ref.checkpoint)
    if checkpoint is None:
        have = ", ".join(cp.name for cp in (source.status.checkpoints if source.status else [])) or "none"
        msg = (
            f"FineTuneJob {ref.name!r} has no checkpoint {ref.checkpoint!r} (it has: {have}); "
            "set spec.baseModel.fromJob.checkpoint to best, final, latest or one of those"
        )
        await _write_source_status(body, job, st.Outcome(Phase.FAILED, Reason.SOURCE_FAILED, msg), [])
        raise kopf.PermanentError(msg)
    return checkpoint_location(source, checkpoint)


async def _resolve_judges(body: dict[str, Any], job: FineTuneJob, state: common.OperatorState) -> dict[str, str]:
    """The endpoints of the ModelDeployments the job's judge graders name; waits (TemporaryError, status
    WaitingForJudge) while one does not exist or is not Ready. Once the run config exists (the job was
    started), a judge that stops serving changes nothing here: the endpoints it holds are kept."""
    if not judge_deployments(job.spec):
        return {}
    try:
        return resolve_judge_endpoints(
            job.spec, await common.read_judge_deployments(job.spec, job.metadata.namespace or "")
        )
    except JudgeNotReady as err:
        config_map = await k8s.get_or_none("ConfigMap", job.metadata.namespace, config_map_name(job))
        if config_map is not None and not st.is_stale(job, config_map):
            return TrainRunConfig.model_validate_json(config_map["data"][c.RUN_CONFIG_FILE]).judge_endpoints
        msg = str(err)
        extra = [(Cond.WAITING_FOR_JUDGE, Reason.WAITING_FOR_JUDGE, msg)]
        await _write_source_status(body, job, st.Outcome(Phase.PENDING, Reason.WAITING_FOR_JUDGE, msg), extra)
        raise kopf.TemporaryError(msg, delay=state.config.source_poll_seconds) from err


async def _wait_for_own_claim(body: dict[str, Any], job: FineTuneJob, state: common.OperatorState) -> None:
    """Before anything is created: `<job>-data` must be absent or this job's own. A deleted namesake's kept
    PVC (or one kubetune did not make) is never trained into: status says why (Stalled), a Warning Event
    names the claim, its users and what to do, and the job polls (TemporaryError) until the claim is gone."""
    held = await retention.claim_held(body)
    if held is None:
        return
    outcome, extra = st.claim_held(held.message, held.stalled)
    old = (body.get("status") or {}).get("conditions") or []
    patch = st.outcome_status(outcome, old, job.metadata.generation, now_iso(), extra=extra)
    if st.changed(job, patch):  # said once per state of the claim, not at every poll
        await _write_status(body, patch, outcome)
        await common.event(body, "Warning" if held.stalled else "Normal", Reason.PVC_CONFLICT, held.message)
    raise kopf.TemporaryError(held.message, delay=state.config.source_poll_seconds)


def _edited_after_early_failure(job: FineTuneJob) -> bool:
    """Failed before training started (invalid spec, source job failed or lacking the checkpoint) and the
    spec changed since: the user acted on the message, so the job gets another go."""
    status = job.status
    return bool(
        status
        and status.phase == Phase.FAILED
        and not status.start_time
        and status.observed_generation is not None
        and job.metadata.generation is not None
        and status.observed_generation < job.metadata.generation
    )


def children(
    job: FineTuneJob,
    source_uri: str | None,
    pods: PodSettings,
    *,
    on_jobset: bool = False,
    judge_endpoints: dict[str, str] | None = None,
    propagation: Propagation | None = None,
) -> list[dict[str, Any] | None]:
    """Everything a job needs, in creation order (the workload last, so its pods find the rest), each with the
    labels and annotations the job passes on (`propagation`). On a JobSet, JobSet makes the headless Service
    itself."""
    run_config = job_run_config(job, pods, source_checkpoint_uri=source_uri, judge_endpoints=judge_endpoints)
    workload = (
        jobset.build_training_jobset(job, pods, source_checkpoint_uri=source_uri)
        if on_jobset
        else build_training_job(job, pods, source_checkpoint_uri=source_uri)
    )
    built = [
        build_pvc(job, pods),
        build_run_config_map(job, run_config),
        *build_rbac(job),
        None if on_jobset else build_headless_service(job),
        workload,
    ]
    return propagate(built, job, propagation)


def _on_jobset(job: FineTuneJob, state: common.OperatorState, watched: Watched) -> bool:
    """Whether this job trains on a JobSet: several nodes and JobSet served, unless a batch Job of it exists
    already (made before JobSet was installed: the job keeps it)."""
    return jobset.uses_jobset(job, state.jobset) and not watched.jobs_of(job)


async def _workload(job: FineTuneJob, on_jobset: bool) -> tuple[str, dict[str, Any] | None]:
    """(kind, object) of the job's training workload: its JobSet or its batch Job (None when there is none)."""
    if on_jobset:
        return "JobSet", await k8s.get_or_none("JobSet", job.metadata.namespace, jobset.jobset_name(job))
    return "Job", await k8s.get_or_none("Job", job.metadata.namespace, training_job_name(job))


def _as_batch(kind: str, obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The workload as the batch Job observation the status is computed from."""
    return as_batch_job(obj) if kind == "JobSet" and obj is not None else obj


def _owned_by(obj: dict[str, Any], uid: str | None) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


async def _apply_spec_edit(
    raw: dict[str, Any], job: FineTuneJob, watched: Watched, state: common.OperatorState, logger: kopf.Logger
) -> bool:
    """Bring the training Job and run-config ConfigMap in line with the spec (see status.spec_action).

    Before training started, children built from an earlier spec are deleted (the Job with its pods, also a
    suspended one Kueue holds), and the caller creates them anew. A restart half-way is safe: whatever of
    the old pair is left still carries the old hash and goes on the next reconcile. False when the edit is
    refused (training had started): nothing is touched and status says why.
    """
    namespace = job.metadata.namespace
    jobs = watched.jobs_of(job)
    kinds = ["Job"] * len(jobs)
    if jobset.uses_jobset(job, state.jobset) and not jobs:
        _, found = await _workload(job, True)
        jobs, kinds = ([found], ["JobSet"]) if found is not None else ([], [])
    config_map = await k8s.get_or_none("ConfigMap", namespace, config_map_name(job))
    pods = watched.pods_of(job) if jobs else []
    observed = [_as_batch(kind, j) or {} for kind, j in zip(kinds, jobs, strict=True)]
    started = bool(job.status and job.status.start_time) or any(st.trainer_started(j, pods) for j in observed)
    action = st.spec_action(job, [*jobs, config_map], started)
    if action == "keep":
        return True
    if action == "refuse":
        await common.event(raw, "Warning", Reason.SPEC_CHANGE_REFUSED, st.refused_message(job))
        return False
    stale = [(kind, j) for kind, j in zip(kinds, jobs, strict=True) if st.is_stale(job, j)]
    if config_map is not None and st.is_stale(job, config_map):
        stale.append(("ConfigMap", config_map))
    gone = []
    for kind, obj in stale:  # (list items carry no `kind` on a real API server)
        # Background: the Job goes at once (its name is free for the new one), its pods right after.
        await k8s.delete(kind, namespace, obj["metadata"]["name"], propagation="Background")
        gone.append(f"{kind}/{obj['metadata']['name']}")
    if job.status and job.status.base_model_uri:
        # baseModel may have been edited: resolve fromJob again for the new Job.
        await k8s.patch_status(c.FINETUNEJOB, namespace, job.metadata.name, {"baseModelUri": None})
        job.status.base_model_uri = None
    msg = (
        f"spec changed before training started (generation {job.metadata.generation}): "
        f"re-creating {', '.join(gone)} from it"
    )
    logger.info(msg)
    await common.event(raw, "Normal", Reason.RECREATED, msg)
    return True


@kopf.on.resume(*FTJ)
@kopf.on.create(*FTJ)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def reconcile(
    body: kopf.Body,
    namespace: str,
    name: str,
    logger: kopf.Logger,
    memo: kopf.Memo,
    training_jobs: kopf.Index[tuple[str, str], dict[str, Any]],
    training_pods: kopf.Index[tuple[str, str], dict[str, Any]],
    **_: Any,
) -> None:
    """Create the children that are missing (re-create those built from an earlier spec while training has
    not started), then report the state they are in."""
    state, watched = common.state(memo), Watched(training_jobs, training_pods)
    with metrics.track("finetunejob.reconcile", expected=(kopf.TemporaryError,)):
        raw = dict(body)
        try:
            job = common.parse(FineTuneJob, raw, state)
        except kopf.PermanentError as err:
            outcome = st.Outcome(Phase.FAILED, Reason.INVALID_SPEC, str(err))
            old = (raw.get("status") or {}).get("conditions") or []
            gen = raw["metadata"].get("generation")
            patch = st.outcome_status(outcome, old, gen, now_iso())
            await _write_status(raw, patch, outcome)
            raise
        if job.status and job.status.phase in c.FINISHED_PHASES:
            if not _edited_after_early_failure(job):
                return  # finished before a restart: nothing to create again (its Job may be gone by TTL)
            # The spec was fixed after a failure that came before any training: start over.
            await k8s.patch_status(c.FINETUNEJOB, namespace, name, {"completionTime": None})
        async with state.lock(*_key(namespace, name)):
            applies = await _apply_spec_edit(raw, job, watched, state, logger)
        if not applies:
            await sync_status(state, watched, namespace, name)
            return
        source_uri = await _resolve_source(raw, job, state) if job.spec.base_model.from_job else None
        if source_uri and not (job.status and job.status.base_model_uri):
            # Recorded before the Job exists, so a restart continues from the same checkpoint.
            await k8s.patch_status(c.FINETUNEJOB, namespace, name, {"baseModelUri": source_uri})
        judges = await _resolve_judges(raw, job, state)
        await _wait_for_own_claim(raw, job, state)
        on_jobset = _on_jobset(job, state, watched)
        try:
            async with state.lock(*_key(namespace, name)):
                objects, created = await common.ensure(
                    children(
                        job,
                        source_uri,
                        state.config.pods,
                        on_jobset=on_jobset,
                        judge_endpoints=judges,
                        propagation=state.config.propagation,
                    )
                )
        except common.ChildRefused as err:
            await _write_source_status(raw, job, st.child_refused(err.child, err.message), [])
            raise
        kind = "JobSet" if on_jobset else "Job"
        if st.is_stale(job, objects.get(kind)):
            # The old Job still holds the name (a finalizer keeps it a while): create the new one next time.
            raise kopf.TemporaryError("waiting for the training Job of the earlier spec to be deleted", delay=2)
        if created:
            logger.info(f"created {', '.join(created)}")
            await common.event(raw, "Normal", Reason.CREATED, f"created {', '.join(created)}")
        workload = objects.get(kind)
        # A workload created just now whose watch event was quicker: the status is computed from it already.
        just_created = workload is not None and f"{kind}/{workload['metadata']['name']}" in created
        await sync_status(state, watched, namespace, name, batch_job=_as_batch(kind, workload), news_only=just_created)


async def sync_status(
    state: common.OperatorState,
    watched: Watched,
    namespace: str,
    name: str,
    *,
    batch_job: dict[str, Any] | None = None,
    news_only: bool = False,
) -> None:
    """Read the job and its batch Job, take its pods from the index; write phase, conditions, times, retries
    when they changed. `news_only`: nothing to do when the status was last computed from this very version of
    `batch_job` (the watch event of the Job that reconcile has just created and synced from); pods, spec edits
    and the trainer's reports come with events of their own."""
    async with state.lock(*_key(namespace, name)):
        if news_only and batch_job is not None and state.synced_from(_key(namespace, name), batch_job):
            return
        body = await k8s.get_or_none(c.FINETUNEJOB, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            job = FineTuneJob.model_validate(body)
        except ValueError:
            return  # reconcile reports invalid specs
        if batch_job is None:  # one the caller has (just created, or from a watch event) is read as it is
            kind, workload = await _workload(job, _on_jobset(job, state, watched))
            batch_job = _as_batch(kind, workload)
        if batch_job is None:
            # Not created yet (waiting for a source job) or gone after its TTL: the status stays as it is,
            # but a finished job whose spec was edited (suspend, ttlSecondsAfterFinished) has seen that edit.
            await _observe_generation(job)
            return
        pods = watched.pods_of(job)
        # Pods of a deleted earlier Job (re-created after a spec edit) may linger a moment: not this Job's.
        job_uid = batch_job["metadata"].get("uid")
        if batch_job.get("kind") == jobset.KIND:  # its pods belong to its child Jobs, labelled with its uid
            pods = [
                p for p in pods if (p["metadata"].get("labels") or {}).get(jobset.LABEL_JOBSET_UID) in (None, job_uid)
            ]
        else:
            pods = [p for p in pods if not _owned_by_job(p) or _owned_by(p, job_uid)]
        patch = st.compute_status(job, batch_job, pods)
        if st.changed(job, patch):
            await _write_status(body, patch, st.observe(job, batch_job, pods))
        state.remember_synced(_key(namespace, name), batch_job)


def _owned_by_job(obj: dict[str, Any]) -> bool:
    return any(ref.get("kind") == "Job" for ref in obj["metadata"].get("ownerReferences") or [])


async def _observe_generation(job: FineTuneJob) -> None:
    """Record the current generation on a finished job (kstatus readers wait for it, e.g. Argo CD)."""
    patch = st.generation_seen(job)
    if patch:
        await k8s.patch_status(c.FINETUNEJOB, job.metadata.namespace, job.metadata.name, patch)


@kopf.on.update(*FTJ)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def update(
    body: kopf.Body,
    diff: kopf.Diff,
    namespace: str,
    name: str,
    logger: kopf.Logger,
    memo: kopf.Memo,
    training_jobs: kopf.Index[tuple[str, str], dict[str, Any]],
    training_pods: kopf.Index[tuple[str, str], dict[str, Any]],
    **_: Any,
) -> None:
    """Suspend or resume the training Job (`spec.suspend`); pass on `ttlSecondsAfterFinished`; apply any other
    edit made before training started by re-creating the Job (see reconcile); start a job whose spec was
    fixed after it failed before training (e.g. `spec.baseModel` pointed at a failed job)."""
    with metrics.track("finetunejob.update"):
        state, watched = common.state(memo), Watched(training_jobs, training_pods)
        job = common.parse(FineTuneJob, dict(body), state)
        kind, workload = await _workload(job, _on_jobset(job, state, watched))
        batch = _as_batch(kind, workload)
        not_started = not (job.status and (job.status.start_time or job.status.phase in c.FINISHED_PHASES))
        reconciled = False
        if (batch is None and (not_started or _edited_after_early_failure(job))) or _frozen_field_changed(diff):
            await reconcile(  # pyright: ignore[reportCallIssue]  # kopf retypes decorated handlers; this is the plain coroutine
                body=body,
                namespace=namespace,
                name=name,
                logger=logger,
                memo=memo,
                training_jobs=training_jobs,
                training_pods=training_pods,
            )
            if not any(field[:2] in _MUTABLE_FIELDS for _, field, *_ in diff):
                return
            reconciled = True
            kind, workload = await _workload(job, _on_jobset(job, state, watched))
            batch = _as_batch(kind, workload)
        observed = st.observe(job, batch, []) if batch is not None else None
        finished = observed is not None and observed.phase in c.FINISHED_PHASES
        for _op, field, _old, new in diff:
            if batch is None or finished:
                break
            if field == ("spec", "suspend"):
                if reconciled and bool((batch.get("spec") or {}).get("suspend")) == bool(new):
                    continue  # the Job was just re-created with it
                await _set_suspend(dict(body), job, bool(new), kind, batch["metadata"]["name"])
            elif field == ("spec", "ttlSecondsAfterFinished"):
                await k8s.patch_merge(
                    kind, namespace, batch["metadata"]["name"], {"spec": {"ttlSecondsAfterFinished": new}}
                )
        await sync_status(state, watched, namespace, name)


_MUTABLE_FIELDS = {("spec", key) for key in MUTABLE_AFTER_START}


def _frozen_field_changed(diff: kopf.Diff) -> bool:
    """Whether the edit touches a spec field other than those changed in place on the Job."""
    return any(field[:1] == ("spec",) and field[:2] not in _MUTABLE_FIELDS for _, field, *_ in diff)


async def _set_suspend(body: dict[str, Any], job: FineTuneJob, suspend: bool, kind: str, job_name: str) -> None:
    """Suspend or resume the workload (`kind` Job or JobSet, named `job_name`)."""
    namespace = job.metadata.namespace
    if suspend:
        await k8s.patch_merge(kind, namespace, job_name, {"spec": {"suspend": True}})
        await common.event(body, "Normal", Reason.SUSPENDED, "suspended: the trainer pod stops; checkpoints are kept")
    elif job.spec.queue_name:
        # Kueue owns spec.suspend of queued Jobs: it resumes the Job when it admits the workload again.
        await common.event(
            body, "Normal", Reason.RESUMED, f"resumed: waiting for Kueue (queue {job.spec.queue_name!r})"
        )
    else:
        await k8s.patch_merge(kind, namespace, job_name, {"spec": {"suspend": False}})
        await common.event(body, "Normal", Reason.RESUMED, "resumed: training continues from the latest checkpoint")


@kopf.on.delete(*FTJ)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def delete(
    body: kopf.Body, namespace: str, name: str, logger: kopf.Logger, memo: kopf.Memo, **kwargs: Any
) -> None:
    """Children go by owner references; the PVC the operator created goes here, unless something still uses it
    or its retention policy is Retain (controllers.retention: kept, labelled, and an Event says why)."""
    with metrics.track("finetunejob.delete"):
        await retention.release_job_claim(dict(body), kwargs, logger)
        state = common.state(memo)
        state.metrics.forget_job(namespace, name)
        state.forget(*_key(namespace, name))


@kopf.on.event(*FTJ)
async def observe(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Metrics follow every change of a job, including the trainer's progress patches. Async although it
    awaits nothing: it only updates in-memory series, so it runs on the event loop, not in a thread."""
    meta, recorder = body.get("metadata") or {}, common.state(memo).metrics
    if event.get("type") == "DELETED":
        recorder.forget_job(meta.get("namespace", ""), meta.get("name", ""))
    else:
        recorder.observe_job(body, dt.datetime.now(dt.UTC))


def child_refs(job: FineTuneJob, jobset_served: bool) -> list[propagation.ChildRef]:
    """(kind, name) of every child a job may have made: its PVC (not a claim the user named), run config,
    RBAC, headless Service and training Job or JobSet. Those that do not exist are skipped by the caller."""
    refs: list[propagation.ChildRef] = []
    if not job.spec.storage.claim_name:
        refs.append(("PersistentVolumeClaim", job_claim_name(job)))
    refs.append(("ConfigMap", config_map_name(job)))
    refs += [(m["kind"], m["metadata"]["name"]) for m in build_rbac(job)]
    if job.spec.resources.nodes > 1:
        refs.append(("Service", headless_service_name(job)))
        if jobset_served:
            refs.append((jobset.KIND, jobset.jobset_name(job)))
    refs.append(("Job", training_job_name(job)))
    return refs


@kopf.on.event(*FTJ)
async def pass_on_metadata(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """A label or annotation the job passes on was added, changed or removed (`kubectl label ftj ...`): its
    existing children's metadata follows, also when the job has finished (controllers.propagation)."""
    state = common.state(memo)

    async def children() -> tuple[propagation.ChildRef, list[propagation.ChildRef]] | None:
        if c.FINALIZER not in ((body.get("metadata") or {}).get("finalizers") or []):
            return None  # not reconciled yet (Kopf adds the finalizer first): its children will carry these
        try:
            job = FineTuneJob.model_validate(dict(body))
        except ValueError:
            return None
        return ("ConfigMap", config_map_name(job)), child_refs(job, state.jobset)

    await propagation.follow(event, body, memo, state.config.propagation, children, logger, "finetunejob.metadata")


@kopf.on.event(*FTJ)
async def memory_plan_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """An Event when status.memoryPlan (written by the trainer at start) appears or changes; Warning when the run
    does not fit. Once per plan seen by this operator process (a restart may say it once more)."""
    signature = plan_signature(body)
    if signature is None or not common.changed_since_last_event(memo, "memory_plan", event, signature):
        return
    told = plan_event(body)
    if told is not None and event.get("type") != "DELETED":
        await common.event(dict(body), *told)


def _lags_trainer(body: kopf.Body, **_: Any) -> bool:
    return st.lags_trainer(body.get("status"))


@kopf.on.event(*FTJ, when=_lags_trainer)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def trainer_reported(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    training_jobs: kopf.Index[tuple[str, str], dict[str, Any]],
    training_pods: kopf.Index[tuple[str, str], dict[str, Any]],
    **_: Any,
) -> None:
    """The trainer reported its data valid or a step on its own status fields (a patch of the status
    subresource, which no Job or pod event follows): move the phase now (Validating -> Running), not at the
    next Job or pod event or the resync. Only while the recorded phase lags the reports (`st.lags_trainer`):
    progress reports that change no phase cost nothing, and the operator's own write ends it."""
    if event.get("type") == "DELETED":
        return
    with metrics.track("finetunejob.trainer_report"):
        watched = Watched(training_jobs, training_pods)
        uid = (body.get("metadata") or {}).get("uid")
        jobs = [j for j in training_jobs.get((namespace, name), []) if _owned_by(j, uid)]
        # The batch Job as the watch keeps it (no GET); sync_status reads it (or a JobSet) itself otherwise.
        batch_job = jobs[0] if len(jobs) == 1 else None
        await sync_status(common.state(memo), watched, namespace, name, batch_job=batch_job)


@kopf.on.event("batch", "v1", "jobs", labels=CHILD_FILTER)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def training_job_changed(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str,
    memo: kopf.Memo,
    training_jobs: kopf.Index[tuple[str, str], dict[str, Any]],
    training_pods: kopf.Index[tuple[str, str], dict[str, Any]],
    **_: Any,
) -> None:
    """A training Job changed (started, pod failed, succeeded, failed): update its FineTuneJob."""
    owner = common.live_child_owner(event, body, c.FINETUNEJOB)
    if owner:
        with metrics.track("finetunejob.job_event"):
            watched = Watched(training_jobs, training_pods)
            await sync_status(common.state(memo), watched, namespace, owner, batch_job=dict(body), news_only=True)


@kopf.on.event(jobset.GROUP, jobset.VERSION, jobset.PLURAL, labels=CHILD_FILTER)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def training_jobset_changed(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str,
    memo: kopf.Memo,
    training_jobs: kopf.Index[tuple[str, str], dict[str, Any]],
    training_pods: kopf.Index[tuple[str, str], dict[str, Any]],
    **_: Any,
) -> None:
    """A training JobSet changed (admitted, restarted, completed, failed): update its FineTuneJob. Kopf watches
    JobSets only where the cluster serves them."""
    owner = common.live_child_owner(event, body, c.FINETUNEJOB)
    if owner:
        with metrics.track("finetunejob.jobset_event"):
            watched = Watched(training_jobs, training_pods)
            await sync_status(common.state(memo), watched, namespace, owner, batch_job=as_batch_job(dict(body)))


@kopf.on.event("", "v1", "pods", labels=CHILD_FILTER)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def training_pod_changed(
    body: kopf.Body,
    namespace: str,
    memo: kopf.Memo,
    training_jobs: kopf.Index[tuple[str, str], dict[str, Any]],
    training_pods: kopf.Index[tuple[str, str], dict[str, Any]],
    **_: Any,
) -> None:
    """A trainer pod changed (scheduled, running, terminated): update its FineTuneJob."""
    owner = _job_of_pod(body)
    if owner:
        with metrics.track("finetunejob.pod_event"):
            await sync_status(common.state(memo), Watched(training_jobs, training_pods), namespace, owner)
