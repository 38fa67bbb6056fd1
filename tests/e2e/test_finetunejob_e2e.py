"""The integration story on a real cluster: apply, children owned by the job, suspend/resume, delete.

No GPU or trainer image is needed: the tests look at what the operator creates and reports, not at
training (the pod may well stay Pending or fail to pull on a cluster without GPUs).
"""

from __future__ import annotations

import pytest
from e2e_support import Kube, wait_for

pytestmark = pytest.mark.e2e


def job(name: str = "e2e", **spec) -> dict:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "dataset": {"train": {"uri": "pvc://datasets/train.jsonl"}},
            "resources": {"gpus": 0, "cpu": "100m", "memory": "256Mi"},
            "storage": {"size": "1Gi"},
            **spec,
        },
    }


def test_children_status_suspend_and_delete(kube: Kube) -> None:
    kube.apply(job())
    batch = wait_for(lambda: kube.json("job", "e2e-train"), what="the training Job")
    ftj = kube.json("finetunejob", "e2e")
    uid = ftj["metadata"]["uid"]
    assert batch["metadata"]["ownerReferences"][0]["uid"] == uid
    for kind, name in [
        ("pvc", "e2e-data"),
        ("configmap", "e2e-config"),
        ("serviceaccount", "e2e-runner"),
        ("role", "e2e-runner"),
        ("rolebinding", "e2e-runner"),
    ]:
        obj = kube.json(kind, name)
        assert obj and obj["metadata"]["ownerReferences"][0]["uid"] == uid, kind
    pod_security = batch["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    ftj = wait_for(lambda: (f := kube.json("finetunejob", "e2e"))["status"].get("phase") and f, what="a phase")
    assert ftj["status"]["observedGeneration"] == ftj["metadata"]["generation"]
    assert "e2e" in kube.run("-n", kube.namespace, "get", "ftj")

    kube.run("-n", kube.namespace, "patch", "ftj", "e2e", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_for(lambda: kube.json("job", "e2e-train")["spec"]["suspend"] is True, what="the Job suspended")
    wait_for(lambda: kube.json("finetunejob", "e2e")["status"]["phase"] == "Suspended", what="phase Suspended")
    kube.run("-n", kube.namespace, "patch", "ftj", "e2e", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_for(lambda: kube.json("job", "e2e-train")["spec"]["suspend"] is False, what="the Job resumed")

    kube.run("-n", kube.namespace, "delete", "ftj", "e2e", "--timeout=120s")
    wait_for(lambda: kube.json("pvc", "e2e-data") is None, what="the PVC to go")
    wait_for(lambda: kube.json("job", "e2e-train") is None, what="the Job to go (garbage collection)")


def test_kueue_job_is_created_suspended_with_the_queue_label(kube: Kube) -> None:
    kube.apply(job("queued", queueName="e2e-queue"))
    batch = wait_for(lambda: kube.json("job", "queued-train"), what="the training Job")
    assert batch["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "e2e-queue"
    # Without Kueue installed nothing admits it: it stays suspended and the job says Queued.
    wait_for(lambda: kube.json("finetunejob", "queued")["status"].get("phase") in ("Queued", "Pending"), what="Queued")
