"""ModelDeployment handlers: decide which checkpoint to serve, apply Deployment + Service (+ HPA), report.

A reconcile reads the ModelDeployment, its FineTuneJob and Evaluation fresh under the object's lock,
asks `builders.promotion.decide`, applies the manifests (create, or merge-patch when they differ),
appends a revision when the served checkpoint changes, and tells each change as an Event
(Promoted, RolledForward, RolledBack, Pinned). Watch events on the Evaluation, the FineTuneJob and the
apps/v1 Deployment trigger it; a timer is the safety net.
"""

from __future__ import annotations

from typing import Any

import kopf

from kubetune import constants as c
from kubetune import k8s, metrics
from kubetune.api.clock import now_iso
from kubetune.api.evaluation import Evaluation
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.builders import promotion, serving
from kubetune.controllers import common, config, serving_extras
from kubetune.errors import OwnershipConflict, SpecError
from kubetune.status import modeldeployment as md_status

MDEP = (c.GROUP, c.VERSION, c.PLURALS[c.MODELDEPLOYMENT])
EVAL = (c.GROUP, c.VERSION, c.PLURALS[c.EVALUATION])
FTJ = (c.GROUP, c.VERSION, c.PLURALS[c.FINETUNEJOB])
SERVE_FILTER = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_ROLE: c.ROLE_SERVE}
RESYNC_SECONDS = config.timer_interval()  # the safety net behind the watch events (KUBETUNE_RESYNC_SECONDS)


def _key(namespace: str, name: str) -> tuple[str, str, str]:
    return (c.MODELDEPLOYMENT, namespace, name)


async def _sources(md: ModelDeployment) -> tuple[Evaluation | None, FineTuneJob | None]:
    namespace = md.metadata.namespace
    evaluation, job = None, None
    if md.spec.promotion.evaluation is not None:
        body = await k8s.get_or_none(c.EVALUATION, namespace, md.spec.promotion.evaluation.name)
        evaluation = Evaluation.model_validate(body) if body else None
    job_name = md.spec.model.fine_tune_job.name if md.spec.model.fine_tune_job else None
    if job_name is None and evaluation is not None and evaluation.spec.model.fine_tune_job is not None:
        job_name = evaluation.spec.model.fine_tune_job.name
    if job_name:
        body = await k8s.get_or_none(c.FINETUNEJOB, namespace, job_name)
        job = FineTuneJob.model_validate(body) if body else None
    return evaluation, job


