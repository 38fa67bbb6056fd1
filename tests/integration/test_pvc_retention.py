"""Data is never deleted under a user (issue 11 item 7), through the API server and the real kubectl: the PVC
of a deleted FineTuneJob stays while a ModelDeployment serves from it (an Event says why), goes with the
ModelDeployment (retentionPolicy Delete), and is always kept with Retain."""

from __future__ import annotations

import time
from typing import Any

from harness import GROUP_PATH, NAMESPACE, Cluster, example, model_deployment, wait_for

from kubetune import constants as c

MDEP_PATH = f"{GROUP_PATH}/namespaces/{NAMESPACE}/modeldeployments/travel"


def created_pvc(cluster: Cluster) -> Any:
    return wait_for(lambda: cluster.objects("persistentvolumeclaims").get("travel-data"), what="the job's PVC")


def pvc_event(cluster: Cluster, reason: str) -> Any:
    return wait_for(
        lambda: next((e for e in cluster.events("travel-data") if e["reason"] == reason), None),
        what=f"a {reason} Event on the PVC",
    )


def test_a_pvc_a_deployment_serves_from_outlives_its_job_until_the_deployment_goes(cluster: Cluster, operator) -> None:
    cluster.apply(example(resources={"gpus": 0}))
    created_pvc(cluster)
    cluster.apply(model_deployment())
    # The operator has seen the ModelDeployment once it wrote a status (so its index knows the user).
    wait_for(lambda: ((cluster.get(MDEP_PATH) or {}).get("status") or {}).get("phase"), what="the deployment's status")

    cluster.kubectl("delete", "finetunejob", "travel", "--timeout=30s")  # an Argo CD prune, say
    assert cluster.ftj("travel") is None
    pvc = cluster.objects("persistentvolumeclaims")["travel-data"]
    meta = pvc["metadata"]
    assert not meta.get("deletionTimestamp") and not meta.get("ownerReferences")
    assert meta["labels"][c.LABEL_RETENTION] == "Delete"
    assert meta["annotations"][c.ANNOTATION_RETAINED_FOR] == "ModelDeployment/travel"
    assert meta["annotations"][c.ANNOTATION_RETAINED_FROM] == "FineTuneJob/travel"
    kept = pvc_event(cluster, c.Reason.PVC_RETAINED)
    assert kept["message"] == (
        "kept PersistentVolumeClaim/travel-data of deleted FineTuneJob travel: still used by ModelDeployment/travel; "
        "it is deleted when nothing uses it any more (storage.retentionPolicy.whenDeleted Delete)"
    )
    # No finalizer of ours on a kept claim (a Kopf timer on it would add one): a user can still delete it, and
    # its namespace, even with the operator gone.
    time.sleep(1)
    kept_pvc = cluster.objects("persistentvolumeclaims")["travel-data"]
    assert c.FINALIZER not in (kept_pvc["metadata"].get("finalizers") or [])

    cluster.kubectl("delete", "modeldeployment", "travel", "--timeout=30s")
    wait_for(lambda: "travel-data" not in cluster.objects("persistentvolumeclaims"), what="the kept PVC deleted")
    gone = pvc_event(cluster, c.Reason.PVC_DELETED)
    assert gone["message"].startswith("deleted PersistentVolumeClaim/travel-data kept from FineTuneJob/travel")


def test_retain_keeps_the_pvc_of_a_deleted_job_that_nothing_uses(cluster: Cluster, operator) -> None:
    cluster.apply(example(resources={"gpus": 0}, storage={"retentionPolicy": {"whenDeleted": "Retain"}}))
    created_pvc(cluster)
    cluster.kubectl("delete", "finetunejob", "travel", "--timeout=30s")
    pvc = cluster.objects("persistentvolumeclaims")["travel-data"]
    assert not pvc["metadata"].get("deletionTimestamp")
    assert pvc["metadata"]["labels"][c.LABEL_RETENTION] == "Retain"
    kept = pvc_event(cluster, c.Reason.PVC_RETAINED)
    assert "storage.retentionPolicy.whenDeleted Retain" in kept["message"]
    assert "kubectl delete pvc travel-data" in kept["message"]


def test_an_unused_pvc_goes_with_its_job(cluster: Cluster, operator) -> None:
    cluster.apply(example(resources={"gpus": 0}))
    created_pvc(cluster)
    cluster.kubectl("delete", "finetunejob", "travel", "--timeout=30s")
    wait_for(lambda: "travel-data" not in cluster.objects("persistentvolumeclaims"), what="the PVC deleted")
