"""Data is never deleted under a user: the PVC of a deleted FineTuneJob stays while anything uses it.

Who uses which claim comes from Kopf indexes over FineTuneJobs, Evaluations and ModelDeployments
(builders.retention.claims_used), kept by the watches, so a deletion needs no LIST. The FineTuneJob's
finalizer calls `release_job_claim`; a kept PVC is looked at again when a user of its namespace is deleted,
when a FineTuneJob names it in spec.storage.claimName (it becomes that user's: adopted), and when the operator
starts (the safety net: the operator may have been down at that moment). Every step reads the PVC fresh and is
idempotent, so a restart half-way repeats it safely.

In a namespace being deleted the namespace controller may delete the chart's Role there before our
finalizer runs: the release then tolerates a refused (403) or missing (404) claim, since the namespace
controller deletes the claims too and nothing is left to protect; anywhere else the error stands and Kopf
retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kubetune import constants as c
from kubetune import k8s, metrics
from kubetune.builders import names, retention
from kubetune.builders.storage import created_by_operator

FTJ = (c.GROUP, c.VERSION, c.PLURALS[c.FINETUNEJOB])
EVAL = (c.GROUP, c.VERSION, c.PLURALS[c.EVALUATION])
MDEP = (c.GROUP, c.VERSION, c.PLURALS[c.MODELDEPLOYMENT])
PVCS = ("", "v1", "persistentvolumeclaims")
KEPT = {c.LABEL_RETENTION: kopf.PRESENT}

ClaimIndex = kopf.Index[tuple[str, str], str]
# The kwargs under which Kopf hands the three indexes below to every handler.
USER_INDEXES = ("claim_users_of_jobs", "claim_users_of_evaluations", "claim_users_of_deployments")
ADOPTERS_INDEX = "claim_adopters"


def _uses(kind: str, body: kopf.Body, namespace: str, name: str) -> dict[tuple[str, str], str]:
    user = retention.user_name(kind, name)
    claims = retention.claims_used(body)
    if kind == c.FINETUNEJOB and (body.get("metadata") or {}).get("deletionTimestamp"):
        # A job being deleted no longer uses its own claim: its finalizer is releasing it.
        claims.discard(names.child_name(name, c.ROLE_DATA))
    return {(namespace, claim): user for claim in claims}


@kopf.index(*FTJ)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def claim_users_of_jobs(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], str]:
    """`FineTuneJob/<name>` by (namespace, claim) of every claim a FineTuneJob reads or writes."""
    return _uses(c.FINETUNEJOB, body, namespace, name)


@kopf.index(*EVAL)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def claim_users_of_evaluations(
    body: kopf.Body, namespace: str, name: str, **_: Any
) -> dict[tuple[str, str], str]:
    return _uses(c.EVALUATION, body, namespace, name)


@kopf.index(*MDEP)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def claim_users_of_deployments(
    body: kopf.Body, namespace: str, name: str, **_: Any
) -> dict[tuple[str, str], str]:
    return _uses(c.MODELDEPLOYMENT, body, namespace, name)


@kopf.index(*FTJ)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def claim_adopters(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], str]:
    """`FineTuneJob/<name>` by (namespace, claim) of the claim a FineTuneJob names in spec.storage.claimName."""
    claim = retention.claim_named(body)
    return {(namespace, claim): retention.user_name(c.FINETUNEJOB, name)} if claim else {}


@kopf.index(*PVCS, labels=KEPT)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def kept_claims(namespace: str, name: str, **_: Any) -> dict[str, str]:
    """Kept PVCs (either policy), by namespace: what a user's deletion or an adoption may change."""
    return {namespace: name}


def users(indexes: Mapping[str, Any], namespace: str, claim: str, *, exclude: str | None = None) -> list[str]:
    """Who uses `claim` (`Kind/name`), from the indexes a handler was given as kwargs."""
    found: list[str] = []
    for index_name in USER_INDEXES:
        index: ClaimIndex | None = indexes.get(index_name)
        found += list(index.get((namespace, claim), [])) if index is not None else []
    return retention.users_of(found, exclude=exclude)


