"""`kubetune.client` against an API server with the real operator: what a notebook does with a FineTuneJob,
its Evaluation and a ModelDeployment, typed end to end. The tests play the Job controller, the trainer,
the evaluator and the kubelet, as the other integration tests do."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import yaml
from harness import (
    CLAIM,
    EVAL_PATH,
    FTJ_PATH,
    GROUP_PATH,
    NAMESPACE,
    Cluster,
    checkpoints,
    evaluation,
    example,
    wait_for,
)

from kubetune.api import Evaluation, FineTuneJob, ModelDeployment
from kubetune.client import AdmissionError, Client, Event, NotFoundError

MDEP_PATH = f"{GROUP_PATH}/namespaces/{NAMESPACE}/modeldeployments/travel"


@pytest.fixture
def kt(cluster: Cluster):
    client = Client.cluster(cluster.admin_kubeconfig, namespace=NAMESPACE)
    try:
        yield client
    finally:
        client.close()


def result(step: int, score: float) -> dict[str, Any]:
    return {
        "model": f"checkpoint-{step}",
        "uri": f"{CLAIM}/checkpoint-{step}",
        "metrics": {"exact_match": score},
        "passed": True,
    }


def model_deployment() -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "travel"},
        "spec": {
            "model": {"fineTuneJob": {"name": "travel"}},
            "promotion": {"evaluation": {"name": "travel-eval"}, "policy": "auto"},
            "resources": {"gpus": 0},
        },
    }


def training_pod(cluster: Cluster) -> str:
    """The kubelet's part: a pod of the training Job, from its template."""
    template = cluster.objects("jobs")["travel-train"]["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "travel-train-x1", **{k: template["metadata"][k] for k in ("labels", "annotations")}},
        "spec": template["spec"],
    }
    cluster.create(f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
    return "travel-train-x1"


def test_apply_wait_events_logs_checkpoints_results_pin_suspend_delete(cluster: Cluster, operator, kt: Client) -> None:
    # A notebook applies YAML text; it comes back typed, as the API server stored it.
    (job,) = kt.apply(yaml.safe_dump(example(resources={"gpus": 0})))
    assert isinstance(job, FineTuneJob) and job.metadata.uid and job.spec.method == "sft"
    wait_for(lambda: cluster.objects("jobs").get("travel-train"), what="the training Job")

    followed: list[Event] = []

    def follow() -> None:
        for event in kt.events(job, follow=True, timeout=60):
            followed.append(event)
            if event.reason == "Succeeded":
                return

    watcher = threading.Thread(target=follow)
    watcher.start()

    # suspend/resume go through spec.suspend, and the operator suspends the batch Job.
    assert kt.suspend("travel").spec.suspend is True
    wait_for(lambda: cluster.objects("jobs")["travel-train"]["spec"]["suspend"] is True, what="the Job suspended")
    assert kt.resume(job).spec.suspend is False
    wait_for(lambda: cluster.objects("jobs")["travel-train"]["spec"]["suspend"] is False, what="the Job resumed")

    cluster.start_job("travel-train")
    pod = training_pod(cluster)
    steps = checkpoints(200, 400)
    steps[0]["metrics"], steps[1]["metrics"] = {"eval_loss": 1.5}, {"eval_loss": 1.2}
    cluster.patch_status(FTJ_PATH, {"checkpoints": steps, "bestCheckpoint": "checkpoint-400"})
    if cluster.server is not None:  # a real kube-apiserver has no kubelet to ask for a log
        cluster.server.write_log(NAMESPACE, pod, "step 200 loss 1.5\nstep 400 loss 1.2\n")
        assert list(kt.logs("travel")) == ["step 200 loss 1.5", "step 400 loss 1.2"]
    cluster.finish_job("travel-train")

    done = kt.wait(job, timeout=30, interval=0.1)
    assert done.status.phase == "Succeeded"
    assert [(cp.name, cp.metrics) for cp in kt.checkpoints(job)] == [
        ("checkpoint-200", {"eval_loss": 1.5}),
        ("checkpoint-400", {"eval_loss": 1.2}),
    ]
    assert kt.best_checkpoint(job) == "checkpoint-400"
    watcher.join(timeout=60)
    assert not watcher.is_alive(), [str(e) for e in followed]
    assert {"Suspended", "Resumed", "Succeeded"} <= {e.reason for e in followed}, [e.reason for e in followed]
    assert {e.reason for e in followed} <= {e.reason for e in kt.events(job)}

    # The evaluator writes results; the notebook reads them typed.
    (ev,) = kt.apply(evaluation())
    assert isinstance(ev, Evaluation)
    eval_job = wait_for(
        lambda: next((n for n in cluster.objects("jobs") if n.startswith("travel-eval-eval-")), None),
        what="the eval Job",
    )
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.82), result(400, 0.9)]})
    cluster.finish_job(eval_job)
    assert kt.wait(ev, timeout=30, interval=0.1).status.phase == "Succeeded"
    scores = {r.model: r.metrics["exact_match"] for r in kt.results("travel-eval").results}
    assert scores == {"checkpoint-200": 0.82, "checkpoint-400": 0.9}

    # Promotion serves the best; a pin rolls back.
    (md,) = kt.apply(model_deployment())
    assert isinstance(md, ModelDeployment)

    def serves(checkpoint: str):
        return lambda r: r.status is not None and r.status.served_checkpoint == checkpoint

    kt.wait(md, until=serves("checkpoint-400"), timeout=30, interval=0.1)
    pinned = kt.pin("travel", "checkpoint-200")
    assert pinned.spec.promotion.pin == "checkpoint-200"
    served = kt.wait(md, until=serves("checkpoint-200"), timeout=30, interval=0.1)
    assert [r.checkpoint for r in served.status.revisions] == ["checkpoint-400", "checkpoint-200"]
    assert [m.metadata.name for m in kt.list("mdep")] == ["travel"]

    assert kt.delete(job) is True
    wait_for(lambda: cluster.ftj("travel") is None, what="the job gone (finalizer released)")
    with pytest.raises(NotFoundError):
        kt.get("travel", FineTuneJob)
    assert kt.delete("travel", "ftj") is False


def test_apply_refuses_before_sending_and_names_the_fields(cluster: Cluster, kt: Client, tmp_path) -> None:
    good = example("first")
    bad = example("second", hyperparameters={"learningRate": -1})
    bad["spec"]["adapter"] = {"type": "lora", "rank": 8}  # `r`, not `rank`
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump_all([good, bad]))

    with pytest.raises(AdmissionError) as refused:
        kt.apply(path)

    text = str(refused.value)
    assert f"{path}#2: spec.hyperparameters.learningRate" in text
    assert f"{path}#2: spec.adapter.rank" in text
    assert not any(e.source.endswith("#1") for e in refused.value.errors)
    # Nothing was sent, not even the valid first document.
    assert cluster.ftj("first") is None and cluster.ftj("second") is None

    bad_pin = model_deployment()
    (md,) = kt.apply(bad_pin)
    with pytest.raises(AdmissionError, match=r"spec\.promotion\.pin"):
        kt.pin(md, "c" * 300)
    assert kt.get(md).spec.promotion.pin == ""
