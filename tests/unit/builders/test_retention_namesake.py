"""A kept PVC is never reused by a new FineTuneJob of the same name (issue 11 item 7): the decision, pure.

`<job>-data` of a deleted job stays while a ModelDeployment serves from it (or by Retain). A new job of that
name must not train into it: it would resume from the old checkpoints or overwrite what is served. Its own
claim (same uid) is adopted, as after an operator restart."""

from __future__ import annotations

from typing import Any

from kubetune import constants as c
from kubetune.api import FineTuneJob
from kubetune.builders import retention
from kubetune.builders.storage import build_pvc


def ftj(uid: str) -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "travel", "namespace": "team", "uid": uid, "generation": 1},
            "spec": {
                "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
                "dataset": {"train": {"uri": "pvc://datasets/train.jsonl"}},
            },
        }
    )


def created_for(uid: str) -> dict[str, Any]:
    pvc = build_pvc(ftj(uid))
    assert pvc is not None
    return pvc


def kept_for_deployment(uid: str = "old-uid") -> dict[str, Any]:
    """The PVC as the old job's finalizer left it (builders.retention._kept_patch applied)."""
    pvc = created_for(uid)
    meta = pvc["metadata"]
    meta["labels"][c.LABEL_RETENTION] = "Delete"
    meta["annotations"][c.ANNOTATION_RETAINED_FROM] = "FineTuneJob/travel"
    meta["annotations"][c.ANNOTATION_RETAINED_FOR] = "ModelDeployment/travel"
    return pvc


def test_no_claim_or_the_jobs_own_claim_is_used():
    assert retention.on_job_created(None, "travel", "new-uid") is None
    # Created for this very job (an operator restart re-runs the create): adopted.
    assert retention.on_job_created(created_for("new-uid"), "travel", "new-uid") is None
    # One made before retention policies: owned by the job through an owner reference.
    legacy = {"metadata": {"name": "travel-data", "annotations": {c.ANNOTATION_CREATED_PVC: "true"}}}
    legacy["metadata"]["ownerReferences"] = [{"kind": "FineTuneJob", "uid": "new-uid"}]
    assert retention.on_job_created(legacy, "travel", "new-uid") is None


def test_a_deleted_namesakes_kept_claim_is_refused_with_who_uses_it_and_what_to_do():
    held = retention.on_job_created(kept_for_deployment(), "travel", "new-uid")
    assert held is not None and held.stalled and held.claim == "travel-data"
    assert held.message.startswith(
        "PersistentVolumeClaim/travel-data holds the checkpoints of an earlier FineTuneJob/travel (uid old-uid), "
        "kept while ModelDeployment/travel uses it (the operator deletes it after): this job does not train into it"
    )
    # Not "delete the claim once nothing uses it" while a deployment serves from it: who, and that the operator
    # deletes it after them.
    assert "Delete the claim" not in held.message and "kubectl delete pvc" not in held.message
    remedies = (
        "Wait until ModelDeployment/travel no longer uses it (the operator then deletes it)",
        "rename this job",
        "spec.storage.claimName: travel-data",
    )
    for remedy in remedies:
        assert remedy in held.message
    assert held.message.endswith("the job starts by itself once the claim is gone")
    # Retained (the operator never deletes it): delete it after its users are gone, naming them.
    retained = kept_for_deployment()
    retained["metadata"]["labels"][c.LABEL_RETENTION] = "Retain"
    held = retention.on_job_created(retained, "travel", "new-uid")
    assert held is not None
    assert "Delete the claim after ModelDeployment/travel no longer uses it (kubectl delete pvc travel-data)" in (
        held.message
    )
    # Nothing uses it: delete it if its data is not needed.
    del retained["metadata"]["annotations"][c.ANNOTATION_RETAINED_FOR]
    held = retention.on_job_created(retained, "travel", "new-uid")
    assert held is not None
    assert "Delete the claim if its data is no longer needed (kubectl delete pvc travel-data)" in held.message


def test_a_retained_claim_and_one_never_released_are_refused_too():
    retained = kept_for_deployment()
    retained["metadata"]["labels"][c.LABEL_RETENTION] = "Retain"
    held = retention.on_job_created(retained, "travel", "new-uid")
    assert held is not None and "kept by its storage.retentionPolicy.whenDeleted Retain" in held.message
    # The old job's finalizer never ran (removed by hand): the claim still names the old uid only.
    held = retention.on_job_created(created_for("old-uid"), "travel", "new-uid")
    assert held is not None and held.stalled and "an earlier FineTuneJob/travel (uid old-uid)" in held.message


def test_a_claim_kubetune_did_not_create_is_not_trained_into():
    users = {"metadata": {"name": "travel-data", "labels": {"team": "x"}}}
    held = retention.on_job_created(users, "travel", "new-uid")
    assert held is not None and held.stalled
    assert held.message.startswith(
        "PersistentVolumeClaim/travel-data exists, kubetune did not create it for this job: this job does not"
    )
    assert "spec.storage.claimName: travel-data" in held.message


def test_a_claim_being_deleted_is_waited_for_without_stalling():
    pvc = kept_for_deployment()
    pvc["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    held = retention.on_job_created(pvc, "travel", "new-uid")
    assert held is not None and not held.stalled
    assert "is being deleted: this job waits for it to go" in held.message