def adopters(indexes: Mapping[str, Any], namespace: str, claim: str, *, exclude: str | None = None) -> list[str]:
    """The FineTuneJobs that name `claim` in spec.storage.claimName (`FineTuneJob/name`)."""
    index: ClaimIndex | None = indexes.get(ADOPTERS_INDEX)
    found = list(index.get((namespace, claim), [])) if index is not None else []
    return retention.users_of(found, exclude=exclude)


async def _namespace_terminating(namespace: str) -> bool:
    """Whether `namespace` is being deleted (or already gone). False when the operator may not read it."""
    try:
        ns = await k8s.get_or_none("Namespace", None, namespace)
    except k8s.ApiError:
        return False
    return ns is None or bool(ns["metadata"].get("deletionTimestamp"))


async def release_job_claim(job_body: Mapping[str, Any], indexes: Mapping[str, Any], logger: kopf.Logger | Any) -> None:
    """The FineTuneJob `job_body` is being deleted: delete its created PVC, or keep it (and say why)."""
    meta, spec = job_body.get("metadata") or {}, job_body.get("spec") or {}
    storage = spec.get("storage") or {}
    if storage.get("claimName"):
        return  # the user's own claim: never the operator's to delete
    namespace, name, uid = meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")
    claim = names.child_name(name, c.ROLE_DATA)
    try:
        pvc = await k8s.get_or_none("PersistentVolumeClaim", namespace, claim)
        if pvc is None or not created_by_operator(pvc, uid):
            return
        policy = (storage.get("retentionPolicy") or {}).get("whenDeleted") or "Delete"
        me = retention.user_name(c.FINETUNEJOB, name)
        who = users(indexes, namespace, claim, exclude=me)
        verdict = retention.on_job_deleted(pvc, name, uid, policy, who, adopters(indexes, namespace, claim, exclude=me))
        await _carry_out(pvc, verdict, logger, also_tell=job_body)
    except k8s.ApiError as err:
        if err.status not in (403, 404) or not await _namespace_terminating(namespace):
            raise
        logger.info(
            f"namespace {namespace} is being deleted: PersistentVolumeClaim/{claim} goes with it ({err.status})"
        )


async def claim_held(job_body: Mapping[str, Any]) -> retention.ClaimHeld | None:
    """Why the FineTuneJob `job_body` may not use its `<job>-data` claim yet (a deleted namesake's kept PVC,
    one kubetune did not make for it); None when it may (absent, or its own). Reads the PVC fresh."""
    meta, spec = job_body.get("metadata") or {}, job_body.get("spec") or {}
    if (spec.get("storage") or {}).get("claimName"):
        return None  # named on purpose: the user's choice
    name = meta.get("name", "")
    pvc = await k8s.get_or_none("PersistentVolumeClaim", meta.get("namespace", ""), names.child_name(name, c.ROLE_DATA))
    return retention.on_job_created(pvc, name, meta.get("uid", ""))


async def _carry_out(
    pvc: Mapping[str, Any], verdict: retention.Verdict, logger: kopf.Logger | Any, also_tell: Mapping[str, Any] | None
) -> None:
    namespace, claim = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
    if verdict.action == "delete":
        await k8s.delete("PersistentVolumeClaim", namespace, claim)
    elif verdict.patch is not None:
        await k8s.patch_merge("PersistentVolumeClaim", namespace, claim, verdict.patch)
    logger.info(verdict.message)
    subject = {**pvc, "apiVersion": "v1", "kind": "PersistentVolumeClaim"}
    await k8s.post_event(subject, "Normal", verdict.reason, verdict.message)
    if also_tell is not None:
        await k8s.post_event(also_tell, "Normal", verdict.reason, verdict.message)


async def _owner_exists(pvc: Mapping[str, Any]) -> bool:
    """Whether the FineTuneJob a kept PVC was made for (its owner uid) still exists."""
    annotations = pvc["metadata"].get("annotations") or {}
    origin = annotations.get(c.ANNOTATION_RETAINED_FROM, "")
    if not origin.startswith(f"{c.FINETUNEJOB}/"):
        return False
    job = await k8s.get_or_none(c.FINETUNEJOB, pvc["metadata"]["namespace"], origin.split("/", 1)[1])
    return job is not None and job["metadata"].get("uid") == annotations.get(c.ANNOTATION_OWNER_UID)


