"""The workload of an Evaluation: a batch Job from the shared image, its run config, its identity.

The evaluation pod reads checkpoints and data read-only (`/mnt/pvc/CLAIM`), writes its report into
`evaluations/<evaluation>` on the FineTuneJob's claim (mounted a second time, writable, at
/mnt/kubetune), and patches `results/baseline/best/passed/report` of its own Evaluation (the only thing
its Role allows). The operator owns phase, conditions, times and `evaluatedCheckpoints` (kubetune.status.evaluation).

Each run scores one set of models; the Job's name carries a hash of that set and of the spec
generation, so new checkpoints (or an edited spec) make a new Job rather than a mutated one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from kubetune import constants as c
from kubetune.api.common import SecretKeyRef
from kubetune.api.evaluation import ENDPOINT_API_KEY_ENV, Evaluation
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.judge import EVAL_API_KEY_ENV, SAFETY_API_KEY_ENV
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.api.runconfig import EvalRunConfig, EvalTarget, ProgressSink
from kubetune.builders import names, objectstorage, pods
from kubetune.builders.meta import Propagation, child_metadata, propagate
from kubetune.builders.pods import PodSettings
from kubetune.builders.rbac import build_status_rbac, runner_name
from kubetune.builders.runconfig import eval_run_config
from kubetune.builders.tracking import tracking_env
from kubetune.builders.training import RUN_CONFIG_PATH, pod_failure_policy, pod_storage_map, runner_env

EVAL_COMMAND = ["kubetune-trainer", "evaluate", "--config", RUN_CONFIG_PATH]
EVAL_CONTAINER = "evaluate"
EVAL_RUNNER_SUFFIX = f"{c.ROLE_EVAL}-{c.ROLE_RUNNER}"
SCRATCH_OUTPUT = "/tmp/kubetune-eval"  # no job claim (model.uri): the report stays in the pod, results in status


# --- Names and locations ---


def run_digest(evaluation: Evaluation, targets: list[EvalTarget]) -> str:
    """8 hex characters identifying one run: the spec generation and the models scored."""
    key = "|".join(
        [str(evaluation.metadata.generation or 0), *sorted(f"{t.name}={t.uri or t.endpoint}" for t in targets)]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def eval_job_name(evaluation: Evaluation, targets: list[EvalTarget]) -> str:
    return names.child_name(evaluation.metadata.name, f"{c.ROLE_EVAL}-{run_digest(evaluation, targets)}")


def service_account_name(evaluation: Evaluation) -> str:
    """`<name>-eval-runner`: distinct from the `<name>-runner` of a FineTuneJob of the same name."""
    return runner_name(evaluation, EVAL_RUNNER_SUFFIX)


def labels_of_runs(evaluation_name: str) -> dict[str, str]:
    """Labels of every evaluation Job (and its pods) of one Evaluation: how superseded runs are found."""
    return names.labels(c.LABEL_EVALUATION, evaluation_name, c.ROLE_EVAL)


def job_labels(evaluation: Evaluation) -> dict[str, str]:
    return labels_of_runs(evaluation.metadata.name)


def output_uri(evaluation: Evaluation, job: FineTuneJob | None) -> str | None:
    """`pvc://<job claim>/[kubetune/<job>/]evaluations/<evaluation>`; None without a FineTuneJob."""
    if job is None:
        return None
    folder = PurePosixPath(names.job_output_path(job)).parent / "evaluations" / evaluation.metadata.name
    return f"pvc://{names.job_claim_name(job)}/{folder}".replace("/./", "/")


def _writable_output_dir(evaluation: Evaluation, job: FineTuneJob | None) -> str:
    """The output folder inside the pod: on the writable mount of the job's claim (/mnt/kubetune)."""
    uri = output_uri(evaluation, job)
    if uri is None or job is None:
        return SCRATCH_OUTPUT
    inside = uri.removeprefix(f"pvc://{names.job_claim_name(job)}/")
    return f"{c.DATA_MOUNT}/{inside}"


