"""A FineTuneJob's life against an API server: children, status, Kueue, suspend, restart, deletion.

The tests play the Job controller and the trainer: they patch the batch Job's status, create pods,
and patch the FineTuneJob's status the way the trainer pod does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import GROUP_PATH, NAMESPACE, ROOT, Cluster, OperatorProcess, dump, example, now, wait_for
from prometheus_client import REGISTRY

FTJ_PATH = f"{GROUP_PATH}/namespaces/{NAMESPACE}/finetunejobs"
PLURALS = ("persistentvolumeclaims", "configmaps", "serviceaccounts", "roles", "rolebindings", "jobs", "services")


def owned(cluster: Cluster, uid: str) -> dict[str, str]:
    """kind -> name of every object owned by the object with `uid`: by owner reference, or (the PVC the
    operator creates, which no owner reference ties to its job) by its kubetune.dev/owner-uid annotation."""
    out = {}
    for plural in PLURALS:
        for name, obj in cluster.objects(plural).items():
            meta = obj["metadata"]
            by_annotation = (meta.get("annotations") or {}).get("kubetune.dev/owner-uid") == uid
            if by_annotation or any(ref["uid"] == uid for ref in meta.get("ownerReferences", [])):
                out[obj["kind"]] = name
    return out


def phase(cluster: Cluster, name: str) -> str | None:
    return ((cluster.ftj(name) or {}).get("status") or {}).get("phase")


def wait_phase(cluster: Cluster, name: str, expected: str, timeout: float = 10) -> dict:
    wait_for(lambda: phase(cluster, name) == expected, timeout, f"{name} to be {expected} (is {phase(cluster, name)})")
    return cluster.ftj(name)


def conditions(ftj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in ftj["status"].get("conditions", [])}


def reasons(cluster: Cluster, name: str) -> list[str]:
    return [e["reason"] for e in cluster.events(name)]


def metric(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_apply_creates_owned_children_that_run_the_trainer(cluster: Cluster, operator) -> None:
    out = cluster.apply(example())
    assert "finetunejob.kubetune.dev/travel created" in out
    wait_for(lambda: cluster.objects("jobs").get("travel-train"), what="the training Job")
    ftj = wait_phase(cluster, "travel", "Pending")
    assert owned(cluster, ftj["metadata"]["uid"]) == {
        "PersistentVolumeClaim": "travel-data",
        "ConfigMap": "travel-config",
        "ServiceAccount": "travel-runner",
        "Role": "travel-runner",
        "RoleBinding": "travel-runner",
        "Job": "travel-train",
    }
    assert ftj["metadata"]["finalizers"] == ["kubetune.dev/finalizer"]
    # Kopf keeps its state in annotations under kubetune.dev.
    annotations = wait_for(
        lambda: (
            (a := cluster.ftj("travel")["metadata"]["annotations"]).get("kubetune.dev/last-handled-configuration") and a
        ),
        what="Kopf's diff-base annotation",
    )
    assert not [k for k in annotations if "kopf.zalando.org" in k]
    assert conditions(ftj)["Reconciling"]["status"] == "True"
    assert ftj["status"]["observedGeneration"] == ftj["metadata"]["generation"] == 1

    job = cluster.objects("jobs")["travel-train"]
    pod = job["spec"]["template"]["spec"]
    (trainer,) = pod["containers"]
    assert trainer["image"] == "registry.test/kubetune-trainer:test"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert trainer["securityContext"]["readOnlyRootFilesystem"] is True
    assert trainer["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in trainer["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    role = cluster.objects("roles")["travel-runner"]
    assert role["rules"][0]["resourceNames"] == ["travel"]
    run_config = json.loads(cluster.objects("configmaps")["travel-config"]["data"]["run-config.json"])
    assert run_config["job"]["uid"] == ftj["metadata"]["uid"]

    table = cluster.kubectl("get", "ftj")
    assert table.split("\n")[1].split()[:3] == ["travel", "sft", "Pending"]
    assert "Created" in reasons(cluster, "travel")
    described = cluster.kubectl("describe", "ftj", "travel")
    assert "Created" in described and "Job/travel-train" in described


def test_success_and_failure_show_up_in_status_within_seconds(cluster: Cluster, operator) -> None:
    cluster.apply(example("good"))
    cluster.apply(example("bad"))
    wait_for(lambda: {"good-train", "bad-train"} <= set(cluster.objects("jobs")), what="both Jobs")

    cluster.start_job("good-train")
    ftj = wait_phase(cluster, "good", "Validating")
    assert ftj["status"]["startTime"]
    # The trainer reports data and progress on its own status fields.
    trainer_status = {
        "data": {"format": "chat", "trainExamples": 90, "validationExamples": 10},
        "progress": {"step": 30, "totalSteps": 60, "percent": 50},
        "metrics": {"trainLoss": 1.25},
        "checkpoints": [{"name": "checkpoint-30", "step": 30, "metrics": {"eval_loss": 1.5}}],
        "bestCheckpoint": "checkpoint-30",
    }
    # Nothing else happens: no Job or pod event. The operator follows the trainer's report within seconds.
    started = time.monotonic()
    cluster.patch_status(f"{FTJ_PATH}/good", trainer_status)
    wait_phase(cluster, "good", "Running")
    assert time.monotonic() - started < 5
    row = cluster.kubectl("get", "ftj", "good").split("\n")[1].split()
    assert row[:5] == ["good", "sft", "Running", "50", "checkpoint-30"]

    started = time.monotonic()
    cluster.finish_job("good-train", succeeded=True)
    ftj = wait_phase(cluster, "good", "Succeeded")
    assert time.monotonic() - started < 5
    cond = conditions(ftj)
    assert cond["Ready"]["status"] == "True" and cond["Succeeded"]["status"] == "True"
    assert "Reconciling" not in cond and "Stalled" not in cond
    assert ftj["status"]["output"] == {"uri": "pvc://good-data/output", "checkpoint": "checkpoint-30"}
    assert ftj["status"]["completionTime"]
    assert ftj["status"]["progress"]["step"] == 30  # the trainer's fields are left alone

    cluster.start_job("bad-train")
    started = time.monotonic()
    cluster.finish_job("bad-train", succeeded=False, reason="BackoffLimitExceeded")
    ftj = wait_phase(cluster, "bad", "Failed")
    assert time.monotonic() - started < 5
    cond = conditions(ftj)
    assert cond["Ready"]["status"] == "False"
    assert cond["Stalled"]["reason"] == cond["Failed"]["reason"] == "BackoffLimitExceeded"
    assert ftj["status"]["retries"] == 4

    wait_for(lambda: {"Started", "Succeeded"} <= set(reasons(cluster, "good")), what="events of good")
    wait_for(lambda: "BackoffLimitExceeded" in reasons(cluster, "bad"), what="events of bad")
    warning = next(e for e in cluster.events("bad") if e["reason"] == "BackoffLimitExceeded")
    assert warning["type"] == "Warning" and "backoffLimit" in warning["message"]

    assert metric("kubetune_finetunejobs", resource_namespace=NAMESPACE, phase="Succeeded") == 1
    assert metric("kubetune_finetunejobs", resource_namespace=NAMESPACE, phase="Failed") == 1
    assert metric("kubetune_training_loss", resource_namespace=NAMESPACE, finetunejob="good") == 1.25
    assert metric("kubetune_training_progress_ratio", resource_namespace=NAMESPACE, finetunejob="good") == 0.5
    labels = {
        "resource_namespace": NAMESPACE,
        "finetunejob": "good",
        "checkpoint": "checkpoint-30",
        "metric": "eval_loss",
    }
    assert metric("kubetune_checkpoint_metric", **labels) == 1.5
    assert metric("kubetune_handler_duration_seconds_count", handler="finetunejob.reconcile") >= 2


def test_invalid_data_fails_with_data_validation_failed(cluster: Cluster, operator) -> None:
    cluster.apply(example())
    job = wait_for(lambda: cluster.objects("jobs").get("travel-train"), what="the training Job")
    cluster.start_job("travel-train")
    cluster.patch_status(f"{FTJ_PATH}/travel", {"data": {"errors": ["train.jsonl:3: 'messages' is missing"]}})
    template = job["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "travel-train-x1",
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
        },
        "spec": template["spec"],
    }
    cluster.create(f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
    terminated = {"terminated": {"exitCode": 3, "reason": "Error", "finishedAt": now()}}
    cluster.patch_status(
        f"/api/v1/namespaces/{NAMESPACE}/pods/travel-train-x1",
        {"phase": "Failed", "containerStatuses": [{"name": "trainer", "state": terminated}]},
    )
    cluster.finish_job("travel-train", succeeded=False, reason="PodFailurePolicy")
    ftj = wait_phase(cluster, "travel", "Failed")
    cond = conditions(ftj)
    assert cond["Failed"]["reason"] == "DataValidationFailed"
    assert "train.jsonl:3" in cond["Failed"]["message"]
    assert cond["DataValidated"]["status"] == "False"


def test_kueue_queue_and_multi_node(cluster: Cluster, operator) -> None:
    # several nodes mount the checkpoint PVC: ReadWriteMany, as the CRD's rule (and the operator's guard) require
    cluster.apply(
        example(
            "queued", queueName="team-a", resources={"nodes": 2, "gpus": 4}, storage={"accessModes": ["ReadWriteMany"]}
        )
    )
    job = wait_for(lambda: cluster.objects("jobs").get("queued-train"), what="the training Job")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["suspend"] is True
    assert (job["spec"]["completionMode"], job["spec"]["completions"]) == ("Indexed", 2)
    svc = cluster.objects("services")["queued-workers"]
    assert svc["spec"]["clusterIP"] == "None"
    ftj = wait_phase(cluster, "queued", "Queued")
    assert "team-a" in conditions(ftj)["Ready"]["message"]
    # Kueue admits the workload: it unsuspends the Job, and the pods start.
    cluster.kubectl("patch", "job", "queued-train", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    cluster.start_job("queued-train")
    wait_phase(cluster, "queued", "Validating")


def test_suspend_and_resume(cluster: Cluster, operator) -> None:
    cluster.apply(example())
    wait_for(lambda: cluster.objects("jobs").get("travel-train"), what="the training Job")
    cluster.start_job("travel-train")
    wait_phase(cluster, "travel", "Validating")

    cluster.kubectl("patch", "ftj", "travel", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_for(lambda: cluster.objects("jobs")["travel-train"]["spec"]["suspend"] is True, what="the Job suspended")
    ftj = wait_phase(cluster, "travel", "Suspended")
    assert ftj["status"]["observedGeneration"] == ftj["metadata"]["generation"] == 2
    assert conditions(ftj)["Suspended"]["status"] == "True"

    cluster.kubectl("patch", "ftj", "travel", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_for(lambda: cluster.objects("jobs")["travel-train"]["spec"]["suspend"] is False, what="the Job resumed")
    wait_phase(cluster, "travel", "Validating")
    wait_for(lambda: {"Suspended", "Resumed"} <= set(reasons(cluster, "travel")), what="suspend/resume events")


def test_operator_restart_mid_job_creates_nothing_twice(cluster: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "operator.log"
    op = OperatorProcess(cluster.kubeconfig, log).start()
    try:
        cluster.apply(example())
        job = wait_for(lambda: cluster.objects("jobs").get("travel-train"), 30, "the training Job")
        wait_phase(cluster, "travel", "Pending", 30)
        op.kill()

        cluster.start_job("travel-train")  # the pod starts while no operator runs
        op = OperatorProcess(cluster.kubeconfig, log).start()
        wait_phase(cluster, "travel", "Validating", 30)  # resumed and caught up
        cluster.finish_job("travel-train")
        wait_phase(cluster, "travel", "Succeeded")
    finally:
        op.stop()
    assert cluster.objects("jobs")["travel-train"]["metadata"]["uid"] == job["metadata"]["uid"]  # never re-created
    ftj = cluster.ftj("travel")
    assert len(owned(cluster, ftj["metadata"]["uid"])) == 6  # the PVC made before the restart adopted, too
    assert reasons(cluster, "travel").count("Created") == 1, dump(cluster.events("travel"))
    assert "PersistentVolumeClaimConflict" not in reasons(cluster, "travel")


def test_delete_removes_children_and_the_created_claim_only(cluster: Cluster, operator) -> None:
    cluster.apply(example("own"))
    cluster.apply(example("shared", storage={"claimName": "team-claim"}))
    cluster.create(
        f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "team-claim"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "10Gi"}}},
        },
    )
    wait_for(lambda: {"own-train", "shared-train"} <= set(cluster.objects("jobs")), what="both Jobs")
    assert "shared-data" not in cluster.objects("persistentvolumeclaims")

    cluster.kubectl("delete", "ftj", "own", "shared", "--timeout=20s")
    assert cluster.ftj("own") is None and cluster.ftj("shared") is None
    # The rest goes by owner references: on a real cluster the garbage collector removes it a moment later.
    wait_for(lambda: set(cluster.objects("persistentvolumeclaims")) == {"team-claim"}, what="only team-claim left")
    for plural in ("jobs", "configmaps", "roles", "rolebindings", "serviceaccounts"):
        wait_for(lambda plural=plural: cluster.objects(plural) == {}, what=f"{plural} garbage-collected")


def test_continued_job_waits_for_its_source(cluster: Cluster, operator) -> None:
    cluster.apply(example("v1"))
    cluster.apply(example("v2", baseModel={"fromJob": {"name": "v1", "checkpoint": "best"}}))
    wait_for(lambda: cluster.objects("jobs").get("v1-train"), what="the source Job")
    ftj = wait_phase(cluster, "v2", "Pending")
    wait_for(lambda: "WaitingForSourceJob" in conditions(cluster.ftj("v2")), what="the waiting condition")
    assert "v1" in conditions(cluster.ftj("v2"))["WaitingForSourceJob"]["message"]
    assert "v2-train" not in cluster.objects("jobs")

    cluster.patch_status(
        f"{FTJ_PATH}/v1",
        {
            "checkpoints": [{"name": "checkpoint-50", "step": 50, "uri": "pvc://v1-data/output/checkpoint-50"}],
            "bestCheckpoint": "checkpoint-50",
        },
    )
    cluster.start_job("v1-train")
    cluster.finish_job("v1-train")
    wait_phase(cluster, "v1", "Succeeded")
    wait_for(lambda: cluster.objects("jobs").get("v2-train"), what="the continued Job")
    ftj = wait_for(
        lambda: "WaitingForSourceJob" not in conditions(f := cluster.ftj("v2")) and f, what="the wait to end"
    )
    assert ftj["status"]["baseModelUri"] == "pvc://v1-data/output/checkpoint-50"
    assert ftj["status"]["phase"] == "Pending"
    run_config = json.loads(cluster.objects("configmaps")["v2-config"]["data"]["run-config.json"])
    assert run_config["baseModelUri"] == "pvc://v1-data/output/checkpoint-50"


def test_continued_job_stalls_when_its_source_failed(cluster: Cluster, operator) -> None:
    cluster.apply(example("v1"))
    wait_for(lambda: cluster.objects("jobs").get("v1-train"), what="the source Job")
    cluster.finish_job("v1-train", succeeded=False)
    wait_phase(cluster, "v1", "Failed")
    cluster.apply(example("v2", baseModel={"fromJob": {"name": "v1"}}))
    ftj = wait_phase(cluster, "v2", "Failed")
    cond = conditions(ftj)
    assert cond["Stalled"]["reason"] == "SourceJobFailed"
    assert "v1" in cond["Stalled"]["message"]
    assert "v2-train" not in cluster.objects("jobs")


def test_examples_apply_as_they_are(cluster: Cluster, operator) -> None:
    """The README's story: `kubectl apply -f examples/...` yields the children; `kubectl get ftj` shows it."""
    for name in ("sft-lora.yaml", "multinode.yaml", "dpo.yaml"):
        cluster.apply(ROOT / "examples" / name)
    ftjs = cluster.objects("finetunejobs")
    assert len(ftjs) == 3
    for name, ftj in ftjs.items():
        wait_for(lambda name=name: cluster.objects("jobs").get(f"{name}-train"), what=f"the Job of {name}")
        expected = {"PersistentVolumeClaim", "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Job"}
        if ftj["spec"].get("resources", {}).get("nodes", 1) > 1:
            expected.add("Service")
        wait_for(
            lambda ftj=ftj, expected=expected: set(owned(cluster, ftj["metadata"]["uid"])) == expected,
            what=f"the children of {name}",
        )
        wait_for(lambda name=name: phase(cluster, name) in ("Pending", "Queued"), what=f"{name} to wait")
    rows = cluster.kubectl("get", "ftj").strip().split("\n")
    assert rows[0].split()[:4] == ["NAME", "METHOD", "PHASE", "PROGRESS"]
    assert sorted(r.split()[0] for r in rows[1:]) == sorted(ftjs)


