"""The training workload of a FineTuneJob: its run-config ConfigMap, the batch/v1 Job, the headless Service.

One node: a plain Job with one pod. Several nodes: an Indexed Job (completions = parallelism = nodes)
whose pods find each other through a headless Service; index 0 is the rendezvous host. With
`queueName` the Job carries Kueue's queue label and is created suspended, so Kueue admits it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from kubetune import constants as c
from kubetune.api.finetunejob import MUTABLE_AFTER_START, FineTuneJob
from kubetune.api.judge import grader_api_key_env
from kubetune.api.references import referenced_uris
from kubetune.api.runconfig import ProgressSink, StorageMap, TrainRunConfig
from kubetune.builders import names, objectstorage, pods
from kubetune.builders.meta import child_metadata
from kubetune.builders.pods import PodSettings
from kubetune.builders.rbac import service_account_name
from kubetune.builders.runconfig import TEACHER_API_KEY_ENV, train_run_config
from kubetune.builders.tracking import tracking_env

RUN_CONFIG_PATH = f"{c.RUN_CONFIG_MOUNT}/{c.RUN_CONFIG_FILE}"
TRAIN_COMMAND = ["kubetune-trainer", "train", "--config", RUN_CONFIG_PATH]


def pod_storage_map() -> StorageMap:
    """How URIs map to paths inside trainer pods: pvc://CLAIM/PATH -> /mnt/pvc/CLAIM/PATH."""
    return StorageMap(pvc_root=c.PVC_MOUNT_ROOT, base_dir=c.DATA_MOUNT)


def training_job_name(job: FineTuneJob) -> str:
    """`<job>-train`; with several nodes short enough that each pod's hostname `<name>-<index>` (which
    `MASTER_ADDR` names) is still a DNS label of at most 63 characters."""
    nodes = job.spec.resources.nodes
    index_suffix = len(f"-{nodes - 1}") if nodes > 1 else 0
    if nodes > 1:  # Indexed pods get the hostname <name>-<index>: a DNS label, so no dots in the name
        return names.dns_label_name(job.metadata.name, c.ROLE_TRAIN, max_len=names.MAX_NAME - index_suffix)
    return names.child_name(job.metadata.name, c.ROLE_TRAIN)


def config_map_name(job: FineTuneJob) -> str:
    return names.child_name(job.metadata.name, c.ROLE_CONFIG)


def headless_service_name(job: FineTuneJob) -> str:
    """A Service name, so a DNS-1035 label even for a dotted job name (names.dns_label_name)."""
    return names.dns_label_name(job.metadata.name, c.ROLE_HEADLESS)


def pod_labels(job: FineTuneJob) -> dict[str, str]:
    return names.labels(c.LABEL_JOB, job.metadata.name, c.ROLE_TRAIN)


