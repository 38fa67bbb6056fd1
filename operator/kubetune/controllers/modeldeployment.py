"""ModelDeployment handlers: decide which checkpoint to serve, apply Deployment + Service (+ HPA), report.

With `spec.promotion.canary` a roll-forward goes to a canary Deployment first (kubetune.builders.canary), split
by an HTTPRoute (spec.gateway, where the cluster serves HTTPRoute) or by replicas; with `spec.adapters` each
adapter is promoted on its own into the adapter-set ConfigMap (kubetune.builders.adapters).

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
from kubetune.api.modeldeployment import DeployModelRef, ModelDeployment, PromotionSpec
from kubetune.builders import adapters, canary, names, promotion, serving
from kubetune.builders.meta import propagate
from kubetune.controllers import common, config, serving_extras
from kubetune.errors import OwnershipConflict, SpecError
from kubetune.status import modeldeployment as md_status

MDEP = (c.GROUP, c.VERSION, c.PLURALS[c.MODELDEPLOYMENT])
EVAL = (c.GROUP, c.VERSION, c.PLURALS[c.EVALUATION])
FTJ = (c.GROUP, c.VERSION, c.PLURALS[c.FINETUNEJOB])
SERVE_FILTER = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_DEPLOYMENT: kopf.PRESENT}  # stable and canary
RESYNC_SECONDS = config.timer_interval()  # the safety net behind the watch events (KUBETUNE_RESYNC_SECONDS)


def _key(namespace: str, name: str) -> tuple[str, str, str]:
    return (c.MODELDEPLOYMENT, namespace, name)


async def _sources(md: ModelDeployment) -> tuple[Evaluation | None, FineTuneJob | None]:
    return await _sources_of(md.metadata.namespace or "default", md.spec.model, md.spec.promotion)


async def _adapter_sources(md: ModelDeployment) -> list[adapters.AdapterSource]:
    out = []
    for index, adapter in enumerate(md.spec.adapters):
        model = DeployModelRef(fine_tune_job=adapter.fine_tune_job, uri=adapter.uri)
        namespace = md.metadata.namespace or "default"
        evaluation, job = await _sources_of(namespace, model, adapter.promotion)
        source = adapters.AdapterSource(index, adapter, job, evaluation)
        missing = [
            x for x in adapters.claims(source) if await k8s.get_or_none("PersistentVolumeClaim", namespace, x) is None
        ]
        out.append(adapters.AdapterSource(index, adapter, job, evaluation, tuple(missing)))
    return out


async def _sources_of(
    namespace: str, model: DeployModelRef, promotion_spec: PromotionSpec
) -> tuple[Evaluation | None, FineTuneJob | None]:
    evaluation, job = None, None
    if promotion_spec.evaluation is not None:
        body = await k8s.get_or_none(c.EVALUATION, namespace, promotion_spec.evaluation.name)
        evaluation = Evaluation.model_validate(body) if body else None
    job_name = model.fine_tune_job.name if model.fine_tune_job else None
    if job_name is None and evaluation is not None and evaluation.spec.model.fine_tune_job is not None:
        job_name = evaluation.spec.model.fine_tune_job.name
    if job_name:
        body = await k8s.get_or_none(c.FINETUNEJOB, namespace, job_name)
        job = FineTuneJob.model_validate(body) if body else None
    return evaluation, job


class ApplyRefused(Exception):
    """The API server refused a serving object (422 invalid, 500 on a malformed object): the spec builds
    something the cluster does not take, so retrying the same apply cannot help until something changes."""


_REFUSED = (400, 422, 500)


async def _apply(desired: dict[str, Any]) -> dict[str, Any]:
    """`_apply_owned`, with a refusal said as ApplyRefused: which object, the server's status and message."""
    try:
        return await _apply_owned(desired)
    except k8s.ApiError as err:
        if err.status not in _REFUSED or isinstance(err, k8s.Conflict | k8s.NotFound):
            raise
        meta = desired["metadata"]
        raise ApplyRefused(
            f"the API server refused {desired['kind']} {meta['name']!r} ({err.status} {err.reason}): {err.message}"
        ) from err