async def _apply(desired: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply of a serving object (field manager `kubetune`); the object as it is now.

    Applied without force first: the API server refuses it (409) only when another manager set one of our
    fields differently. Then the object is read: one that belongs to this ModelDeployment is taken back
    (force: `kubectl edit`, or objects an older operator wrote with merge patches); one that does not is
    left alone, and the ModelDeployment fails with what to do."""
    meta = desired["metadata"]
    try:
        return await k8s.apply(desired)
    except k8s.Conflict:
        existing = await k8s.get(desired["kind"], meta["namespace"], meta["name"])
    owner = meta["ownerReferences"][0]
    if not any(ref.get("uid") == owner["uid"] for ref in existing["metadata"].get("ownerReferences") or []):
        raise OwnershipConflict(
            f"{desired['kind']} {meta['name']!r} exists and does not belong to "
            f"{owner['kind']} {owner['name']!r}; delete or rename it"
        )
    return await k8s.apply(desired, force=True)


async def _apply_workload(
    md: ModelDeployment, plan: serving.ServingPlan, job: FineTuneJob | None, cfg: config.OperatorConfig
) -> dict[str, Any]:
    """ConfigMap, Deployment, Service (the autoscaler and the rest: controllers.serving_extras); the Deployment.
    Server-side apply sets what the builders return and removes what an earlier apply set and they no longer
    return (an init container, a node selector, the replica count once an HPA owns it)."""
    deployment = serving.build_deployment(md, plan, job, cfg.pods, cfg.serving)  # SpecError: what vLLM can't read
    await _apply(serving.build_config_map(md, plan))
    apps = await _apply(deployment)
    await _apply(serving.build_service(md))
    return apps


async def reconcile(state: common.OperatorState, namespace: str, name: str) -> None:
    """Decide what to serve, apply it, record a revision when it changed, report the rollout."""
    async with state.lock(*_key(namespace, name)):
        body = await k8s.get_or_none(c.MODELDEPLOYMENT, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        md = common.parse(ModelDeployment, body, state)
        evaluation, job = await _sources(md)
        decision = promotion.decide(md, evaluation, job)
        now = now_iso()
        apps = None
        if decision.checkpoint is not None:
            plan = serving.plan(md, decision, job, state.config.serving)
            try:
                extras = await serving_extras.desired(md, state)  # SpecError: autoscaling the cluster can't do
                apps = await _apply_workload(md, plan, job, state.config)
                await serving_extras.reconcile(md, extras, _apply)  # ScaledObject/HPA, NetworkPolicy, PodMonitor
            except (SpecError, OwnershipConflict) as err:
                await _fail(body, md, str(err), now)
                return
        revisions = promotion.next_revisions(md.status, decision, now)
        patch = md_status.compute_status(md, decision, apps, revisions, now)
        if md_status.changed(md, patch):
            await k8s.patch_status(c.MODELDEPLOYMENT, namespace, name, patch)
        await _post_events(body, md, decision, patch)


async def _fail(body: dict[str, Any], md: ModelDeployment, message: str, now: str) -> None:
    patch = md_status.invalid_spec_status(md, message, now)
    await k8s.patch_status(c.MODELDEPLOYMENT, md.metadata.namespace, md.metadata.name, patch)
    if not md.status or md.status.message != message:
        await common.event(body, "Warning", c.Reason.INVALID_SPEC, message)


_TOLD_ONCE = (c.Reason.PIN_NOT_FOUND, c.Reason.NO_PASSING_CHECKPOINT, c.Reason.WAITING_FOR_EVALUATION)


async def _post_events(
    body: dict[str, Any], md: ModelDeployment, decision: promotion.Decision, patch: dict[str, Any]
) -> None:
    """Events: every promotion; warnings and waits once (when the message changes); Ready once per rollout;
    a checkpoint held back by the safety gate once (a Warning, while the status does not say it yet)."""
    old = md.status
    if decision.held_back and (not old or decision.held_back not in (old.message or "")):
        await common.event(body, "Warning", c.Reason.SAFETY_GATE_FAILED, decision.held_back)
    if decision.changes:
        reason = promotion.EVENT_REASONS[decision.kind]
        await common.event(body, "Normal", reason, f"serving {decision.checkpoint}: {decision.message}")
    elif decision.reason in _TOLD_ONCE and (not old or old.message != patch["message"]):
        kind = "Warning" if decision.reason == c.Reason.PIN_NOT_FOUND else "Normal"
        await common.event(body, kind, decision.reason, decision.message)
    if patch["phase"] == c.Phase.READY and (not old or old.phase != c.Phase.READY):
        await common.event(body, "Normal", c.Reason.READY, patch["message"])


# --- Handlers ---


@kopf.on.resume(*MDEP)
@kopf.on.create(*MDEP)
@kopf.on.update(*MDEP)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def modeldeployment_changed(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    with metrics.track("modeldeployment.reconcile"):
        await reconcile(common.state(memo), namespace, name)


@kopf.timer(*MDEP, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, idle=None)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def modeldeployment_resync(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    with metrics.track("modeldeployment.resync"):
        await reconcile(common.state(memo), namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=SERVE_FILTER)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def serving_deployment_changed(
    event: kopf.RawEvent, body: kopf.Body, namespace: str, memo: kopf.Memo, **_: Any
) -> None:
    """The serving Deployment rolled out (or lost replicas): update readyReplicas and phase."""
    owner = common.live_child_owner(event, body, c.MODELDEPLOYMENT)
    if owner:
        with metrics.track("modeldeployment.deployment_event"):
            await reconcile(common.state(memo), namespace, owner)


@kopf.index(*MDEP)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def deployments_by_source(
    spec: kopf.Spec, namespace: str, name: str, **_: Any
) -> dict[tuple[str, str, str], str]:
    """ModelDeployment names by (namespace, kind, name) of the Evaluation that promotes to them and of the
    FineTuneJob they serve, so that events of those find them without a LIST."""
    out = {}
    evaluation = ((spec.get("promotion") or {}).get("evaluation") or {}).get("name")
    if evaluation:
        out[(namespace, c.EVALUATION, evaluation)] = name
    job = ((spec.get("model") or {}).get("fineTuneJob") or {}).get("name")
    if job:
        out[(namespace, c.FINETUNEJOB, job)] = name
    return out


SourceIndex = kopf.Index[tuple[str, str, str], str]


async def _reconcile_referring(memo: kopf.Memo, index: SourceIndex, namespace: str, kind: str, name: str) -> None:
    for deployment in sorted(set(index.get((namespace, kind, name), []))):
        await reconcile(common.state(memo), namespace, deployment)


@kopf.on.event(*EVAL)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def deployments_follow_evaluation(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    deployments_by_source: SourceIndex,
    **_: Any,
) -> None:
    """New results of an Evaluation may promote, roll forward, or leave nothing passing."""
    status = body.get("status") or {}
    signature = (status.get("results"), status.get("passed"), status.get("best"))
    if common.changed_since_last_event(memo, "deployments", event, signature):
        with metrics.track("modeldeployment.evaluation_event"):
            await _reconcile_referring(memo, deployments_by_source, namespace, c.EVALUATION, name)


@kopf.on.event(*FTJ)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def deployments_follow_job(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    deployments_by_source: SourceIndex,
    **_: Any,
) -> None:
    """A FineTuneJob's checkpoints or best changed: deployments of its checkpoints may move."""
    status = body.get("status") or {}
    signature = (
        status.get("phase"),
        status.get("bestCheckpoint"),
        [cp.get("name") for cp in status.get("checkpoints") or []],
    )
    if common.changed_since_last_event(memo, "deployments", event, signature):
        with metrics.track("modeldeployment.job_event"):
            await _reconcile_referring(memo, deployments_by_source, namespace, c.FINETUNEJOB, name)


@kopf.on.event(*MDEP)
async def modeldeployment_gone(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if event.get("type") == "DELETED":
        meta = body.get("metadata") or {}
        common.state(memo).forget(*_key(meta.get("namespace", ""), meta.get("name", "")))