def spec_hash(job: FineTuneJob) -> str:
    """Digest of the spec the training Job and its run config are built from: every field except those the
    operator changes in place on the running Job (MUTABLE_AFTER_START). Both children carry it
    (`kubetune.dev/spec-hash`), so a child built from an earlier spec is recognised, even after a restart."""
    spec = {k: v for k, v in job.spec.identity().items() if k not in MUTABLE_AFTER_START}
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def built_from(child: Mapping[str, Any] | None) -> str | None:
    """The spec hash a child was built from; None for no child, or one made before children carried it."""
    annotations = ((child or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(c.ANNOTATION_SPEC_HASH)


def _hash_annotation(job: FineTuneJob) -> dict[str, str]:
    return {c.ANNOTATION_SPEC_HASH: spec_hash(job)}


def job_run_config(
    job: FineTuneJob,
    settings: PodSettings | None = None,
    *,
    source_checkpoint_uri: str | None = None,
    judge_endpoints: Mapping[str, str] | None = None,
) -> TrainRunConfig:
    """The run config a trainer pod reads; `source_checkpoint_uri` is `baseModel.fromJob` resolved,
    `judge_endpoints` the judge ModelDeployments' endpoints."""
    settings = settings or PodSettings()
    storage = pod_storage_map()
    output_dir = storage.local_path(names.job_output_uri(job))
    return train_run_config(
        job,
        storage=storage,
        output_dir=str(output_dir),
        progress=ProgressSink(backend="kubernetes", min_interval_seconds=settings.progress_interval_seconds),
        source_checkpoint_uri=source_checkpoint_uri,
        judge_endpoints=judge_endpoints,
    )


def build_run_config_map(job: FineTuneJob, run_config: TrainRunConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(job, c.ROLE_CONFIG, name=config_map_name(job), annotations=_hash_annotation(job)),
        "data": {c.RUN_CONFIG_FILE: run_config.dump()},
    }


def runner_env(name: str) -> list[dict[str, Any]]:
    """The env of a pod that runs `kubetune-trainer` on the mounted run config for resource `name`
    (training and evaluation pods): where the config is, whose status to patch, the pod's own identity."""
    return [
        {"name": c.ENV_RUN_CONFIG, "value": RUN_CONFIG_PATH},
        {"name": c.ENV_JOB_NAME, "value": name},
        *pods.downward_env(),
        *pods.process_env(),
    ]


def _env(job: FineTuneJob) -> list[dict[str, Any]]:
    spec = job.spec
    env = runner_env(job.metadata.name)
    if spec.base_model.token_secret_ref:
        env.append(pods.secret_env(c.ENV_HF_TOKEN, spec.base_model.token_secret_ref))
    elif spec.distillation and spec.distillation.teacher.token_secret_ref:
        env.append(pods.secret_env(c.ENV_HF_TOKEN, spec.distillation.teacher.token_secret_ref))
    endpoint = spec.distillation.teacher.endpoint if spec.distillation else None
    if endpoint and endpoint.api_key_secret_ref:
        env.append(pods.secret_env(TEACHER_API_KEY_ENV, endpoint.api_key_secret_ref))
    for i, grader in enumerate(spec.rft.graders if spec.rft else []):
        if grader.judge and grader.judge.api_key_secret_ref:
            env.append(pods.secret_env(grader_api_key_env(i), grader.judge.api_key_secret_ref))
    return env + tracking_env(spec.tracking) + objectstorage.s3_env(spec.s3) + objectstorage.export_env(spec.export)


def _distributed_env(job: FineTuneJob, master: str) -> list[dict[str, Any]]:
    """torch.distributed rendezvous for the pods of an Indexed Job: `master` is the host of index 0."""
    res = job.spec.resources
    rank_path = f"metadata.annotations['{c.ANNOTATION_COMPLETION_INDEX}']"
    return [
        {"name": "MASTER_ADDR", "value": master},
        {"name": "MASTER_PORT", "value": str(c.MASTER_PORT)},
        {"name": "NNODES", "value": str(res.nodes)},
        {"name": "NPROC_PER_NODE", "value": str(max(res.gpus, 1))},
        {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": rank_path}}},
    ]


def pod_failure_policy() -> dict[str, Any]:
    """Preemption, node drains and stops after a saved checkpoint do not use up retries; invalid data fails the Job.

    A pod deleted through the API (not an eviction) carries no DisruptionTarget condition; the trainer then
    exits 143 once it has written a resumable checkpoint, and the replacement resumes from it.
    """
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": c.POD_DISRUPTION_TARGET}]},
            {
                "action": "Ignore",
                "onExitCodes": {
                    "containerName": c.TRAINER_CONTAINER,
                    "operator": "In",
                    "values": [c.EXIT_STOPPED_WITH_CHECKPOINT],
                },
            },
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": c.TRAINER_CONTAINER,
                    "operator": "In",
                    "values": [c.EXIT_DATA_VALIDATION_FAILED],
                },
            },
        ]
    }


def indexed_job_master(job: FineTuneJob) -> str:
    """The rendezvous host of an Indexed Job's pods: index 0's hostname under the headless Service."""
    return f"{training_job_name(job)}-0.{headless_service_name(job)}"