# --- Manifests ---


def run_config(
    evaluation: Evaluation,
    job: FineTuneJob | None,
    settings: PodSettings | None = None,
    endpoint: str | None = None,
    judge_endpoints: Mapping[str, str] | None = None,
) -> EvalRunConfig:
    """The run config of the evaluation pod; raises UnresolvedReference while there is nothing to score
    (JudgeNotReady while a judge's ModelDeployment does not serve)."""
    settings = settings or PodSettings()
    return eval_run_config(
        evaluation,
        job=job,
        storage=pod_storage_map(),
        output_dir=_writable_output_dir(evaluation, job),
        output_uri=output_uri(evaluation, job),
        progress=ProgressSink(backend="kubernetes", min_interval_seconds=settings.progress_interval_seconds),
        endpoint=endpoint,
        judge_endpoints=judge_endpoints,
    )


def endpoint_api_key_ref(evaluation: Evaluation, deployment: ModelDeployment | None) -> SecretKeyRef | None:
    """The Secret key of the scored endpoint's API key: `spec.model.apiKeySecretRef`, else the scored
    ModelDeployment's own `spec.auth.apiKeySecretRef`; None when neither asks for a key."""
    model = evaluation.spec.model
    if model.model_deployment is None:
        return None
    if model.api_key_secret_ref is not None:
        return model.api_key_secret_ref
    if deployment is not None and deployment.spec.auth is not None:
        return deployment.spec.auth.api_key_secret_ref
    return None


def build_rbac(evaluation: Evaluation) -> list[dict[str, Any]]:
    """The evaluation pod's identity `<evaluation>-eval-runner`: get/patch of this Evaluation's status only."""
    return build_status_rbac(evaluation, EVAL_RUNNER_SUFFIX)


def build_config_map(evaluation: Evaluation, config: EvalRunConfig) -> dict[str, Any]:
    """The run config, named like the Job it belongs to (so a running Job never sees a later run's config)."""
    name = eval_job_name(evaluation, config.targets)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(evaluation, c.ROLE_EVAL, name=name),
        "data": {c.RUN_CONFIG_FILE: config.dump()},
    }


def _uris(config: EvalRunConfig) -> list[str | None]:
    return [
        *(t.uri for t in config.targets),
        *(t.base_model_uri for t in config.targets),
        config.baseline.uri if config.baseline else None,
        config.spec.dataset.uri,
        config.few_shot_source_uri,
        config.spec.safety.prompts.uri if config.spec.safety else None,
    ]


