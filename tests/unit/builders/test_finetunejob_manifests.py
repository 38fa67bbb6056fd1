"""FineTuneJob -> PVC, run-config ConfigMap, RBAC, batch Job, headless Service."""

import json

import pytest

from kubetune import constants as c
from kubetune.api import FineTuneJob
from kubetune.builders.meta import owner_reference
from kubetune.builders.pods import PodSettings
from kubetune.builders.rbac import build_rbac
from kubetune.builders.storage import build_pvc, created_by_operator
from kubetune.builders.training import (
    build_headless_service,
    build_run_config_map,
    build_training_job,
    job_run_config,
)

BASE = {
    "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct", "tokenSecretRef": {"name": "hf-token", "key": "token"}},
    "dataset": {"train": {"uri": "pvc://datasets/travel/train.jsonl"}, "validation": {"uri": "pvc://eval/v.jsonl"}},
}


def ftj(name="travel", uid="uid-1", **spec) -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": "team", "uid": uid, "generation": 1},
            "spec": {**BASE, **spec},
        }
    )


def pod_spec(job_manifest):
    return job_manifest["spec"]["template"]["spec"]


def trainer(job_manifest):
    (container,) = pod_spec(job_manifest)["containers"]
    return container


def owned_by_job(obj, uid="uid-1"):
    (ref,) = obj["metadata"]["ownerReferences"]
    return ref["uid"] == uid and ref["kind"] == "FineTuneJob" and ref["controller"] is True


def test_every_child_is_owned_by_the_job_and_lives_in_its_namespace():
    job = ftj(resources={"nodes": 2})
    children = [
        build_pvc(job),
        build_run_config_map(job, job_run_config(job)),
        *build_rbac(job),
        build_training_job(job),
        build_headless_service(job),
    ]
    assert [o["kind"] for o in children] == [
        "PersistentVolumeClaim",
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Job",
        "Service",
    ]
    for obj in children:
        if obj["kind"] == "PersistentVolumeClaim":  # never garbage-collected with the job: its finalizer decides
            assert "ownerReferences" not in obj["metadata"]
            assert obj["metadata"]["annotations"][c.ANNOTATION_OWNER_UID] == "uid-1"
        else:
            assert owned_by_job(obj), obj["kind"]
        assert obj["metadata"]["namespace"] == "team"
        assert obj["metadata"]["labels"][c.LABEL_JOB] == "travel"


def test_names_stay_within_63_characters_for_long_job_names():
    job = ftj(name="a" * 70 + "-very-long-name", resources={"nodes": 2})
    objs = [build_pvc(job), build_run_config_map(job, job_run_config(job)), *build_rbac(job)]
    objs += [build_training_job(job), build_headless_service(job)]
    for obj in objs:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63


def test_indexed_pod_hostnames_of_a_long_named_multi_node_job_stay_dns_labels():
    """Pods of an Indexed Job get the hostname `<job name>-<index>`: it must fit in 63 characters too."""
    for nodes in (2, 16):
        job = ftj(name="a" * 57, resources={"nodes": nodes})
        batch = build_training_job(job)
        hostname = f"{batch['metadata']['name']}-{nodes - 1}"
        assert len(hostname) <= 63, hostname
        env = {e["name"]: e.get("value") for e in batch["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MASTER_ADDR"].startswith(f"{batch['metadata']['name']}-0.")


def test_owner_reference_needs_a_uid():
    with pytest.raises(ValueError, match="uid"):
        owner_reference(ftj(uid=None))


def test_pvc_is_created_unless_the_job_names_its_own_claim():
    pvc = build_pvc(ftj(storage={"size": "20Gi", "storageClassName": "fast"}))
    assert pvc["metadata"]["name"] == "travel-data"
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "20Gi"}},
        "storageClassName": "fast",
    }
    assert build_pvc(ftj(storage={"claimName": "mine"})) is None


