"""The PVC that keeps a FineTuneJob's checkpoints (unless the job names an existing claim)."""

from __future__ import annotations

from typing import Any

from kubetune import constants as c
from kubetune.api.finetunejob import FineTuneJob
from kubetune.builders import names
from kubetune.builders.meta import child_metadata
from kubetune.builders.pods import PodSettings


def build_pvc(job: FineTuneJob, settings: PodSettings | None = None) -> dict[str, Any] | None:
    """The job's PVC; None when `spec.storage.claimName` names the user's own claim."""
    storage = job.spec.storage
    if storage.claim_name:
        return None
    settings = settings or PodSettings()
    spec: dict[str, Any] = {
        "accessModes": list(storage.access_modes),
        "resources": {"requests": {"storage": str(storage.size)}},
    }
    storage_class = storage.storage_class_name or settings.storage_class_name
    if storage_class:
        spec["storageClassName"] = storage_class
    meta = child_metadata(job, c.ROLE_DATA, name=names.job_claim_name(job))
    # No owner reference: the garbage collector would delete the PVC with the job (before the finalizer can
    # look, under foreground deletion), even while a ModelDeployment serves from it. The job's finalizer
    # decides instead (storage.retentionPolicy, controllers.retention); these annotations say whose it is.
    del meta["ownerReferences"]
    meta["annotations"] = {c.ANNOTATION_CREATED_PVC: "true", c.ANNOTATION_OWNER_UID: job.metadata.uid or ""}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def created_by_operator(pvc: dict[str, Any], job_uid: str | None) -> bool:
    """Whether `pvc` is the one the operator created for the job with `job_uid` (so it may delete it): its
    annotations say so, or (a PVC created before retention policies) its owner reference does."""
    meta = pvc.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    owned = annotations.get(c.ANNOTATION_OWNER_UID) == job_uid or any(
        ref.get("uid") == job_uid for ref in meta.get("ownerReferences") or []
    )
    return bool(job_uid) and owned and annotations.get(c.ANNOTATION_CREATED_PVC) == "true"