def training_pod_template(
    job: FineTuneJob, settings: PodSettings, *, source_checkpoint_uri: str | None, master: str | None
) -> dict[str, Any]:
    """The trainer pod (metadata and spec) of a training Job; `master`: the rendezvous host of a multi-node
    job (its pods get MASTER_ADDR, NODE_RANK from their completion index, ...), None for one node."""
    spec, res = job.spec, job.spec.resources
    claim = names.job_claim_name(job)
    data_volume = {"name": "data", "persistentVolumeClaim": {"claimName": claim}}
    config_volume = {"name": "run-config", "configMap": {"name": config_map_name(job)}}
    # fromJob's checkpoint stands where baseModel.uri would (the API allows one of the two)
    reads = [source_checkpoint_uri, *(ref.uri for ref in referenced_uris(job))]
    others = [cl for cl in pods.pvc_claims(reads) if cl != claim]
    claim_vols, claim_mounts = pods.claim_volumes(others)
    scratch_vols, scratch_mounts = pods.scratch_volumes()
    mounts = [
        {"name": "data", "mountPath": c.DATA_MOUNT},
        {"name": "data", "mountPath": f"{c.PVC_MOUNT_ROOT}/{claim}"},
        {"name": "run-config", "mountPath": c.RUN_CONFIG_MOUNT, "readOnly": True},
        *claim_mounts,
        *scratch_mounts,
    ]
    env = _env(job) + (_distributed_env(job, master) if master else []) + pods.user_env(spec.env)
    container = {
        "name": c.TRAINER_CONTAINER,
        "image": spec.image or settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(TRAIN_COMMAND),
        "env": env,
        "resources": pods.container_resources(res),
        "volumeMounts": mounts,
        "securityContext": pods.container_security_context(),
        **pods.termination_message(),
    }
    if master:
        container["ports"] = [{"name": "rendezvous", "containerPort": c.MASTER_PORT}]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": c.TRAINER_GRACE_SECONDS,
        "serviceAccountName": service_account_name(job),
        "automountServiceAccountToken": True,
        "securityContext": pods.pod_security_context(settings),
        "containers": [container],
        "volumes": [data_volume, config_volume, *claim_vols, *scratch_vols],
        **pods.scheduling(res),
    }
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s.name} for s in spec.image_pull_secrets]
    # The full job name (labels are cut at 63 characters) tells the operator whose pod this is.
    return {"metadata": {"labels": pod_labels(job), "annotations": {c.LABEL_JOB: job.metadata.name}}, "spec": pod_spec}


def build_training_job(
    job: FineTuneJob, settings: PodSettings | None = None, *, source_checkpoint_uri: str | None = None
) -> dict[str, Any]:
    """The batch/v1 Job that trains; owned by the FineTuneJob. Several nodes: an Indexed Job whose pods
    find index 0 through the headless Service (`build_headless_service`)."""
    settings = settings or PodSettings()
    spec, res = job.spec, job.spec.resources
    master = indexed_job_master(job) if res.nodes > 1 else None
    template = training_pod_template(job, settings, source_checkpoint_uri=source_checkpoint_uri, master=master)
    if master:
        template["spec"]["subdomain"] = headless_service_name(job)

    meta = child_metadata(job, c.ROLE_TRAIN, name=training_job_name(job), annotations=_hash_annotation(job))
    if spec.queue_name:
        meta["labels"][c.LABEL_KUEUE_QUEUE] = spec.queue_name
    job_spec: dict[str, Any] = {
        "suspend": bool(spec.suspend or spec.queue_name),
        "backoffLimit": spec.backoff_limit,
        "podFailurePolicy": pod_failure_policy(),
        "podReplacementPolicy": "Failed",
        "template": template,
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    if res.nodes > 1:
        job_spec.update(completionMode="Indexed", completions=res.nodes, parallelism=res.nodes)
    else:
        job_spec.update(completions=1, parallelism=1)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def build_headless_service(job: FineTuneJob) -> dict[str, Any] | None:
    """The Service that gives the pods of a multi-node job stable DNS names; None for one node."""
    if job.spec.resources.nodes <= 1:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(job, c.ROLE_HEADLESS, name=headless_service_name(job)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": pod_labels(job),
            "ports": [{"name": "rendezvous", "port": c.MASTER_PORT, "targetPort": c.MASTER_PORT}],
        },
    }