def test_pvc_storage_class_defaults_to_the_operators_setting():
    assert build_pvc(ftj(), PodSettings(storage_class_name="gp3"))["spec"]["storageClassName"] == "gp3"
    assert "storageClassName" not in build_pvc(ftj(), PodSettings())["spec"]


def test_only_the_created_pvc_counts_as_the_operators():
    pvc = build_pvc(ftj())
    assert created_by_operator(pvc, "uid-1")
    assert not created_by_operator(pvc, "another-job")
    users = {"metadata": {"name": "mine", "annotations": {}}}
    assert not created_by_operator(users, "uid-1")


def test_role_allows_only_get_and_patch_of_its_own_status():
    sa, role, binding = build_rbac(ftj())
    assert role["rules"] == [
        {
            "apiGroups": ["kubetune.dev"],
            "resources": ["finetunejobs/status"],
            "resourceNames": ["travel"],
            "verbs": ["get", "patch"],
        }
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "team"}]


def test_run_config_map_holds_the_validated_spec_and_resolved_paths():
    job = ftj()
    cm = build_run_config_map(job, job_run_config(job))
    cfg = json.loads(cm["data"]["run-config.json"])
    assert cfg["kind"] == "TrainRunConfig"
    assert cfg["job"] == {"name": "travel", "namespace": "team", "uid": "uid-1", "generation": 1}
    assert cfg["outputDir"] == "/mnt/pvc/travel-data/output"
    assert cfg["outputUri"] == "pvc://travel-data/output"
    assert cfg["progress"]["backend"] == "kubernetes"
    assert cfg["spec"]["dataset"]["train"]["uri"] == "pvc://datasets/travel/train.jsonl"


def test_run_config_of_a_continued_job_starts_from_the_source_checkpoint():
    job = ftj(baseModel={"fromJob": {"name": "v1", "checkpoint": "best"}})
    cfg = job_run_config(job, source_checkpoint_uri="pvc://v1-data/output/checkpoint-400")
    assert cfg.base_model_uri == "pvc://v1-data/output/checkpoint-400"
    mounts = {
        m["mountPath"]: m
        for m in trainer(build_training_job(job, source_checkpoint_uri=cfg.base_model_uri))["volumeMounts"]
    }
    assert mounts["/mnt/pvc/v1-data"]["readOnly"] is True


def test_job_runs_the_trainer_image_with_gpu_limits_and_scheduling():
    job = ftj(
        resources={
            "gpus": 2,
            "cpu": "8",
            "memory": "64Gi",
            "nodeSelector": {"gpu": "a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "training",
        },
        backoffLimit=5,
        activeDeadlineSeconds=3600,
        ttlSecondsAfterFinished=60,
    )
    manifest = build_training_job(job, PodSettings(trainer_image="registry/trainer:1"))
    spec, pod, container = manifest["spec"], pod_spec(manifest), trainer(manifest)
    assert manifest["metadata"]["name"] == "travel-train"
    assert container["image"] == "registry/trainer:1"
    assert container["command"] == ["kubetune-trainer", "train", "--config", "/etc/kubetune/run-config.json"]
    assert container["resources"]["limits"] == {"memory": "64Gi", "nvidia.com/gpu": "2"}
    assert container["resources"]["requests"]["cpu"] == "8"
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "training"
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "travel-runner"
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (5, 3600, 60)
    assert spec["suspend"] is False


def test_job_image_in_the_spec_wins_over_the_operator_default():
    assert trainer(build_training_job(ftj(image="mine:2")))["image"] == "mine:2"


def test_cpu_job_requests_no_gpu():
    container = trainer(build_training_job(ftj(resources={"gpus": 0})))
    assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_node_disruption_does_not_count_against_retries_and_bad_data_fails_at_once():
    spec = build_training_job(ftj())["spec"]
    ignore, stopped, fail = spec["podFailurePolicy"]["rules"]
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert stopped == {
        "action": "Ignore",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [143]},
    }
    assert fail["action"] == "FailJob"
    assert fail["onExitCodes"] == {"containerName": "trainer", "operator": "In", "values": [3]}
    assert spec["podReplacementPolicy"] == "Failed"


