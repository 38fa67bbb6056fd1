"""`kubectl label` / `kubectl annotate` on a FineTuneJob reaches the children it made (issue 11 item 6, T2 D4),
through the API server and the real kubectl: a changed label is changed, a removed one removed, a propagated
annotation follows, a label someone put on a child by hand stays; also after the job has succeeded. A Job's
pod template is immutable: it keeps what it was created with."""

from __future__ import annotations

from typing import Any

from harness import NAMESPACE, Cluster, example, wait_for

from kubetune import constants as c

OWNER = f"{c.ANNOTATION_PROPAGATE_PREFIX}owner"
CHILDREN = {
    "persistentvolumeclaims": "travel-data",
    "configmaps": "travel-config",
    "serviceaccounts": "travel-runner",
    "roles": "travel-runner",
    "rolebindings": "travel-runner",
    "jobs": "travel-train",
}


def metadata(cluster: Cluster, plural: str) -> dict[str, Any]:
    return (cluster.objects(plural).get(CHILDREN[plural]) or {}).get("metadata") or {}


def all_carry(cluster: Cluster, labels: dict[str, str | None], owner: str | None) -> bool:
    for plural in CHILDREN:
        meta = metadata(cluster, plural)
        have = meta.get("labels") or {}
        if any(have.get(k) != v for k, v in labels.items()) or (meta.get("annotations") or {}).get(OWNER) != owner:
            return False
    return True


def test_label_and_annotation_changes_reach_every_child_also_after_the_job_succeeded(
    cluster: Cluster, operator
) -> None:
    job = example(resources={"gpus": 0})
    job["metadata"]["labels"] = {"team": "travel", "cost-center": "cc-1"}
    job["metadata"]["annotations"] = {OWNER: "alice@example.com"}
    cluster.apply(job)
    wait_for(
        lambda: all_carry(cluster, {"team": "travel", "cost-center": "cc-1"}, "alice@example.com"), what="children"
    )
    by_hand = {"metadata": {"labels": {"backup": "nightly"}}}  # set on the child by someone else: not the job's
    cluster.http.patch(
        f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/travel-data",
        json=by_hand,
        headers={"Content-Type": "application/merge-patch+json"},
    ).raise_for_status()

    cluster.kubectl("label", "finetunejob", "travel", "cost-center=cc-9999", "team-", "--overwrite")
    cluster.kubectl("annotate", "finetunejob", "travel", f"{OWNER}=carol@example.com", "--overwrite")
    wanted = {"team": None, "cost-center": "cc-9999"}
    wait_for(lambda: all_carry(cluster, wanted, "carol@example.com"), timeout=30, what="the new labels on every child")
    assert metadata(cluster, "persistentvolumeclaims")["labels"]["backup"] == "nightly"
    template = cluster.objects("jobs")["travel-train"]["spec"]["template"]["metadata"]["labels"]
    assert template["team"] == "travel" and template["cost-center"] == "cc-1"  # immutable: as created

    cluster.start_job("travel-train")
    cluster.finish_job("travel-train")
    wait_for(lambda: ((cluster.ftj("travel") or {}).get("status") or {}).get("phase") == "Succeeded", what="Succeeded")
    cluster.kubectl("annotate", "finetunejob", "travel", f"{OWNER}-")
    cluster.kubectl("label", "finetunejob", "travel", "cost-center=cc-42", "--overwrite")
    wait_for(lambda: all_carry(cluster, {"cost-center": "cc-42"}, None), timeout=30, what="a finished job's children")
    assert metadata(cluster, "persistentvolumeclaims")["labels"]["backup"] == "nightly"
