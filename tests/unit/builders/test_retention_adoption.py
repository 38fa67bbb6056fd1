"""What the operator may still delete once it kept a PVC (issue 11 item 7, trial T2): a claim a FineTuneJob adopts
through storage.claimName is the user's for good, and only the very PVC the operator released from a job that is
gone is ever deleted (not a copy, a restore, nor one whose job still exists). Pure decisions."""

from __future__ import annotations

from typing import Any

from kubetune import constants as c
from kubetune.builders import retention

RELEASED_UID = "pvc-uid-1"


def released(**annotations: str) -> dict[str, Any]:
    """travel-data as the finalizer of FineTuneJob travel (uid job-uid) left it: kept, policy Delete."""
    pvc: dict[str, Any] = {
        "metadata": {
            "name": "travel-data",
            "namespace": "team",
            "uid": RELEASED_UID,
            "labels": {c.LABEL_RETENTION: "Delete", c.LABEL_ROLE: c.ROLE_DATA},
            "annotations": {
                c.ANNOTATION_CREATED_PVC: "true",
                c.ANNOTATION_OWNER_UID: "job-uid",
                c.ANNOTATION_RETAINED_FROM: "FineTuneJob/travel",
                c.ANNOTATION_RELEASED_CLAIM_UID: RELEASED_UID,
            },
        }
    }
    pvc["metadata"]["annotations"].update(annotations)
    return pvc


def test_the_release_records_the_claims_own_uid_and_only_that_claim_is_deleted():
    created = {
        "metadata": {
            "name": "travel-data",
            "uid": RELEASED_UID,
            "labels": {c.LABEL_INSTANCE: "travel"},
            "annotations": {c.ANNOTATION_CREATED_PVC: "true", c.ANNOTATION_OWNER_UID: "job-uid"},
        }
    }
    verdict = retention.on_job_deleted(created, "travel", "job-uid", "Delete", ["ModelDeployment/travel"])
    assert verdict.patch is not None
    assert verdict.patch["metadata"]["annotations"][c.ANNOTATION_RELEASED_CLAIM_UID] == RELEASED_UID
    gone = retention.sweep(released(), [])
    assert gone is not None and gone.action == "delete"


def test_a_pvc_copied_into_existence_is_never_deleted_by_the_sweep():
    # T2's scratch-copy: the label and created-pvc annotation copied by hand, no release record.
    scratch = {
        "metadata": {
            "name": "scratch-copy",
            "uid": "u-9",
            "labels": {c.LABEL_RETENTION: "Delete"},
            "annotations": {c.ANNOTATION_CREATED_PVC: "true", c.ANNOTATION_RETAINED_FROM: "FineTuneJob/old"},
        }
    }
    assert retention.sweep(scratch, []) is None
    # A clone or backup restore of a released claim (`kubectl get -o yaml` re-applied): every annotation, another uid.
    copy = released()
    copy["metadata"]["uid"] = "uid-of-the-copy"
    assert retention.sweep(copy, []) is None
    # Renamed copy: the name no longer matches the job the record names.
    renamed = released()
    renamed["metadata"]["name"] = "scratch-copy"
    assert retention.sweep(renamed, []) is None
    # No owner uid: not a claim the operator made for a job.
    orphan = released()
    del orphan["metadata"]["annotations"][c.ANNOTATION_OWNER_UID]
    assert retention.sweep(orphan, []) is None


def test_a_claim_whose_job_still_exists_is_not_deleted():
    assert retention.sweep(released(), [], owner_exists=True) is None


def test_a_kept_claim_named_in_storage_claim_name_becomes_the_users():
    verdict = retention.sweep(released(**{c.ANNOTATION_RETAINED_FOR: "Evaluation/adopt-eval"}), [], ["FineTuneJob/b"])
    assert verdict is not None and verdict.action == "keep" and verdict.reason == c.Reason.PVC_ADOPTED
    assert verdict.patch == {
        "metadata": {
            "labels": {c.LABEL_RETENTION: None, c.LABEL_INSTANCE: None},
            "annotations": {
                c.ANNOTATION_ADOPTED_BY: "FineTuneJob/b",
                c.ANNOTATION_RETAINED_FOR: None,
                c.ANNOTATION_RELEASED_CLAIM_UID: None,
            },
        }
    }
    assert verdict.message == (
        "PersistentVolumeClaim/travel-data of FineTuneJob/travel is now the user's: FineTuneJob/b names it in "
        "spec.storage.claimName, so the operator never deletes it (`kubectl delete pvc travel-data` when it is no "
        "longer needed)"
    )
    # Retain too: the message says whose it is now.
    retained = released()
    retained["metadata"]["labels"][c.LABEL_RETENTION] = "Retain"
    adopted = retention.sweep(retained, [], ["FineTuneJob/b"])
    assert adopted is not None and adopted.reason == c.Reason.PVC_ADOPTED


def test_an_adopted_claim_is_never_deleted_even_with_a_stale_label():
    adopted = released(**{c.ANNOTATION_ADOPTED_BY: "FineTuneJob/b"})  # its label put back by hand, say
    assert retention.sweep(adopted, []) is None


def test_a_claim_adopted_while_its_job_lived_is_the_users_at_the_jobs_deletion():
    created = released()
    del created["metadata"]["labels"][c.LABEL_RETENTION]
    verdict = retention.on_job_deleted(created, "travel", "job-uid", "Delete", ["FineTuneJob/b"], ["FineTuneJob/b"])
    assert verdict.action == "keep" and verdict.reason == c.Reason.PVC_ADOPTED
    assert verdict.patch is not None and verdict.patch["metadata"]["labels"][c.LABEL_RETENTION] is None
    assert "deleted FineTuneJob travel is now the user's: FineTuneJob/b" in verdict.message


def test_retain_keeps_its_users_up_to_date():
    retained = released(**{c.ANNOTATION_RETAINED_FOR: "Evaluation/gone"})
    retained["metadata"]["labels"][c.LABEL_RETENTION] = "Retain"
    refreshed = retention.sweep(retained, ["ModelDeployment/travel"])
    assert refreshed is not None and refreshed.action == "keep"
    assert refreshed.patch == {"metadata": {"annotations": {c.ANNOTATION_RETAINED_FOR: "ModelDeployment/travel"}}}
    unused = retention.sweep(retained, [])
    assert unused is not None and unused.action == "keep"
    assert unused.patch == {"metadata": {"annotations": {c.ANNOTATION_RETAINED_FOR: None}}}