def test_trainer_gets_time_to_save_a_checkpoint_after_sigterm():
    assert pod_spec(build_training_job(ftj()))["terminationGracePeriodSeconds"] == 600


def test_pods_are_restricted():
    manifest = build_training_job(ftj())
    pod, container = pod_spec(manifest), trainer(manifest)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", c.HF_CACHE_DIR, c.DATA_MOUNT} <= writable


def test_volumes_mount_the_job_claim_config_and_every_referenced_claim_read_only():
    manifest = build_training_job(ftj())
    pod, container = pod_spec(manifest), trainer(manifest)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[c.DATA_MOUNT]["name"]]["persistentVolumeClaim"]["claimName"] == "travel-data"
    assert mounts["/mnt/pvc/travel-data"]["name"] == mounts[c.DATA_MOUNT]["name"]
    assert volumes[mounts[c.RUN_CONFIG_MOUNT]["name"]]["configMap"]["name"] == "travel-config"
    for claim in ("datasets", "eval"):
        mount = mounts[f"/mnt/pvc/{claim}"]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}


def test_users_claim_is_mounted_writable_once():
    container = trainer(build_training_job(ftj(storage={"claimName": "datasets"})))
    paths = [m["mountPath"] for m in container["volumeMounts"]]
    assert paths.count("/mnt/pvc/datasets") == 1
    assert next(m for m in container["volumeMounts"] if m["mountPath"] == "/mnt/pvc/datasets").get("readOnly") is None


def test_secrets_are_passed_by_reference_only():
    job = ftj(
        env=[{"name": "WANDB_API_KEY", "secretKeyRef": {"name": "wandb", "key": "key"}}, {"name": "A", "value": "b"}]
    )
    env = {e["name"]: e for e in trainer(build_training_job(job))["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "wandb", "key": "key"}
    assert env["A"] == {"name": "A", "value": "b"}


def test_kueue_job_carries_the_queue_label_and_starts_suspended():
    manifest = build_training_job(ftj(queueName="team-travel"))
    assert manifest["metadata"]["labels"][c.LABEL_KUEUE_QUEUE] == "team-travel"
    assert manifest["spec"]["suspend"] is True
    assert c.LABEL_KUEUE_QUEUE not in build_training_job(ftj())["metadata"]["labels"]


def test_suspended_job_is_created_suspended():
    assert build_training_job(ftj(suspend=True))["spec"]["suspend"] is True


def test_multi_node_job_is_indexed_with_a_headless_service_for_rendezvous():
    job = ftj(resources={"nodes": 4, "gpus": 8})
    manifest = build_training_job(job)
    spec, pod = manifest["spec"], pod_spec(manifest)
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    svc = build_headless_service(job)
    assert svc["spec"]["clusterIP"] == "None"
    assert pod["subdomain"] == svc["metadata"]["name"] == "travel-workers"
    assert svc["spec"]["selector"] == spec["template"]["metadata"]["labels"]
    env = {e["name"]: e for e in trainer(manifest)["env"]}
    assert env["MASTER_ADDR"]["value"] == "travel-train-0.travel-workers"
    assert env["MASTER_PORT"]["value"] == "29500"
    assert env["NNODES"]["value"] == "4"
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]


def test_single_node_job_has_no_service_and_no_rendezvous():
    job = ftj()
    assert build_headless_service(job) is None
    manifest = build_training_job(job)
    assert "completionMode" not in manifest["spec"]
    assert "MASTER_ADDR" not in {e["name"] for e in trainer(manifest)["env"]}


def test_the_trainers_failure_reason_becomes_the_termination_message():
    """The trainer writes why it failed to /dev/termination-log; without it, the log's tail (never nothing)."""
    for nodes in (1, 2):
        container = trainer(build_training_job(ftj(resources={"gpus": 1, "nodes": nodes})))
        assert container["terminationMessagePath"] == c.TERMINATION_LOG_PATH == "/dev/termination-log"
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