def test_fixing_the_spec_of_a_job_stalled_on_its_source_starts_it(cluster: Cluster, operator) -> None:
    """The Stalled message says to point spec.baseModel at another job or uri: doing so must start the job."""
    cluster.apply(example("v1"))
    wait_for(lambda: cluster.objects("jobs").get("v1-train"), what="the source Job")
    cluster.finish_job("v1-train", succeeded=False)
    wait_phase(cluster, "v1", "Failed")
    cluster.apply(example("v2", baseModel={"fromJob": {"name": "v1"}}))
    wait_phase(cluster, "v2", "Failed")

    patch = '{"spec":{"baseModel":{"fromJob":null,"uri":"hf://Qwen/Qwen2.5-0.5B-Instruct"}}}'
    cluster.kubectl("patch", "ftj", "v2", "--type=merge", "-p", patch)
    wait_for(lambda: cluster.objects("jobs").get("v2-train"), what="the training Job after the fix")
    ftj = wait_phase(cluster, "v2", "Pending")
    assert ftj["status"]["observedGeneration"] == ftj["metadata"]["generation"] == 2
    assert "completionTime" not in ftj["status"]
    assert {"Stalled", "Failed"}.isdisjoint(conditions(ftj))


def test_editing_a_finished_job_whose_batch_job_is_gone_is_observed(cluster: Cluster, operator) -> None:
    """After the Job's TTL, an allowed edit (ttlSecondsAfterFinished) still moves observedGeneration, so
    kstatus readers (Argo CD, Flux) do not wait for the operator forever."""
    cluster.apply(example("done"))
    wait_for(lambda: cluster.objects("jobs").get("done-train"), what="the training Job")
    cluster.start_job("done-train")
    cluster.finish_job("done-train", succeeded=True)
    wait_phase(cluster, "done", "Succeeded")
    cluster.kubectl("delete", "job", "done-train")  # garbage-collected after ttlSecondsAfterFinished
    wait_for(lambda: "done-train" not in cluster.objects("jobs"), what="the Job gone")

    cluster.kubectl("patch", "ftj", "done", "--type=merge", "-p", '{"spec":{"ttlSecondsAfterFinished":60}}')
    ftj = wait_for(
        lambda: (f := cluster.ftj("done"))["status"].get("observedGeneration") == f["metadata"]["generation"] and f,
        what="the new generation observed",
    )
    assert ftj["metadata"]["generation"] == 2
    assert ftj["status"]["phase"] == "Succeeded"
    assert {cond["observedGeneration"] for cond in ftj["status"]["conditions"]} == {2}