async def _apply_owned(desired: dict[str, Any]) -> dict[str, Any]:
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


def _applier(state: common.OperatorState, md: ModelDeployment) -> serving_extras.Apply:
    """`_apply` of the ModelDeployment's children with the labels and annotations it passes on (team, cost
    allocation, Kueue's priority class; builders.meta.Propagation), on the objects and their pod templates."""

    async def apply(desired: dict[str, Any]) -> dict[str, Any]:
        (governed,) = propagate([desired], md, state.config.propagation)
        assert governed is not None
        return await _apply(governed)

    return apply


async def _routed(state: common.OperatorState, md: ModelDeployment) -> bool:
    """Whether traffic goes through an HTTPRoute: spec.gateway is set and the cluster serves HTTPRoute (asked once)."""
    if md.spec.gateway is None:
        return False
    if state.httproute is None:
        state.httproute = await k8s.served("HTTPRoute")
    return state.httproute


async def _apply_workload(
    state: common.OperatorState,
    md: ModelDeployment,
    plan: serving.ServingPlan,
    job: FineTuneJob | None,
    split: canary.Split,
    pool: adapters.AdapterPool | None,
    adapter_set: dict[str, str],
    routed: bool,
) -> tuple[dict[str, Any], str | None]:
    """ConfigMaps, Deployments (stable, canary), Services, HTTPRoute, each with the labels the ModelDeployment passes
    on; the stable Deployment as it is now, and why the HTTPRoute's weights are not in effect yet (None: they are,
    or there is no HTTPRoute). `routed`: the split goes through an HTTPRoute (`_routed`).
    Server-side apply sets what the builders return and removes what an earlier apply set and they no longer
    return (an init container, a node selector, the replica count once an HPA owns it)."""
    cfg, pending = state.config, None
    apply = _applier(state, md)
    stable_replicas = None
    if split.canary is not None and not routed and md.spec.autoscaling is None:
        stable_replicas, _ = canary.replica_split(md.spec.replicas, split.canary.weight)
    deployment = serving.build_deployment(  # SpecError: what vLLM can't read
        md, plan, job, cfg.pods, cfg.serving, replicas=stable_replicas, pool=pool
    )
    canary_objects = None
    if split.canary is not None:
        canary_plan = serving.plan(md, split.canary.decision(), job, cfg.serving)
        _, canary_replicas = canary.replica_split(canary.total_replicas(md), split.canary.weight)
        canary_objects = (
            serving.build_config_map(md, canary_plan, "canary"),
            serving.build_deployment(
                md, canary_plan, job, cfg.pods, cfg.serving, track="canary", replicas=canary_replicas, pool=pool
            ),
        )
    if pool is not None:
        await apply(adapters.build_config_map(md, adapter_set))
    await apply(serving.build_config_map(md, plan))
    apps = await apply(deployment)
    await apply(serving.build_service(md, both_tracks=split.canary is not None and not routed))
    if canary_objects is not None:
        for obj in canary_objects:
            await apply(obj)
        if routed:
            await apply(serving.build_service(md, "canary"))
    if canary_objects is None or not routed:
        await _delete_canary(md, keep_workload=canary_objects is not None)
    if routed:
        route = canary.build_httproute(
            md, serving.serving_name(md), serving.serving_name(md), serving.workload_name(md, "canary"), split.canary
        )
        pending = canary.route_pending(await apply(route), route["spec"]["parentRefs"][0])
    elif state.httproute:
        await k8s.delete("HTTPRoute", md.metadata.namespace, serving.serving_name(md))
    return apps, pending


