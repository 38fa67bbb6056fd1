"""A kept PVC is never reused by a new FineTuneJob of the same name (issue 11 item 7), through the API server and
the real kubectl: job `travel` is deleted while a ModelDeployment serves from `travel-data`; a new `travel` is
applied (an Argo CD re-sync, a copy-pasted manifest). It does not train into the kept claim (it would resume
from, or overwrite, the checkpoints being served): it waits, Stalled, and says why in status and a Warning
Event. Once the ModelDeployment goes, the kept claim goes with it and the new job creates its own."""

from __future__ import annotations

from typing import Any

from harness import GROUP_PATH, NAMESPACE, Cluster, example, model_deployment, wait_for

from kubetune import constants as c

MDEP_PATH = f"{GROUP_PATH}/namespaces/{NAMESPACE}/modeldeployments/travel"
CONFLICT = c.Reason.PVC_CONFLICT


def claim(cluster: Cluster) -> Any:
    return cluster.objects("persistentvolumeclaims").get("travel-data")


def owner_uid(pvc: dict[str, Any] | None) -> str | None:
    return ((pvc or {}).get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_OWNER_UID)


def stalled(cluster: Cluster) -> Any:
    conditions = ((cluster.ftj("travel") or {}).get("status") or {}).get("conditions") or []
    return next((cd for cd in conditions if cd["type"] == "Stalled" and cd["status"] == "True"), None)


def test_a_new_job_of_the_same_name_waits_for_the_kept_pvc_then_makes_its_own(cluster: Cluster, operator) -> None:
    cluster.apply(example(resources={"gpus": 0}))
    old_uid = wait_for(lambda: owner_uid(claim(cluster)), what="the first job's PVC")
    cluster.apply(model_deployment())
    wait_for(lambda: ((cluster.get(MDEP_PATH) or {}).get("status") or {}).get("phase"), what="the deployment's status")
    cluster.kubectl("delete", "finetunejob", "travel", "--timeout=30s")
    wait_for(lambda: (claim(cluster) or {})["metadata"]["labels"][c.LABEL_RETENTION], what="the PVC kept")
    # The first job's Job goes by its owner reference (the garbage collector, a moment later on a real server).
    wait_for(lambda: "travel-train" not in cluster.objects("jobs"), what="the first job's Job collected")

    cluster.apply(example(resources={"gpus": 0}))
    new_uid = wait_for(lambda: (cluster.ftj("travel") or {})["metadata"]["uid"], what="the new job")
    assert new_uid != old_uid
    condition = wait_for(lambda: stalled(cluster), what="the new job Stalled")
    assert condition["reason"] == CONFLICT
    message = condition["message"]
    assert message.startswith(
        "PersistentVolumeClaim/travel-data holds the checkpoints of an earlier FineTuneJob/travel "
        f"(uid {old_uid}), kept while ModelDeployment/travel uses it (the operator deletes it after): "
        "this job does not train into it"
    )
    status: Any = (cluster.ftj("travel") or {}).get("status")
    assert status["phase"] == "Pending" and status["message"] == message
    warning: Any = wait_for(
        lambda: next((e for e in cluster.events("travel") if e["reason"] == CONFLICT), None), what="a Warning Event"
    )
    assert warning["type"] == "Warning" and warning["message"] == message
    assert warning["involvedObject"]["uid"] == new_uid
    # Nothing of the new job was made, and the kept claim is as the first job's finalizer left it.
    assert "travel-train" not in cluster.objects("jobs") and "travel-config" not in cluster.objects("configmaps")
    assert owner_uid(claim(cluster)) == old_uid
    described = cluster.kubectl("describe", "finetunejob", "travel")
    assert CONFLICT in described and "spec.storage.claimName: travel-data" in " ".join(described.split())
    wide = cluster.kubectl("get", "finetunejob", "travel", "-o", "wide")  # why it is Pending, without describe
    assert "MESSAGE" in wide and "PersistentVolumeClaim/travel-data holds the checkpoints" in wide

    cluster.kubectl("delete", "modeldeployment", "travel", "--timeout=30s")
    # The kept claim goes (retentionPolicy Delete, nothing uses it) and the new job creates its own.
    wait_for(lambda: owner_uid(claim(cluster)) == new_uid, timeout=30, what="the new job's own PVC")
    job: Any = wait_for(lambda: cluster.objects("jobs").get("travel-train"), what="the new job's training Job")
    assert [ref["uid"] for ref in job["metadata"]["ownerReferences"]] == [new_uid]
    wait_for(lambda: stalled(cluster) is None, what="Stalled cleared")
    assert [e["reason"] for e in cluster.events("travel-data")].count(c.Reason.PVC_DELETED) == 1
