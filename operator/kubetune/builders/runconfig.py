"""Run configs from resources: what the trainer image is told to do, for pods and local runs alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from kubetune.api.common import pinned_uri
from kubetune.api.evaluation import Evaluation, EvaluationSpec
from kubetune.api.finetunejob import CheckpointStatus, FineTuneJob, FineTuneJobSpec, FineTuneJobStatus
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.api.runconfig import (
    EvalRunConfig,
    EvalTarget,
    Identity,
    ProgressSink,
    ServeRunConfig,
    StorageMap,
    TrainRunConfig,
)
from kubetune.api.tracking import EvalTracking
from kubetune.builders.names import checkpoint_uri, job_output_uri
from kubetune.errors import UnresolvedReference

TEACHER_API_KEY_ENV = "KUBETUNE_TEACHER_API_KEY"
FINAL = "final"


class JudgeNotReady(UnresolvedReference):
    """A judge names a ModelDeployment that does not exist yet or does not serve yet: the run waits for it."""


@dataclass(frozen=True)
class JudgeDeployment:
    """A ModelDeployment a spec's judge is served by, and the field that names it."""

    field: str
    name: str


def judge_deployments(spec: FineTuneJobSpec | EvaluationSpec) -> list[JudgeDeployment]:
    """The ModelDeployments the judges a run uses name (RFT judge graders; the judge metric; the safety judge)."""
    out: list[JudgeDeployment] = []
    if isinstance(spec, FineTuneJobSpec):
        for i, grader in enumerate(spec.rft.graders if spec.rft and spec.method == "rft" else []):
            md = grader.judge.endpoint.model_deployment if grader.type == "judge" and grader.judge else None
            if md:
                out.append(JudgeDeployment(f"spec.rft.graders[{i}].judge.endpoint.modelDeployment", md.name))
        return out
    if spec.judge and "judge" in spec.metrics and spec.judge.endpoint.model_deployment:
        out.append(JudgeDeployment("spec.judge.endpoint.modelDeployment", spec.judge.endpoint.model_deployment.name))
    safety = spec.safety
    if safety and safety.scorer == "judge" and safety.judge and safety.judge.endpoint.model_deployment:
        md = safety.judge.endpoint.model_deployment
        out.append(JudgeDeployment("spec.safety.judge.endpoint.modelDeployment", md.name))
    return out


def resolve_judge_endpoints(
    spec: FineTuneJobSpec | EvaluationSpec, deployments: Mapping[str, ModelDeployment | None]
) -> dict[str, str]:
    """name -> status.endpoint of each ModelDeployment the spec's judges name, from `deployments` (as read by
    the caller, None or absent: not found). Raises JudgeNotReady, naming the field, while one is missing or
    not Ready with an endpoint."""
    out: dict[str, str] = {}
    for ref in judge_deployments(spec):
        md = deployments.get(ref.name)
        if md is None:
            raise JudgeNotReady(f"{ref.field}: waiting for ModelDeployment {ref.name!r} to serve; it does not exist")
        status = md.status
        phase = status.phase if status else None
        if status is None or phase != "Ready" or not status.endpoint:
            now = f"it is {phase}" if phase else "it has not started"
            raise JudgeNotReady(f"{ref.field}: waiting for ModelDeployment {ref.name!r} to be Ready; {now}")
        out[ref.name] = status.endpoint
    return out


def _judge_endpoints(spec: FineTuneJobSpec | EvaluationSpec, given: Mapping[str, str] | None) -> dict[str, str]:
    """The endpoints of the spec's judge ModelDeployments from `given`; JudgeNotReady when one is not there."""
    given = given or {}
    out: dict[str, str] = {}
    for ref in judge_deployments(spec):
        if not given.get(ref.name):
            raise JudgeNotReady(f"{ref.field}: ModelDeployment {ref.name!r} has no endpoint yet")
        out[ref.name] = given[ref.name]
    return out


def identity(obj: FineTuneJob | Evaluation | ModelDeployment) -> Identity:
    meta = obj.metadata
    return Identity(name=meta.name, namespace=meta.namespace or "default", uid=meta.uid, generation=meta.generation)


def resolve_checkpoint(job: FineTuneJob, which: str) -> CheckpointStatus | None:
    """`best`, `final`, `latest` or a checkpoint name -> that checkpoint of a job, from its status.

    `best` falls back to `final` when no checkpoint was ranked; None when the job has nothing yet.
    """
    status = job.status or FineTuneJobStatus()
    by_name = {cp.name: cp for cp in status.checkpoints}
    final = by_name.get(FINAL) or (
        CheckpointStatus(name=FINAL, uri=checkpoint_uri(job, FINAL)) if status.phase == "Succeeded" else None
    )
    if which == "best":
        best = status.best_checkpoint or (status.output.checkpoint if status.output else None)
        return by_name.get(best) if best in by_name else final
    if which == FINAL:
        return final
    if which == "latest":
        ranked = [(cp.step, cp) for cp in status.checkpoints if cp.step is not None]
        return max(ranked, key=lambda pair: pair[0])[1] if ranked else final
    return by_name.get(which)


def checkpoint_location(job: FineTuneJob, cp: CheckpointStatus) -> str:
    return cp.uri or checkpoint_uri(job, cp.name)