async def sweep_claim(
    namespace: str,
    claim: str,
    indexes: Mapping[str, Any],
    logger: kopf.Logger | Any,
    also_tell: Mapping[str, Any] | None = None,
) -> None:
    """Look at a kept PVC again: adopted when a FineTuneJob names it in storage.claimName, deleted once nothing
    uses it (policy Delete, released by the operator, its job gone), else its users noted."""
    pvc = await k8s.get_or_none("PersistentVolumeClaim", namespace, claim)
    if pvc is None or pvc["metadata"].get("deletionTimestamp"):
        return
    who, adopting = users(indexes, namespace, claim), adopters(indexes, namespace, claim)
    verdict = retention.sweep(pvc, who, adopting)
    if verdict is not None and verdict.action == "delete" and await _owner_exists(pvc):
        verdict = retention.sweep(pvc, who, adopting, owner_exists=True)
    if verdict is not None:
        await _carry_out(pvc, verdict, logger, also_tell=also_tell if adopting else None)


@kopf.on.event(*PVCS, labels=KEPT)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def kept_claim_resync(
    event: kopf.RawEvent, namespace: str, name: str, logger: kopf.Logger, **kwargs: Any
) -> None:
    """A kept PVC as the operator starts (the watch's first listing): its users may have gone while the operator
    was down. Not a Kopf timer: a timer puts Kopf's finalizer on the PVC, which then cannot be deleted once the
    operator is gone, nor its namespace once the namespace's RBAC is (watchNamespaces)."""
    if event.get("type") is not None:
        return  # a change: the users' deletions and the job's finalizer already look at it
    with metrics.track("retention.resync"):
        await sweep_claim(namespace, name, kwargs, logger)


async def _user_gone(event: kopf.RawEvent, namespace: str, logger: kopf.Logger, kwargs: Mapping[str, Any]) -> None:
    """A FineTuneJob, Evaluation or ModelDeployment is gone (Kopf dropped it from the indexes first): the
    kept PVCs of its namespace may have lost their last user."""
    if event.get("type") != "DELETED":
        return
    index: kopf.Index[str, str] | None = kwargs.get("kept_claims")
    for claim in sorted(set(index.get(namespace, []))) if index is not None else []:
        with metrics.track("retention.user_deleted"):
            await sweep_claim(namespace, claim, kwargs, logger)


@kopf.on.event(*FTJ)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def kept_claims_after_job(
    event: kopf.RawEvent, body: kopf.Body, namespace: str, logger: kopf.Logger, **kwargs: Any
) -> None:
    await _user_gone(event, namespace, logger, kwargs)
    await _adopt(event, body, namespace, logger, kwargs)


async def _adopt(
    event: kopf.RawEvent, body: kopf.Body, namespace: str, logger: kopf.Logger, kwargs: Mapping[str, Any]
) -> None:
    """A FineTuneJob names a kept PVC in spec.storage.claimName: the claim becomes the user's (adopted, never
    deleted by the operator), and an Event on both says so. A GET only when the claim is a kept one."""
    claim = retention.claim_named(body)
    index: kopf.Index[str, str] | None = kwargs.get("kept_claims")
    if event.get("type") == "DELETED" or not claim or index is None or claim not in index.get(namespace, []):
        return
    with metrics.track("retention.adopted"):
        await sweep_claim(namespace, claim, kwargs, logger, also_tell=body)


@kopf.on.event(*EVAL)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def kept_claims_after_evaluation(
    event: kopf.RawEvent, namespace: str, logger: kopf.Logger, **kwargs: Any
) -> None:
    await _user_gone(event, namespace, logger, kwargs)


@kopf.on.event(*MDEP)  # pyright: ignore[reportArgumentType]  # namespaced kind: kopf passes namespace as str, never None
async def kept_claims_after_deployment(
    event: kopf.RawEvent, namespace: str, logger: kopf.Logger, **kwargs: Any
) -> None:
    await _user_gone(event, namespace, logger, kwargs)
