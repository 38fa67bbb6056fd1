"""Multi-node FineTuneJobs on JobSet, where the API server serves JobSets: the operator discovers the CRD at
start and builds a JobSet instead of the Indexed Job + headless Service, and reads its status.

The JobSet CRD is tests/fixtures/crds/jobset.x-k8s.io_jobsets.yaml (a structural subset of upstream's: see
its header). On the real kube-apiserver it is installed for the test and removed after it, so the other
tests keep seeing a cluster without JobSet (their multi-node jobs stay Indexed Jobs). Nothing plays the
JobSet controller: the test writes the JobSet's status as it would.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import NAMESPACE, ROOT, Cluster, InProcessOperator, example, now, operator_with_crd, wait_for

CRD = ROOT / "tests" / "fixtures" / "crds" / "jobset.x-k8s.io_jobsets.yaml"
JOBSETS = f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NAMESPACE}/jobsets"


@pytest.fixture
def jobset_operator(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessOperator]:
    """The JobSet CRD installed, then the operator started (it discovers JobSet at start)."""
    with operator_with_crd(cluster, monkeypatch, CRD, "jobsets.jobset.x-k8s.io", JOBSETS) as op:
        yield op


def test_multi_node_job_runs_as_a_jobset_and_follows_its_status(cluster: Cluster, jobset_operator) -> None:
    job = example(
        "multi", queueName="team-a", resources={"nodes": 2, "gpus": 4}, storage={"accessModes": ["ReadWriteMany"]}
    )
    cluster.apply(job)
    ftj = wait_for(lambda: (cluster.ftj("multi") or {}).get("metadata", {}).get("uid") and cluster.ftj("multi"), 10)
    uid = ftj["metadata"]["uid"]
    js = wait_for(lambda: (cluster.get(JOBSETS) or {}).get("items"), 20, "the JobSet")[0]
    name = js["metadata"]["name"]
    assert [r["uid"] for r in js["metadata"]["ownerReferences"]] == [uid]
    assert js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert js["spec"]["suspend"] is True
    assert js["spec"]["failurePolicy"]["maxRestarts"] == 3
    assert js["spec"]["failurePolicy"]["restartStrategy"] == "Recreate"
    assert js["spec"]["network"]["enableDNSHostnames"] is True
    # No batch Job and no headless Service of our own: JobSet makes both.
    assert not [o for o in cluster.objects("jobs").values() if o["metadata"]["name"].startswith("multi")]
    assert not [o for o in cluster.objects("services").values() if o["metadata"]["name"].startswith("multi")]
    wait_for(lambda: (cluster.ftj("multi").get("status") or {}).get("phase") == "Queued", 10, "Queued")

    # Kueue admits it, the JobSet controller runs it, then it completes.
    cluster.http.patch(
        f"{JOBSETS}/{name}", json={"spec": {"suspend": False}}, headers={"Content-Type": "application/merge-patch+json"}
    ).raise_for_status()
    at = now()
    completed = {"type": "Completed", "status": "True", "reason": "AllJobsCompleted", "message": "jobset completed successfully", "lastTransitionTime": at}  # fmt: skip
    cluster.patch_status(f"{JOBSETS}/{name}", {"restarts": 0, "conditions": [completed], "terminalState": "Completed"})
    ftj = wait_for(
        lambda: (cluster.ftj("multi").get("status") or {}).get("phase") == "Succeeded" and cluster.ftj("multi"),
        15,
        "Succeeded",
    )
    assert ftj["status"]["completionTime"] == at

    # Deleting the FineTuneJob takes the JobSet with it (owner reference).
    cluster.kubectl("delete", "finetunejob", "multi", "--wait=false")
    wait_for(lambda: not (cluster.get(JOBSETS) or {}).get("items"), 30, "the JobSet to be deleted")
