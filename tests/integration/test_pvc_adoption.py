"""A kept PVC reused through storage.claimName is the user's for good (issue 11 item 7, trial T2's D1), through
the API server and the real kubectl: T2's steps, on the emulator and on a real kube-apiserver with the chart's
RBAC. Before, deleting the adopting job deleted the claim with its new checkpoints."""

from __future__ import annotations

import time
from typing import Any

from harness import GROUP_PATH, NAMESPACE, Cluster, example, wait_for

from kubetune import constants as c

EVAL_PATH = f"{GROUP_PATH}/namespaces/{NAMESPACE}/evaluations/adopt-eval"


def evaluation_of_adopt() -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": "adopt-eval", "namespace": NAMESPACE},
        "spec": {
            "model": {"fineTuneJob": {"name": "adopt", "checkpoints": "all"}},
            "dataset": {"uri": "pvc://datasets/travel/test.jsonl"},
            "metrics": ["exact_match"],
            "resources": {"gpus": 0},
        },
    }


def claim(cluster: Cluster) -> Any:
    return cluster.objects("persistentvolumeclaims").get("adopt-data")


def meta_of(cluster: Cluster) -> dict[str, Any]:
    return (claim(cluster) or {}).get("metadata") or {}


def test_a_kept_claim_named_in_claim_name_is_adopted_and_never_deleted(cluster: Cluster, operator) -> None:
    cluster.apply(example("adopt", resources={"gpus": 0}))
    wait_for(lambda: claim(cluster), what="the job's PVC adopt-data")
    cluster.apply(evaluation_of_adopt())
    wait_for(lambda: ((cluster.get(EVAL_PATH) or {}).get("status") or {}).get("phase"), what="the evaluation's status")

    cluster.kubectl("delete", "finetunejob", "adopt", "--timeout=30s")
    kept = meta_of(cluster)
    assert kept["labels"][c.LABEL_RETENTION] == "Delete"
    assert kept["annotations"][c.ANNOTATION_RETAINED_FOR] == "Evaluation/adopt-eval"
    assert c.LABEL_INSTANCE not in kept["labels"]  # Argo CD would take it for an application's own

    # As the Stalled message advises: a new job trains into the kept claim on purpose.
    cluster.apply(example("adopter", resources={"gpus": 0}, storage={"claimName": "adopt-data"}))
    adopted: Any = wait_for(
        lambda: meta_of(cluster) if (meta_of(cluster).get("annotations") or {}).get(c.ANNOTATION_ADOPTED_BY) else None,
        what="the claim adopted",
    )
    assert adopted["annotations"][c.ANNOTATION_ADOPTED_BY] == "FineTuneJob/adopter"
    assert c.LABEL_RETENTION not in (adopted.get("labels") or {})  # no sweep looks at it any more
    said: Any = wait_for(
        lambda: next((e for e in cluster.events("adopter") if e["reason"] == c.Reason.PVC_ADOPTED), None),
        what="an Event on the adopting job",
    )
    assert "is now the user's: FineTuneJob/adopter names it in spec.storage.claimName" in said["message"]
    assert any(e["reason"] == c.Reason.PVC_ADOPTED for e in cluster.events("adopt-data"))

    cluster.kubectl("delete", "evaluation", "adopt-eval", "--timeout=30s")
    cluster.kubectl("delete", "finetunejob", "adopter", "--timeout=30s")
    assert cluster.ftj("adopter") is None
    time.sleep(1.5)  # the sweep runs on the DELETED event at once; give it the time it would take
    still = claim(cluster)
    assert still is not None and not still["metadata"].get("deletionTimestamp")
    assert not any(e["reason"] == c.Reason.PVC_DELETED for e in cluster.events("adopt-data"))