def train_run_config(
    job: FineTuneJob,
    *,
    storage: StorageMap,
    output_dir: str,
    progress: ProgressSink,
    source_checkpoint_uri: str | None = None,
    judge_endpoints: Mapping[str, str] | None = None,
) -> TrainRunConfig:
    """The trainer's config; `source_checkpoint_uri` is the resolved `baseModel.fromJob` checkpoint,
    `judge_endpoints` the endpoints of the judge ModelDeployments (`resolve_judge_endpoints`)."""
    spec = job.spec
    base = spec.base_model.uri or source_checkpoint_uri
    if base is None:
        source = spec.base_model.from_job.name if spec.base_model.from_job else None
        raise UnresolvedReference(f"spec.baseModel.fromJob {source!r} is not resolved yet")
    endpoint = spec.distillation.teacher.endpoint if spec.distillation else None
    return TrainRunConfig(
        job=identity(job),
        spec=spec,
        base_model_uri=base,
        output_dir=output_dir,
        output_uri=job_output_uri(job),
        storage=storage,
        progress=progress,
        teacher_api_key_env=TEACHER_API_KEY_ENV if endpoint and endpoint.api_key_secret_ref else None,
        sharding=None if spec.resources.sharding.strategy == "auto" else spec.resources.sharding.strategy,
        judge_endpoints=_judge_endpoints(spec, judge_endpoints),
    )


def base_model_of(job: FineTuneJob) -> str | None:
    """The model a job started from (hf:// pinned to spec.baseModel.revision), or for fromJob the checkpoint
    recorded in status: what an adapter checkpoint of this job must be loaded onto."""
    if job.spec.base_model.uri:
        return pinned_uri(job.spec.base_model.uri, job.spec.base_model.revision)
    return job.status.base_model_uri if job.status else None


def eval_targets(evaluation: Evaluation, job: FineTuneJob | None, endpoint: str | None = None) -> list[EvalTarget]:
    """What an Evaluation scores; raises UnresolvedReference while there is nothing to score yet."""
    ref = evaluation.spec.model
    if ref.uri:
        return [EvalTarget(name=PurePosixPath(ref.uri.rstrip("/")).name or ref.uri, uri=ref.uri)]
    if ref.model_deployment:
        if not endpoint:
            raise UnresolvedReference(f"ModelDeployment {ref.model_deployment.name!r} has no endpoint yet")
        return [EvalTarget(name=ref.model_deployment.name, endpoint=endpoint, endpoint_model=ref.model_deployment.name)]
    assert ref.fine_tune_job is not None
    if job is None:
        raise UnresolvedReference(f"FineTuneJob {ref.fine_tune_job.name!r} not found")
    which = ref.fine_tune_job.checkpoints
    status = job.status or FineTuneJobStatus()
    if which == "all":
        # `final` is the model after the last step: when a kept checkpoint has that step, it is the same model.
        saved_steps = {cp.step for cp in status.checkpoints if cp.name != FINAL and cp.step is not None}
        cps = [cp for cp in status.checkpoints if not (cp.name == FINAL and cp.step in saved_steps)]
        cps = cps or [cp for cp in [resolve_checkpoint(job, FINAL)] if cp]
    else:
        cps = [cp for cp in [resolve_checkpoint(job, which)] if cp]
    if not cps:
        raise UnresolvedReference(f"FineTuneJob {job.metadata.name!r} has no checkpoint {which!r} yet")
    base = base_model_of(job)
    return [EvalTarget(name=cp.name, uri=checkpoint_location(job, cp), base_model_uri=base) for cp in cps]


def eval_run_config(
    evaluation: Evaluation,
    *,
    job: FineTuneJob | None,
    storage: StorageMap,
    output_dir: str,
    output_uri: str | None,
    progress: ProgressSink,
    endpoint: str | None = None,
    judge_endpoints: Mapping[str, str] | None = None,
) -> EvalRunConfig:
    """`endpoint`: the scored ModelDeployment's; `judge_endpoints`: the judges' (`resolve_judge_endpoints`)."""
    spec = evaluation.spec
    baseline = None
    if not spec.baseline.none:
        uri = spec.baseline.uri or (base_model_of(job) if job else None)
        if uri is None:
            raise UnresolvedReference("spec.baseline: set baseline.uri (or baseline.none) when the model is not a job")
        baseline = EvalTarget(name="baseline", uri=uri)
    few_shot_source = job.spec.dataset.train.uri if job and spec.baseline.few_shot else None
    return EvalRunConfig(
        job=identity(evaluation),
        spec=spec,
        targets=eval_targets(evaluation, job, endpoint),
        baseline=baseline,
        few_shot_source_uri=few_shot_source,
        tracking=eval_tracking(job),
        judge_endpoints=_judge_endpoints(spec, judge_endpoints),
        storage=storage,
        output_dir=output_dir,
        output_uri=output_uri,
        progress=progress,
    )


def eval_tracking(job: FineTuneJob | None) -> EvalTracking | None:
    """The job's MLflow run, once its trainer has recorded one in status; None otherwise."""
    mlflow = job.spec.tracking.mlflow if job is not None and job.spec.tracking else None
    run_id = job.status.tracking.run_id if job is not None and job.status and job.status.tracking else None
    return EvalTracking(uri=mlflow.uri, run_id=run_id) if mlflow and run_id else None


def serve_run_config(
    deployment: ModelDeployment,
    *,
    model_uri: str,
    base_model_uri: str | None,
    storage: StorageMap,
    output_dir: str,
    host: str = "0.0.0.0",
    port: int = 8000,
) -> ServeRunConfig:
    spec = deployment.spec
    return ServeRunConfig(
        job=identity(deployment),
        model_uri=model_uri,
        base_model_uri=base_model_uri,
        served_model_name=spec.served_model_name or deployment.metadata.name,
        storage=storage,
        output_dir=output_dir,
        host=host,
        port=port,
        max_model_len=spec.max_model_len,
    )