def gpus_asked(job: dict) -> str:
    return job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]


def pending_pod_of(cluster: Cluster, job: dict) -> None:
    """The trainer pod the Job controller made, which no node can take (the Job itself has a startTime)."""
    template = job["spec"]["template"]
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job['metadata']['name']}-p1",
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [owner],
        },
        "spec": template["spec"],
    }
    cluster.create(f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}
    cluster.patch_status(
        f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}",
        {"phase": "Pending", "conditions": [unschedulable]},
    )
    cluster.patch_status(cluster.job_path(job["metadata"]["name"]), {"active": 1, "startTime": now()})


def test_editing_a_pending_job_recreates_its_job_before_observing_the_edit(cluster: Cluster, operator) -> None:
    """Stuck Pending on `gpus: 8`, edited to `gpus: 1`: the Job asks for 1 GPU, and only then does
    observedGeneration say the edit was applied (what Argo CD and Flux wait for)."""
    cluster.apply(example("big", resources={"gpus": 8}))
    old = wait_for(lambda: cluster.objects("jobs").get("big-train"), what="the training Job")
    old_config = cluster.objects("configmaps")["big-config"]
    assert gpus_asked(old) == "8"
    pending_pod_of(cluster, old)
    wait_for(lambda: "Unschedulable" in (cluster.ftj("big")["status"].get("message") or ""), what="the wait explained")
    assert "startTime" not in cluster.ftj("big")["status"]  # a waiting pod is no start: the spec is not frozen

    cluster.kubectl("patch", "ftj", "big", "--type=merge", "-p", '{"spec":{"resources":{"gpus":1}}}')

    def observed() -> dict | None:
        ftj = cluster.ftj("big")
        if ftj["status"].get("observedGeneration") != 2:
            return None
        job = cluster.objects("jobs")["big-train"]  # read after the status: it must be the new one already
        assert gpus_asked(job) == "1", "generation 2 observed while the Job still asked for 8 GPUs"
        return ftj

    ftj = wait_for(observed, what="generation 2 observed")
    new = cluster.objects("jobs")["big-train"]
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    config = cluster.objects("configmaps")["big-config"]
    assert config["metadata"]["uid"] != old_config["metadata"]["uid"]
    assert json.loads(config["data"]["run-config.json"])["spec"]["resources"]["gpus"] == 1
    assert {cond["observedGeneration"] for cond in ftj["status"]["conditions"]} == {2}
    assert ftj["status"]["phase"] == "Pending"
    wait_for(lambda: "big-train-p1" not in cluster.objects("pods"), what="the old pod gone with its Job")
    recreated = next(e for e in cluster.events("big") if e["reason"] == "Recreated")
    assert "generation 2" in recreated["message"] and "Job/big-train" in recreated["message"]


