"""Annotations that fit the API server's 256 KiB alone but not with the copy of spec, labels and annotations Kopf
keeps in kubetune.dev/last-handled-configuration (T2 D6), applied with the real kubectl to the real kube-apiserver
(the emulator does not enforce the size): the FineTuneJob is Failed at once saying the sizes and the limit, a
Warning Event says so, nothing is created, and the operator handles it once, not again every second (Kopf's copy
of a refused object carries digests of its long annotation values, so it fits)."""

from __future__ import annotations

import logging
import time

import pytest
from harness import EVAL_PATH, Cluster, evaluation, example, wait_for

from kubetune import constants as c

BLOB = f"{c.ANNOTATION_PROPAGATE_PREFIX}blob"


@pytest.mark.parametrize("cluster", ["kube-apiserver"], indirect=True)  # the emulator does not enforce the size
def test_annotations_too_large_for_kopfs_copy_fail_the_job_once_with_an_event(
    cluster: Cluster, operator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kopf")
    job = example(resources={"gpus": 0})
    job["metadata"]["annotations"] = {BLOB: "y" * 100_000}  # ~200 KB with kubectl apply's copy: fits alone
    cluster.apply(job)

    def failed() -> dict | None:
        status = (cluster.ftj("travel") or {}).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for(failed, timeout=30, what="Failed") or {}
    stalled = next(x for x in status["conditions"] if x["type"] == "Stalled")
    assert stalled["reason"] == "InvalidSpec"
    for said in ("metadata.annotations", "262,144", "kubetune.dev/last-handled-configuration"):
        assert said in stalled["message"], stalled["message"]
    wait_for(
        lambda: any("262,144" in (e.get("message") or "") for e in cluster.events("travel")), what="the Warning Event"
    )
    stored = wait_for(
        lambda: ((cluster.ftj("travel") or {})["metadata"].get("annotations") or {}).get(
            "kubetune.dev/last-handled-configuration"
        ),
        timeout=15,
        what="Kopf's record that it handled the job",
    )
    assert isinstance(stored, str) and "sha256:" in stored and "yyyy" not in stored
    time.sleep(3)
    assert not [r for r in caplog.records if "Too long" in r.getMessage()], "Kopf's copy was refused by the server"
    handled = [r for r in caplog.records if "failed permanently" in r.getMessage()]
    assert len(handled) == 1, [r.getMessage()[:120] for r in handled]
    assert "travel-train" not in cluster.objects("jobs") and "travel-data" not in cluster.objects(
        "persistentvolumeclaims"
    )


@pytest.mark.parametrize("cluster", ["kube-apiserver"], indirect=True)  # the emulator does not enforce the size
def test_an_evaluation_refused_by_admission_is_failed_with_the_reason_once(cluster: Cluster, operator) -> None:
    """An Evaluation the operator's admission refuses says so in its status (Failed, Stalled InvalidSpec, the
    fields) and one Warning Event, as a FineTuneJob does; before, only Kopf's own Warning told it."""
    ev = evaluation()
    ev["metadata"]["annotations"] = {BLOB: "y" * 100_000}
    cluster.apply(ev)

    def failed() -> dict | None:
        status = (cluster.get(EVAL_PATH) or {}).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for(failed, timeout=30, what="the Evaluation Failed") or {}
    stalled = next(x for x in status["conditions"] if x["type"] == "Stalled")
    assert stalled["reason"] == "InvalidSpec" and "metadata.annotations" in stalled["message"]
    assert {x["type"]: x["status"] for x in status["conditions"]}["Ready"] == "False"
    time.sleep(2)
    ours = [e for e in cluster.events("travel-eval") if e.get("reason") == "InvalidSpec"]
    assert len(ours) == 1, ours
