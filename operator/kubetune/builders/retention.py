"""What becomes of a FineTuneJob's PVC when the job is deleted: pure decisions, no API calls.

The operator creates the PVC without an owner reference (builders.storage), so the garbage collector never
deletes it; the job's finalizer decides by `spec.storage.retentionPolicy.whenDeleted` and by who else still
uses the claim:

- Delete, nothing else uses it: the PVC is deleted with the job.
- Delete, still used (a ModelDeployment serves from it, an Evaluation scores it, a FineTuneJob continues from
  it): kept, labelled `kubetune.dev/retention=Delete`, its users in `kubetune.dev/retained-for`; the operator
  deletes it once the last user is gone (`sweep`).
- Retain: kept, labelled `kubetune.dev/retention=Retain`; the operator never deletes it (its users are still
  noted, for the messages).
- A FineTuneJob names it in `storage.claimName` (at the job's deletion or later): it becomes that user's
  (`kubetune.dev/adopted-by`, no retention label), and the operator never deletes it.

A kept PVC drops `app.kubernetes.io/instance` (Argo CD's tracking label: with no owner reference left, an Argo
CD application of the job's name would take it for its own and prune it). The operator deletes only a PVC it
released itself: the release writes the claim's own uid (`kubetune.dev/released-claim-uid`), which a copy (a
clone, a backup restore, an edited `kubectl get -o yaml`) does not share, and the job it names must be gone.

A kept PVC is never reused by a new FineTuneJob of the same name (`on_job_created`): the claim's
`kubetune.dev/owner-uid` names the deleted job, so the new one waits (Stalled, reason
PersistentVolumeClaimConflict) instead of resuming from, or overwriting, checkpoints a ModelDeployment may
serve; it starts by itself once the claim is gone, and `storage.claimName` reuses it on purpose. Names stay
`<job>-data` (no uid in them), so pvc:// URIs and the claims a ModelDeployment names keep working.

A resource uses a claim when it names it: any `pvc://CLAIM/...` in its spec or status, a `claimName`, or a
FineTuneJob by name (`fineTuneJob: {name}`, `fromJob: {name}`: that job's created claim, `<job>-data`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kubetune import constants as c
from kubetune.builders import names

PVC = "PersistentVolumeClaim"
_JOB_REFERENCES = ("fineTuneJob", "fromJob")  # keys whose {name} names a FineTuneJob


def _claim_of_uri(value: str) -> str | None:
    if not value.startswith("pvc://"):
        return None
    claim = value.removeprefix("pvc://").split("/", 1)[0]
    return claim or None


def _walk(node: Any, found: set[str]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in _JOB_REFERENCES and isinstance(value, Mapping) and isinstance(value.get("name"), str):
                found.add(names.child_name(value["name"], c.ROLE_DATA))
            elif key == "claimName" and isinstance(value, str) and value:
                found.add(value)
            _walk(value, found)
    elif isinstance(node, list):
        for item in node:
            _walk(item, found)
    elif isinstance(node, str):
        claim = _claim_of_uri(node)
        if claim:
            found.add(claim)


def claims_used(body: Mapping[str, Any]) -> set[str]:
    """The claims a FineTuneJob, Evaluation or ModelDeployment (raw body) reads or serves from."""
    found: set[str] = set()
    _walk(body.get("spec") or {}, found)
    _walk(body.get("status") or {}, found)
    return found


def user_name(kind: str, name: str) -> str:
    return f"{kind}/{name}"


def users_of(found: Iterable[str], *, exclude: str | None = None) -> list[str]:
    """Sorted, distinct users (`Kind/name`) of a claim, without `exclude` (the job being deleted)."""
    return sorted({u for u in found if u != exclude})


@dataclass(frozen=True)
class Verdict:
    """What to do with a PVC: `delete` it, or `patch` it (a merge patch; None: leave it), and what to say."""

    action: Literal["delete", "keep"]
    patch: dict[str, Any] | None
    message: str
    reason: str


def _kept_patch(pvc: Mapping[str, Any], job_name: str, job_uid: str, policy: str, users: list[str]) -> dict[str, Any]:
    meta = pvc.get("metadata") or {}
    owners = [ref for ref in meta.get("ownerReferences") or [] if ref.get("uid") != job_uid]
    patch: dict[str, Any] = {
        "metadata": {
            # Without app.kubernetes.io/instance: Argo CD tracks by that label, and a kept PVC has no owner
            # reference, so an Argo CD application of the job's name would take it for its own and prune it.
            "labels": {c.LABEL_RETENTION: policy, c.LABEL_INSTANCE: None},
            "annotations": {
                c.ANNOTATION_RETAINED_FROM: user_name(c.FINETUNEJOB, job_name),
                c.ANNOTATION_RETAINED_FOR: ", ".join(users) if users else None,
                # This very object was released: a copy (kubectl get -o yaml, a backup restore) has another uid.
                c.ANNOTATION_RELEASED_CLAIM_UID: meta.get("uid") or None,
            },
        }
    }
    if len(owners) != len(meta.get("ownerReferences") or []):
        # A PVC made before retention policies is owned by the job: drop that reference, or the garbage
        # collector deletes the PVC as soon as the job is gone.
        patch["metadata"]["ownerReferences"] = owners
    return patch


def adopted_patch(adopter: str) -> dict[str, Any]:
    """A kept PVC that `adopter` names in spec.storage.claimName becomes the user's: no retention label (no
    sweep looks at it again), who adopted it, and no release record."""
    return {
        "metadata": {
            "labels": {c.LABEL_RETENTION: None, c.LABEL_INSTANCE: None},
            "annotations": {
                c.ANNOTATION_ADOPTED_BY: adopter,
                c.ANNOTATION_RETAINED_FOR: None,
                c.ANNOTATION_RELEASED_CLAIM_UID: None,
            },
        }
    }


def _adopted(claim: str, adopter: str, origin: str) -> Verdict:
    return Verdict(
        "keep",
        adopted_patch(adopter),
        f"{PVC}/{claim} of {origin} is now the user's: {adopter} names it in spec.storage.claimName, so the "
        f"operator never deletes it (`kubectl delete pvc {claim}` when it is no longer needed)",
        c.Reason.PVC_ADOPTED,
    )


def on_job_deleted(
    pvc: Mapping[str, Any],
    job_name: str,
    job_uid: str,
    policy: str,
    users: list[str],
    adopters: Iterable[str] = (),
) -> Verdict:
    """The fate of the PVC the operator created for FineTuneJob `job_name`, now deleted; `users`: who else uses
    the claim (`Kind/name`), `adopters`: FineTuneJobs that name it in spec.storage.claimName (it becomes
    theirs), `policy`: its storage.retentionPolicy.whenDeleted."""
    claim = (pvc.get("metadata") or {}).get("name", "")
    adopter = next(iter(sorted(adopters)), None)
    if adopter is not None:
        return _adopted(claim, adopter, f"deleted FineTuneJob {job_name}")
    if policy == "Retain":
        return Verdict(
            "keep",
            _kept_patch(pvc, job_name, job_uid, policy, users),
            f"kept {PVC}/{claim} of deleted FineTuneJob {job_name} (storage.retentionPolicy.whenDeleted Retain); "
            f"the operator never deletes it: `kubectl delete pvc {claim}` when it is no longer needed",
            c.Reason.PVC_RETAINED,
        )
    if users:
        return Verdict(
            "keep",
            _kept_patch(pvc, job_name, job_uid, policy, users),
            f"kept {PVC}/{claim} of deleted FineTuneJob {job_name}: still used by {', '.join(users)}; it is "
            "deleted when nothing uses it any more (storage.retentionPolicy.whenDeleted Delete)",
            c.Reason.PVC_RETAINED,
        )
    return Verdict(
        "delete",
        None,
        f"deleted {PVC}/{claim} with FineTuneJob {job_name}: nothing else uses it "
        "(storage.retentionPolicy.whenDeleted Delete)",
        c.Reason.PVC_DELETED,
    )


def released_by_operator(pvc: Mapping[str, Any]) -> bool:
    """Whether the operator itself released this very PVC from a FineTuneJob it created it for: the release
    record names this object's uid, and it names its job (owner uid) and where it was kept from. A manifest
    copied into existence (a clone, a restore, an edited `kubectl get -o yaml`) has another uid."""
    meta = pvc.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    uid, origin = meta.get("uid"), annotations.get(c.ANNOTATION_RETAINED_FROM, "")
    job = origin.removeprefix(f"{c.FINETUNEJOB}/")
    return bool(
        uid
        and annotations.get(c.ANNOTATION_RELEASED_CLAIM_UID) == uid
        and annotations.get(c.ANNOTATION_CREATED_PVC) == "true"
        and annotations.get(c.ANNOTATION_OWNER_UID)
        and origin.startswith(f"{c.FINETUNEJOB}/")
        and meta.get("name") == names.child_name(job, c.ROLE_DATA)
    )


def sweep(
    pvc: Mapping[str, Any], users: list[str], adopters: Iterable[str] = (), *, owner_exists: bool = False
) -> Verdict | None:
    """A kept PVC looked at again: adopted when a FineTuneJob names it in spec.storage.claimName; deleted once
    its policy is Delete, nothing uses it, the operator released it and its job (`owner_exists`) is gone; its
    users annotation brought up to date while something does. None: nothing to do."""
    meta = pvc.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    policy = labels.get(c.LABEL_RETENTION)
    if policy not in ("Delete", "Retain") or annotations.get(c.ANNOTATION_CREATED_PVC) != "true":
        return None
    claim, origin = meta.get("name", ""), annotations.get(c.ANNOTATION_RETAINED_FROM, "its FineTuneJob")
    adopter = next(iter(sorted(adopters)), None)
    if adopter is not None:
        return _adopted(claim, adopter, origin)
    if annotations.get(c.ANNOTATION_ADOPTED_BY):
        return None
    if policy == "Delete" and not users:
        if not released_by_operator(pvc) or owner_exists:
            return None  # not one the operator released (a copy, a restore), or its job is still there
        return Verdict(
            "delete",
            None,
            f"deleted {PVC}/{claim} kept from {origin}: nothing uses it any more "
            "(storage.retentionPolicy.whenDeleted Delete)",
            c.Reason.PVC_DELETED,
        )
    joined = ", ".join(users) or None
    if annotations.get(c.ANNOTATION_RETAINED_FOR) == joined:
        return None
    patch = {"metadata": {"annotations": {c.ANNOTATION_RETAINED_FOR: joined}}}
    said = f"{PVC}/{claim} is still used by {joined}" if joined else f"{PVC}/{claim} is no longer used by anything"
    return Verdict("keep", patch, said, c.Reason.PVC_RETAINED)


@dataclass(frozen=True)
class ClaimHeld:
    """Why a FineTuneJob may not use the claim `<job>-data` that already exists: `message` says what to do;
    `stalled`: only a person can free it (False while it is being deleted and goes by itself)."""

    claim: str
    message: str
    stalled: bool


def _whose(annotations: Mapping[str, str], job_name: str) -> str:
    """The earlier job a kept PVC was made for, as a message names it."""
    origin = annotations.get(c.ANNOTATION_RETAINED_FROM) or user_name(c.FINETUNEJOB, job_name)
    uid = annotations.get(c.ANNOTATION_OWNER_UID)
    return f"an earlier {origin}" + (f" (uid {uid})" if uid else "")


def _why_kept(labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    policy, users = labels.get(c.LABEL_RETENTION), annotations.get(c.ANNOTATION_RETAINED_FOR)
    if annotations.get(c.ANNOTATION_ADOPTED_BY):
        return f"adopted by {annotations[c.ANNOTATION_ADOPTED_BY]} (spec.storage.claimName): it is the user's now"
    if policy == "Retain":
        return "kept by its storage.retentionPolicy.whenDeleted Retain" + (f", used by {users}" if users else "")
    if users:
        return f"kept while {users} uses it (the operator deletes it after)"
    return "kept after that job was deleted"


def _remedy(claim: str, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    """What a person can do about a claim a new job may not train into, without deleting data under a user."""
    users = annotations.get(c.ANNOTATION_RETAINED_FOR)
    if users and labels.get(c.LABEL_RETENTION) == "Delete" and not annotations.get(c.ANNOTATION_ADOPTED_BY):
        delete = f"Wait until {users} no longer uses it (the operator then deletes it)"
    elif users:
        delete = f"Delete the claim after {users} no longer uses it (kubectl delete pvc {claim})"
    else:
        delete = f"Delete the claim if its data is no longer needed (kubectl delete pvc {claim})"
    return (
        f"{delete}, rename this job, or set spec.storage.claimName: {claim} to train into it on purpose; "
        "the job starts by itself once the claim is gone"
    )


def on_job_created(pvc: Mapping[str, Any] | None, job_name: str, job_uid: str) -> ClaimHeld | None:
    """Whether FineTuneJob `job_name` (uid `job_uid`) may train into the existing claim `pvc` (its `<job>-data`).

    None: there is none (the operator creates it) or the operator made it for this very job (adopted, e.g.
    after an operator restart). Otherwise the claim holds someone else's data: a deleted namesake's kept
    checkpoints (the trainer would resume from them, or overwrite what a ModelDeployment serves) or a claim
    kubetune did not create. The job must not touch it until it is gone or named on purpose (claimName)."""
    if pvc is None:
        return None
    meta = pvc.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    if job_uid and (
        annotations.get(c.ANNOTATION_OWNER_UID) == job_uid
        or any(ref.get("uid") == job_uid for ref in meta.get("ownerReferences") or [])
    ):
        return None
    claim = meta.get("name", "")
    if annotations.get(c.ANNOTATION_CREATED_PVC) == "true":
        holder = f"{PVC}/{claim} holds the checkpoints of {_whose(annotations, job_name)}"
        why = _why_kept(labels, annotations)
    else:
        holder, why = f"{PVC}/{claim} exists", "kubetune did not create it for this job"
    if meta.get("deletionTimestamp"):
        return ClaimHeld(
            claim,
            f"{holder} and is being deleted: this job waits for it to go, then creates its own "
            "(a pod that still mounts the claim keeps it)",
            stalled=False,
        )
    return ClaimHeld(
        claim,
        f"{holder}, {why}: this job does not train into it (it would resume from or overwrite that data). "
        + _remedy(claim, labels, annotations),
        stalled=True,
    )


def claim_named(body: Mapping[str, Any]) -> str | None:
    """The claim a FineTuneJob (raw body) names in spec.storage.claimName: the user's own."""
    return ((body.get("spec") or {}).get("storage") or {}).get("claimName") or None