def test_a_recreation_cut_short_by_a_restart_is_finished_by_the_next_operator(cluster: Cluster, operator) -> None:
    """The operator died after deleting the old Job and before creating the new one: the stale run config is
    replaced and the Job created from the edited spec when it comes back."""
    cluster.apply(example("big", resources={"gpus": 8}))
    wait_for(lambda: cluster.objects("jobs").get("big-train"), what="the training Job")
    wait_phase(cluster, "big", "Pending")
    operator.stop()
    cluster.kubectl("patch", "ftj", "big", "--type=merge", "-p", '{"spec":{"resources":{"gpus":1}}}')
    cluster.kubectl("delete", "job", "big-train")  # what the dead operator had done
    assert cluster.ftj("big")["status"]["observedGeneration"] == 1

    operator.start()
    job = wait_for(lambda: cluster.objects("jobs").get("big-train"), 30, "the Job created again")
    assert gpus_asked(job) == "1"
    config = cluster.objects("configmaps")["big-config"]
    assert (
        config["metadata"]["annotations"]["kubetune.dev/spec-hash"]
        == job["metadata"]["annotations"]["kubetune.dev/spec-hash"]
    )
    assert json.loads(config["data"]["run-config.json"])["spec"]["resources"]["gpus"] == 1
    wait_for(lambda: cluster.ftj("big")["status"].get("observedGeneration") == 2, what="generation 2 observed")