def build_eval_job(
    evaluation: Evaluation,
    job: FineTuneJob | None,
    config: EvalRunConfig,
    settings: PodSettings | None = None,
    endpoint_key: SecretKeyRef | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that scores `config.targets`; owned by the Evaluation. `endpoint_key`: the scored
    endpoint's API key (endpoint_api_key_ref), given to the pod by secretKeyRef only."""
    settings = settings or PodSettings()
    spec, res = evaluation.spec, evaluation.spec.resources
    name = eval_job_name(evaluation, config.targets)
    claims = pods.pvc_claims(_uris(config))
    volumes, mounts = pods.claim_volumes(claims)
    job_claim = names.job_claim_name(job) if job is not None else None
    if job_claim is not None:
        # The job's claim: read-only where the checkpoints are read, writable at /mnt/kubetune for the report.
        volumes = [v for v in volumes if v["name"] != pods.volume_name(job_claim)]
        mounts = [m for m in mounts if m["name"] != pods.volume_name(job_claim)]
        vol = pods.volume_name(job_claim)
        volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": job_claim}})
        mounts.append({"name": vol, "mountPath": f"{c.PVC_MOUNT_ROOT}/{job_claim}", "readOnly": True})
        mounts.append({"name": vol, "mountPath": c.DATA_MOUNT})
    scratch_vols, scratch_mounts = pods.scratch_volumes()
    env = runner_env(evaluation.metadata.name)
    if job is not None and job.spec.base_model.token_secret_ref:
        env.append(pods.secret_env(c.ENV_HF_TOKEN, job.spec.base_model.token_secret_ref))
    env += objectstorage.s3_env(spec.s3 or (job.spec.s3 if job is not None else None))
    if spec.judge and spec.judge.api_key_secret_ref:
        env.append(pods.secret_env(EVAL_API_KEY_ENV, spec.judge.api_key_secret_ref))
    if spec.safety and spec.safety.judge and spec.safety.judge.api_key_secret_ref:
        env.append(pods.secret_env(SAFETY_API_KEY_ENV, spec.safety.judge.api_key_secret_ref))
    if endpoint_key is not None:
        env.append(pods.secret_env(ENDPOINT_API_KEY_ENV, endpoint_key))
    if job is not None and config.tracking is not None:  # the evaluator logs into the job's run
        env += tracking_env(job.spec.tracking)
    container = {
        "name": EVAL_CONTAINER,
        "image": spec.image or (job.spec.image if job is not None else "") or settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(EVAL_COMMAND),
        "env": env,
        "resources": pods.container_resources(res),
        "volumeMounts": [
            {"name": "run-config", "mountPath": c.RUN_CONFIG_MOUNT, "readOnly": True},
            *mounts,
            *scratch_mounts,
        ],
        "securityContext": pods.container_security_context(),
        **pods.termination_message(),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account_name(evaluation),
        "automountServiceAccountToken": True,
        "securityContext": pods.pod_security_context(settings),
        "containers": [container],
        "volumes": [{"name": "run-config", "configMap": {"name": name}}, *volumes, *scratch_vols],
        **pods.scheduling(res),
    }
    if job is not None and job.spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s.name} for s in job.spec.image_pull_secrets]
    meta = child_metadata(evaluation, c.ROLE_EVAL, name=name)
    meta["annotations"] = {c.ANNOTATION_EVALUATED_MODELS: ",".join(t.name for t in config.targets)}
    queue = queue_name(evaluation, job)
    if queue:
        meta["labels"][c.LABEL_KUEUE_QUEUE] = queue
    job_spec: dict[str, Any] = {
        # Created suspended for Kueue, which resumes it on admission; the operator never does.
        "suspend": bool(queue),
        "backoffLimit": spec.backoff_limit,
        "completions": 1,
        "parallelism": 1,
        "podFailurePolicy": {"rules": [pod_failure_policy()["rules"][0]]},  # preemption does not use up retries
        "podReplacementPolicy": "Failed",
        "template": {"metadata": {"labels": job_labels(evaluation)}, "spec": pod_spec},
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def queue_name(evaluation: Evaluation, job: FineTuneJob | None) -> str | None:
    """The Kueue LocalQueue of the evaluation Jobs: `spec.queueName`, else that of the FineTuneJob scored."""
    return evaluation.spec.queue_name or (job.spec.queue_name if job is not None else None)


def build_children(
    evaluation: Evaluation,
    job: FineTuneJob | None,
    config: EvalRunConfig,
    settings: PodSettings | None = None,
    propagation: Propagation | None = None,
    endpoint_key: SecretKeyRef | None = None,
) -> list[dict[str, Any]]:
    """[ServiceAccount, Role, RoleBinding, ConfigMap, Job] of one run, in creation order (the Job last), with
    the labels and annotations the Evaluation passes on."""
    built = [
        *build_rbac(evaluation),
        build_config_map(evaluation, config),
        build_eval_job(evaluation, job, config, settings, endpoint_key),
    ]
    return [m for m in propagate(built, evaluation, propagation) if m is not None]


def evaluated_models(batch_job: dict[str, Any]) -> list[str]:
    """The models a Job scored (from its annotation)."""
    value = ((batch_job.get("metadata") or {}).get("annotations") or {}).get(c.ANNOTATION_EVALUATED_MODELS, "")
    return [v for v in value.split(",") if v]