async def _delete_canary(md: ModelDeployment, *, keep_workload: bool) -> None:
    """The canary's Service (split by replicas, or no canary), and without a canary its Deployment and config."""
    namespace, name = md.metadata.namespace, serving.workload_name(md, "canary")
    await k8s.delete("Service", namespace, name)
    if not keep_workload:
        await k8s.delete("Deployment", namespace, name)
        await k8s.delete("ConfigMap", namespace, serving.config_map_name(md, "canary"))


PodIndex = kopf.Index[tuple[str, str], dict[str, Any]]
RouteIndex = kopf.Index[canary.RouteKey, canary.RouteHolder]
ROUTE_CONFLICT = "RouteConflict"


async def reconcile(
    state: common.OperatorState,
    namespace: str,
    name: str,
    pods: PodIndex | None = None,
    routes: RouteIndex | None = None,
) -> None:
    """Decide what to serve, apply it, record a revision when it changed, report the rollout (with `pods`, the
    serving pods' index: why they do not start; with `routes`, who else routes the same Gateway match)."""
    async with state.lock(*_key(namespace, name)):
        body = await k8s.get_or_none(c.MODELDEPLOYMENT, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            md = common.parse(ModelDeployment, body, state)
        except kopf.PermanentError as err:
            await _refused(body, str(err))
            raise
        conflict = _route_conflict(routes, body)
        if conflict is not None:  # the older keeps serving; this one is not applied until the match differs
            await _fail(body, md, conflict, now_iso(), ROUTE_CONFLICT)
            return
        evaluation, job = await _sources(md)
        routed = await _routed(state, md)
        split = canary.split(md, promotion.decide(md, evaluation, job), evaluation, routed=routed)
        decision = split.stable
        now = now_iso()
        outcomes: list[adapters.AdapterOutcome] = []
        apps, route_pending = None, None
        if decision.checkpoint is not None:
            try:
                plan = serving.plan(md, decision, job, state.config.serving)
                pool = None
                if md.spec.adapters:
                    sources = await _adapter_sources(md)
                    outcomes = adapters.decide_adapters(md, sources, plan.served_uri, now)
                    pool = adapters.adapter_pool(md, sources, outcomes)
                extras = await serving_extras.desired(md, state)  # SpecError: autoscaling the cluster can't do
                apps, route_pending = await _apply_workload(
                    state, md, plan, job, split, pool, adapters.adapter_set(outcomes), routed
                )
                await serving_extras.reconcile(
                    md, extras, _applier(state, md)
                )  # ScaledObject/HPA, NetworkPolicy, PodMonitor
            except (SpecError, OwnershipConflict) as err:
                await _fail(body, md, str(err), now)
                return
            except ApplyRefused as err:
                await _fail(body, md, str(err), now, APPLY_FAILED)
                return
        revisions = promotion.next_revisions(md.status, decision, now)
        patch = md_status.compute_status(md, decision, apps, revisions, now, _pods_of(pods, md))
        patch = md_status.with_serving_extras(md, patch, split, outcomes, revisions, routed, route_pending)
        if md_status.changed(md, patch):
            await k8s.patch_status(c.MODELDEPLOYMENT, namespace, name, patch)
        await _post_events(body, md, decision, patch)
        await _post_serving_events(body, md, split, outcomes)


def _route_conflict(routes: RouteIndex | None, body: dict[str, Any]) -> str | None:
    """An older ModelDeployment with the same Gateway parent and match (from the index), said as a message."""
    gateway = (body.get("spec") or {}).get("gateway")
    if routes is None or not gateway:
        return None
    meta = body["metadata"]
    key = canary.route_key(meta["namespace"], gateway)
    me = (meta.get("creationTimestamp") or "", meta["namespace"], meta["name"])
    return canary.route_conflict(me, list(routes.get(key, [])))


def _pods_of(pods: PodIndex | None, md: ModelDeployment) -> list[dict[str, Any]]:
    """The ModelDeployment's serving pods (stable and canary) as the index keeps them; none without the index."""
    if pods is None:
        return []
    key = (md.metadata.namespace or "", md.metadata.name[: names.MAX_NAME].rstrip("-."))
    return [p for p in pods.get(key, []) if (p.get("metadata") or {}).get("uid")]


async def _refused(body: dict[str, Any], message: str) -> None:
    """Admission refused the spec (e.g. spec.extraArgs setting an operator flag): Failed, saying why, once. A body
    the schema cannot read at all keeps its status (the PermanentError is logged and posted by Kopf)."""
    try:
        md = ModelDeployment.model_validate(body)
    except ValueError:
        return
    if not md.status or md.status.message != message:
        await _fail(body, md, message, now_iso())


APPLY_FAILED = "ApplyFailed"


async def _fail(
    body: dict[str, Any], md: ModelDeployment, message: str, now: str, reason: str = c.Reason.INVALID_SPEC
) -> None:
    patch = md_status.invalid_spec_status(md, message, now, reason)
    await k8s.patch_status(c.MODELDEPLOYMENT, md.metadata.namespace, md.metadata.name, patch)
    if not md.status or md.status.message != message:
        await common.event(body, "Warning", reason, message)


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
    if patch["phase"] == c.Phase.FAILED and not decision.stalled and (not old or old.message != patch["message"]):
        reason = next((x["reason"] for x in patch["conditions"] if x["type"] == "Ready"), c.Reason.DEPLOYING)
        await common.event(body, "Warning", reason, patch["message"])  # the rollout stalled (a missing Secret...)
    if patch["phase"] == c.Phase.READY and (not old or old.phase != c.Phase.READY):
        await common.event(body, "Normal", c.Reason.READY, patch["message"])


async def _post_serving_events(
    body: dict[str, Any], md: ModelDeployment, split: canary.Split, outcomes: list[adapters.AdapterOutcome]
) -> None:
    """A canary started or rolled back; each adapter's promotion; an incompatible adapter once (a Warning)."""
    if split.event is not None:
        await common.event(body, *split.event)
    before = {a.name: a for a in (md.status.adapters if md.status else [])}
    for outcome in outcomes:
        old = before.get(outcome.name)
        if outcome.error is not None:
            if old is None or old.message != outcome.error:
                await common.event(body, "Warning", outcome.reason, outcome.error)
        elif outcome.decision.changes:
            reason = promotion.EVENT_REASONS[outcome.decision.kind]
            message = f"adapter {outcome.name} serves {outcome.decision.checkpoint}: {outcome.decision.message}"
            await common.event(body, "Normal", reason, message)


# --- Handlers ---


@kopf.on.resume(*MDEP)
@kopf.on.create(*MDEP)
@kopf.on.update(*MDEP)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def modeldeployment_changed(
    namespace: str, name: str, memo: kopf.Memo, serving_pods: PodIndex, deployments_by_route: RouteIndex, **_: Any
) -> None:
    with metrics.track("modeldeployment.reconcile"):
        await reconcile(common.state(memo), namespace, name, serving_pods, deployments_by_route)


@kopf.timer(*MDEP, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, idle=None)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def modeldeployment_resync(
    namespace: str, name: str, memo: kopf.Memo, serving_pods: PodIndex, deployments_by_route: RouteIndex, **_: Any
) -> None:
    with metrics.track("modeldeployment.resync"):
        await reconcile(common.state(memo), namespace, name, serving_pods, deployments_by_route)


@kopf.on.event("apps", "v1", "deployments", labels=SERVE_FILTER)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def serving_deployment_changed(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str,
    memo: kopf.Memo,
    serving_pods: PodIndex,
    deployments_by_route: RouteIndex,
    **_: Any,
) -> None:
    """The serving Deployment rolled out (or lost replicas): update readyReplicas and phase."""
    owner = common.live_child_owner(event, body, c.MODELDEPLOYMENT)
    if owner:
        with metrics.track("modeldeployment.deployment_event"):
            await reconcile(common.state(memo), namespace, owner, serving_pods, deployments_by_route)


_POD_KEPT = ("name", "namespace", "uid", "labels")


@kopf.index("", "v1", "pods", labels=SERVE_FILTER)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def serving_pods(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Serving pods (stable and canary) by (namespace, ModelDeployment label): their metadata and status, so that
    a reconcile says why they do not start without a LIST."""
    meta = body.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(c.LABEL_DEPLOYMENT)
    if not owner or meta.get("deletionTimestamp"):
        return {}
    return {
        (namespace, owner): {
            "metadata": {k: meta[k] for k in _POD_KEPT if k in meta},
            "status": dict(body.get("status") or {}),
        }
    }


@kopf.index(*MDEP)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def deployments_by_source(
    spec: kopf.Spec, namespace: str, name: str, **_: Any
) -> dict[tuple[str, str, str], str]:
    """ModelDeployment names by (namespace, kind, name) of the Evaluation that promotes to them and of the
    FineTuneJob they serve, so that events of those find them without a LIST."""
    out = {}
    for source in [spec, *(spec.get("adapters") or [])]:  # the model, and each adapter (its own job, evaluation)
        evaluation = ((source.get("promotion") or {}).get("evaluation") or {}).get("name")
        if evaluation:
            out[(namespace, c.EVALUATION, evaluation)] = name
        job = ((source.get("model") or source).get("fineTuneJob") or {}).get("name")
        if job:
            out[(namespace, c.FINETUNEJOB, job)] = name
    return out


SourceIndex = kopf.Index[tuple[str, str, str], str]


@kopf.index(*MDEP)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def deployments_by_route(
    spec: kopf.Spec, meta: kopf.Meta, namespace: str, name: str, **_: Any
) -> dict[canary.RouteKey, canary.RouteHolder] | None:
    """ModelDeployments with spec.gateway by the match of their HTTPRoute (parent, hostnames, pathPrefix), so that a
    reconcile finds an older one routing the same requests without a LIST."""
    gateway = spec.get("gateway")
    if not gateway:
        return None
    holder = (meta.get("creationTimestamp") or "", namespace, name)
    return {canary.route_key(namespace, dict(gateway)): holder}


async def _reconcile_referring(
    memo: kopf.Memo,
    index: SourceIndex,
    namespace: str,
    kind: str,
    name: str,
    pods: PodIndex | None = None,
    routes: RouteIndex | None = None,
) -> None:
    for deployment in sorted(set(index.get((namespace, kind, name), []))):
        await reconcile(common.state(memo), namespace, deployment, pods, routes)


@kopf.on.event(*EVAL)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def deployments_follow_evaluation(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    deployments_by_source: SourceIndex,
    deployments_by_route: RouteIndex,
    serving_pods: PodIndex,
    **_: Any,
) -> None:
    """New results of an Evaluation may promote, roll forward, or leave nothing passing."""
    status = body.get("status") or {}
    signature = (status.get("results"), status.get("passed"), status.get("best"))
    if common.changed_since_last_event(memo, "deployments", event, signature):
        with metrics.track("modeldeployment.evaluation_event"):
            await _reconcile_referring(
                memo, deployments_by_source, namespace, c.EVALUATION, name, serving_pods, deployments_by_route
            )


@kopf.on.event(*FTJ)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def deployments_follow_job(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    deployments_by_source: SourceIndex,
    deployments_by_route: RouteIndex,
    serving_pods: PodIndex,
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
            await _reconcile_referring(
                memo, deployments_by_source, namespace, c.FINETUNEJOB, name, serving_pods, deployments_by_route
            )


@kopf.on.event(*MDEP)
async def modeldeployment_gone(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if event.get("type") == "DELETED":
        meta = body.get("metadata") or {}
        common.state(memo).forget(*_key(meta.get("namespace", ""), meta.get("name", "")))
