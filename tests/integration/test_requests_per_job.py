"""What a new job costs the API server: the operator's requests, counted by the emulator (benchmarks/operator_scale.py
measures the same at thousands of jobs). Every request is work for a shared API server; one read too many per
job is 5,000 reads when a team applies 5,000 jobs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import GROUP_PATH, NAMESPACE, Cluster, emulated_cluster, example, running_operator, wait_for

JOBS = 4
FTJS = f"{GROUP_PATH}/namespaces/{NAMESPACE}/finetunejobs"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with emulated_cluster(tmp_path) as c:
        yield c


def settled_counts(cluster: Cluster) -> dict[str, int]:
    """The request counts once nothing has changed them for a second (what the last events still cause)."""
    assert cluster.server is not None
    last, since = cluster.server.request_counts(), time.monotonic()
    while time.monotonic() - since < 1.0:
        time.sleep(0.2)
        now = cluster.server.request_counts()
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_a_new_job_reads_each_object_once_and_its_jobs_event_adds_nothing(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cluster.server is not None
    with running_operator(cluster, monkeypatch):
        server = cluster.server
        wait_for(lambda: "watch jobs" in server.request_counts(), what="the operator watching")
        before = settled_counts(cluster)
        for i in range(JOBS):
            labelled = example(f"job-{i}")
            labelled["metadata"]["labels"] = {"team": "search"}  # passed on to the children: no extra read
            cluster.create(FTJS, labelled)  # a POST: `kubectl apply` would add its own reads
        wait_for(lambda: len(cluster.objects("jobs")) == JOBS, what="every job's batch Job")
        wait_for(
            lambda: all((o.get("status") or {}).get("phase") for o in cluster.objects("finetunejobs").values()),
            what="every job's phase",
        )
        after = settled_counts(cluster)

    per_job = {k: (n - before.get(k, 0)) / JOBS for k, n in after.items() if n > before.get(k, 0)}
    per_job.pop("create finetunejobs", None)  # the test's own
    # One read of the job (the status sync, fresh): the watch event of the batch Job it has just created and
    # computed the status from reads nothing more.
    assert per_job.get("get finetunejobs") == 1, per_job
    # One read of its run-config ConfigMap (is it from an earlier spec?) and of its claim (a namesake's kept PVC?);
    # label propagation reads nothing for a job whose children it has yet to create.
    assert per_job.get("get configmaps") == 1, per_job
    assert per_job.get("get persistentvolumeclaims") == 1, per_job
    creates = {k: n for k, n in per_job.items() if k.startswith("create ")}
    assert creates == {
        f"create {plural}": 1
        for plural in (
            "persistentvolumeclaims",
            "configmaps",
            "serviceaccounts",
            "roles",
            "rolebindings",
            "jobs",
            "events",
        )
    }, per_job
    # Besides: one status write, no LIST, no watch: 11 of kubetune's own. Kopf adds two patches of its own (its
    # finalizer; the handled spec), and may add one more on a loaded machine.
    ours = {k: n for k, n in per_job.items() if k != "patch finetunejobs"}
    assert per_job.get("patch finetunejobs/status") == 1 and sum(ours.values()) == 11, per_job
    assert 2 <= per_job.get("patch finetunejobs", 0) <= 3, per_job
    assert {o["status"]["phase"] for o in cluster.objects("finetunejobs").values()} == {"Pending"}
    assert all(
        o["metadata"]["labels"].get("team") == "search"
        for o in cluster.objects("configmaps").values()
        if o["metadata"]["name"].startswith("job-")
    )
