"""FineTuneJob: validate the data, train, keep checkpoints, report progress."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from kubetune import constants as c
from kubetune.api import bounds, grading
from kubetune.api.common import (
    HTTP_URL_PATTERN,
    CommonStatus,
    EnvVar,
    KubeModel,
    LocalObjectReference,
    ObjectMeta,
    ObjectName,
    Quantity,
    ResourcesSpec,
    SecretKeyRef,
    StatusModel,
    Uri,
    cel_rules,
    refuse_userinfo,
    rule,
)
from kubetune.api.judge import JudgeSpec
from kubetune.api.objectstorage import ExportSpec, ExportStatus, S3Spec
from kubetune.api.tracking import TrackingSpec, TrackingStatus

Method = Literal["sft", "dpo", "distillation", "rft", "pretraining"]
DatasetFormat = Literal["auto", "chat", "prompt-completion", "preference", "text", "reinforcement"]
AdapterType = Literal["lora", "qlora", "none"]
LrScheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"
]
GraderType = Literal["exact_match", "regex", "json_schema", "string_similarity", "judge"]


class FromJob(KubeModel):
    """Continue from an earlier FineTuneJob's result (continual fine-tuning)."""

    name: ObjectName = Field(description="Name of a FineTuneJob in the same namespace.")
    checkpoint: str = Field(
        default="best",
        min_length=1,
        max_length=bounds.CHECKPOINT_NAME_MAX,
        description="best, final, latest, or the name of one of its checkpoints (e.g. checkpoint-400).",
    )


class BaseModelSource(KubeModel):
    uri: Uri | None = Field(default=None, description="Where the base model is. Exactly one of uri or fromJob.")
    from_job: FromJob | None = Field(default=None, description="Start from another job's checkpoint.")
    revision: str | None = Field(
        default=None,
        max_length=bounds.REVISION_MAX,
        description="Hub revision (branch, tag or commit) for hf:// URIs.",
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding a Hugging Face token, exposed to the pod as HF_TOKEN (hf:// models). "
        "s3:// models sign in through spec.s3.",
    )
    trust_remote_code: bool = Field(default=False, description="Allow model code from the repository.")

    model_config = {
        "json_schema_extra": cel_rules(
            rule("has(self.uri) != has(self.fromJob)", "set exactly one of baseModel.uri or baseModel.fromJob")
        )
    }


class DataSource(KubeModel):
    uri: Uri = Field(description="A JSONL file: pvc://CLAIM/PATH, s3://BUCKET/KEY, file:// or a relative path.")


class DatasetSpec(KubeModel):
    train: DataSource = Field(description="Training examples (JSONL).")
    validation: DataSource | None = Field(default=None, description="Held-out examples for eval loss.")
    validation_split: float | None = Field(
        default=None, gt=0, lt=1, description="Hold out this fraction of train instead of a validation file."
    )
    format: DatasetFormat = Field(default="auto", description="Dataset format; auto detects it from the keys.")
    max_examples: int | None = Field(default=None, ge=1, description="Train on the first N examples only.")

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "!(has(self.validation) && has(self.validationSplit))",
                "set at most one of dataset.validation or dataset.validationSplit",
            )
        )
    }


class AdapterSpec(KubeModel):
    type: AdapterType = Field(default="lora", description="lora, qlora (4-bit base, needs a GPU) or none (full).")
    r: int = Field(default=16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(default=32, ge=1, description="LoRA alpha (scaling is alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: str = Field(
        default="all-linear",
        min_length=1,
        max_length=bounds.TARGET_MODULES_MAX,
        description="all-linear, or a comma-separated list of module names (q_proj,v_proj).",
    )


class Hyperparameters(KubeModel):
    epochs: float = Field(default=3, gt=0, le=1000, description="Passes over the training data.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.")
    batch_size: int = Field(default=8, ge=1, le=4096, description="Examples per device per step.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024, description="Steps per optimizer update.")
    learning_rate: float = Field(default=2.0e-4, gt=0, le=1, description="Peak learning rate.")
    lr_scheduler: LrScheduler = Field(default="cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Fraction of steps spent warming up.")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="AdamW weight decay.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping norm.")
    max_seq_length: int = Field(default=2048, ge=16, le=1048576, description="Tokens per sequence.")
    packing: bool = Field(default=True, description="Pack short examples into full sequences (padding-free).")
    completion_only_loss: bool = Field(default=True, description="SFT: compute loss on the answers only.")
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        default="auto", description="Trade compute for memory; auto enables it for large models."
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        default="auto", description="auto: bf16 where the GPU supports it, fp32 on CPU."
    )
    seed: int = Field(
        default=42,
        ge=0,
        le=2**32 - 1,
        description="Seed for data order and initialisation (0 to 4294967295, what numpy's generator takes).",
    )


class DpoSpec(KubeModel):
    beta: float = Field(default=0.1, gt=0, le=10, description="Strength of the KL constraint to the reference.")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(default="sigmoid", description="DPO loss.")
    # le 0.49, not lt 0.5: the API server checks an integer value (the default 0.0 travels as JSON 0)
    # against int64(maximum), and with an exclusive maximum of 0.5 that is "less than 0": it refused the CRD.
    label_smoothing: float = Field(
        default=0.0,
        ge=0,
        le=0.49,
        description="Assumed fraction of preference pairs whose labels are wrong (conservative/robust DPO).",
    )

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "self.lossType != 'robust' || self.labelSmoothing > 0.0",
                "lossType robust needs labelSmoothing > 0 (with 0 it is the sigmoid loss)",
                field_path=".labelSmoothing",
            )
        )
    }


class TeacherEndpoint(KubeModel):
    url: Annotated[str, refuse_userinfo("distillation.teacher.endpoint.apiKeySecretRef")] = Field(
        max_length=bounds.URI_MAX, pattern=HTTP_URL_PATTERN, description="Base URL of an OpenAI-compatible API (…/v1)."
    )
    model: str = Field(min_length=1, max_length=bounds.MODEL_NAME_MAX, description="Model name to request.")
    api_key_secret_ref: SecretKeyRef | None = Field(default=None, description="Secret key with the API key.")
    max_concurrent_requests: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Prompts in flight at the teacher at once while it labels the training data (once, by the "
        "first process; the answers are kept on the PVC as they come, so a restart asks only for the rest).",
    )


class Teacher(KubeModel):
    uri: Uri | None = Field(default=None, description="A local teacher model, loaded beside the student.")
    endpoint: TeacherEndpoint | None = Field(
        default=None, description="A teacher behind an API: it labels the prompts first, then SFT on its answers."
    )
    token_secret_ref: SecretKeyRef | None = Field(default=None, description="Token for an hf:// teacher.")

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "has(self.uri) != has(self.endpoint)",
                "set exactly one of distillation.teacher.uri or distillation.teacher.endpoint",
            )
        )
    }


class DistillationSpec(KubeModel):
    teacher: Teacher = Field(description="The model to learn from.")
    temperature: float = Field(default=1.0, gt=0, le=10, description="Softmax temperature of both models.")
    beta: float = Field(default=0.5, ge=0, le=1, description="Generalised JSD interpolation (0 forward KL, 1 reverse).")
    lmbda: float = Field(default=0.0, ge=0, le=1, description="Fraction of on-policy (student-generated) batches.")
    max_new_tokens: int = Field(default=256, ge=1, description="Answer length when the teacher labels prompts.")


class Grader(KubeModel):
    """A declared reward; no code from the spec is ever run."""

    type: GraderType = Field(description="exact_match, regex, json_schema, string_similarity or judge.")
    name: str | None = Field(
        default=None, max_length=bounds.GRADER_NAME_MAX, description="Name in metrics; default: the type."
    )
    field: str = Field(
        default="answer", min_length=1, max_length=bounds.FIELD_NAME_MAX, description="Reference field of each example."
    )
    pattern: str | None = Field(
        default=None, max_length=bounds.PATTERN_MAX, description="regex: the completion must match this pattern."
    )
    schema_: dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        description="json_schema: the completion must be JSON valid against this schema.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    judge: JudgeSpec | None = Field(
        default=None,
        description="judge: a model scores or labels each completion by a rubric (the example's field, when it "
        "has one, is shown as the reference).",
    )
    weight: float = Field(default=1.0, ge=0, description="Weight of this grader in the total reward.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        problem = grading.pattern_problem(pattern) if pattern is not None else None
        if problem:
            raise PydanticCustomError("grader_pattern", "{problem}", {"problem": problem})
        return pattern

    @field_validator("schema_")
    @classmethod
    def _usable_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        problem = grading.schema_problem(schema) if schema is not None else None
        if problem:
            raise PydanticCustomError("grader_schema", "{problem}", {"problem": problem})
        return schema

    model_config = {
        "json_schema_extra": cel_rules(
            rule("self.type != 'regex' || has(self.pattern)", "a regex grader needs pattern", field_path=".pattern"),
            rule(
                "self.type != 'json_schema' || has(self.schema)",
                "a json_schema grader needs schema",
                field_path=".schema",
            ),
            rule("self.type != 'judge' || has(self.judge)", "a judge grader needs judge", field_path=".judge"),
        )
    }


class RftSpec(KubeModel):
    graders: list[Grader] = Field(min_length=1, max_length=16, description="Rewards, summed by weight.")
    num_generations: int = Field(default=4, ge=2, le=64, description="Completions sampled per prompt.")
    max_completion_length: int = Field(default=256, ge=1, description="Tokens per sampled completion.")
    temperature: float = Field(default=1.0, gt=0, le=5, description="Sampling temperature.")
    beta: float = Field(default=0.0, ge=0, description="KL penalty to the reference model (0: none).")


class SelectBy(KubeModel):
    metric: str = Field(
        default="eval_loss",
        min_length=1,
        max_length=bounds.METRIC_NAME_MAX,
        description="Metric that ranks checkpoints.",
    )
    mode: Literal["min", "max"] = Field(default="min", description="Whether lower or higher is better.")


class CheckpointSpec(KubeModel):
    every: int = Field(default=100, ge=1, description="Save a checkpoint every N units.")
    unit: Literal["steps", "epochs"] = Field(default="steps", description="steps or epochs.")
    keep: int = Field(default=3, ge=1, le=100, description="Keep the best K checkpoints (plus the latest).")
    select_by: SelectBy = Field(default_factory=SelectBy, description="How the best checkpoint is chosen.")


class RetentionPolicy(KubeModel):
    """What happens to the PVC the operator created when its FineTuneJob is deleted (after StatefulSet's
    persistentVolumeClaimRetentionPolicy)."""

    when_deleted: Literal["Delete", "Retain"] = Field(
        default="Delete",
        description="Delete (default): the PVC is deleted with the job, but only once nothing else uses it: while "
        "a ModelDeployment serves from it, an Evaluation scores it or a FineTuneJob continues from it (fromJob or "
        "a pvc:// URI), it is kept, labelled kubetune.dev/retention=Delete with the users in the annotation "
        "kubetune.dev/retained-for, and deleted by the operator when the last of them goes. Retain: the PVC is "
        "always kept (labelled kubetune.dev/retention=Retain); delete it yourself. A new FineTuneJob of the same "
        "name never trains into a kept PVC: it waits (Stalled, PersistentVolumeClaimConflict) until the PVC is "
        "gone, or reuses it on purpose through storage.claimName. Never applies to storage.claimName, which the "
        "operator never deletes.",
    )


class StorageSpec(KubeModel):
    size: Quantity = Field(default="50Gi", description="Size of the PVC the operator creates.")
    storage_class_name: bounds.OptionalObjectName | None = Field(default=None, description="StorageClass of that PVC.")
    claim_name: ObjectName | None = Field(
        default=None, description="Use this existing PVC instead; the operator never deletes it."
    )
    access_modes: list[Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]] = Field(
        default_factory=lambda: ["ReadWriteOnce"], max_length=3, description="Access modes of the created PVC."
    )
    retention_policy: RetentionPolicy = Field(
        default_factory=RetentionPolicy,
        description="Whether the created PVC outlives the job: Delete once unused (default) or Retain.",
    )


class ServiceAccountSpec(KubeModel):
    """The per-run ServiceAccount the operator creates for the pods."""

    annotations: bounds.Annotations = Field(
        default_factory=dict,
        description="Annotations of that ServiceAccount, e.g. cloud workload identity for s3:// or gs:// data: "
        "eks.amazonaws.com/role-arn or iam.gke.io/gcp-service-account (at most 32).",
    )


class ShardingSpec(KubeModel):
    """How the model is spread over the GPUs of a run."""

    strategy: Literal["auto", "none", "fsdp"] = Field(
        default="auto",
        description="fsdp: shard parameters, gradients and optimizer state over all GPUs of the run (FSDP2, one "
        "fully_shard unit per decoder layer), for models that do not fit one GPU; none: every GPU holds the whole "
        "model (data parallel); auto: fsdp when the memory plan says the run does not fit one GPU, decided by the "
        "trainer at start from the model's config.json and the GPU's memory. Activation checkpointing follows "
        "hyperparameters.gradientCheckpointing.",
    )
    cpu_offload: bool = Field(
        default=False,
        description="fsdp: keep the parameter, gradient and optimizer shards in CPU memory and move them to the GPU "
        "per layer when used. Fits larger models in the same GPUs at a large cost in speed; needs resources.memory "
        "for them.",
    )


class TrainingResources(ResourcesSpec):
    """Compute of the training pods, and how the model is spread over their GPUs."""

    sharding: ShardingSpec = Field(
        default_factory=ShardingSpec, description="Sharding of the model over the GPUs (FSDP2) or data parallel."
    )


# Fields a user may change after the job has started. Everything else is frozen (CEL rule below).
MUTABLE_AFTER_START = ("suspend", "ttlSecondsAfterFinished")


class FineTuneJobSpec(KubeModel):
    method: Method = Field(default="sft", description="sft, dpo, distillation, rft or pretraining.")
    base_model: BaseModelSource = Field(description="The model to start from.")
    dataset: DatasetSpec = Field(description="Training and validation data.")
    adapter: AdapterSpec = Field(default_factory=AdapterSpec, description="LoRA, QLoRA or full fine-tuning.")
    freeze_layers: int = Field(default=0, ge=0, description="With adapter none: keep the first N layers frozen.")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters, description="Optimisation.")
    dpo: DpoSpec | None = Field(default=None, description="DPO settings (method dpo).")
    distillation: DistillationSpec | None = Field(default=None, description="Teacher (method distillation).")
    rft: RftSpec | None = Field(default=None, description="Graders (method rft).")
    checkpoints: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Checkpoint policy.")
    resources: TrainingResources = Field(
        default_factory=TrainingResources, description="GPUs, CPU, memory, nodes, and sharding over the GPUs."
    )
    queue_name: str | None = Field(
        default=None,
        max_length=bounds.DNS_LABEL_MAX,
        pattern=bounds.DNS_LABEL_PATTERN,
        description="Kueue LocalQueue (a DNS label: Kueue puts it in a label value); the Job is created "
        "suspended for Kueue.",
    )
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Where checkpoints are kept.")
    service_account: ServiceAccountSpec = Field(
        default_factory=ServiceAccountSpec, description="The trainer pods' ServiceAccount (its annotations)."
    )
    tracking: TrackingSpec | None = Field(
        default=None, description="Experiment tracking: MLflow (and/or Weights & Biases); the run id goes to status."
    )
    s3: S3Spec | None = Field(
        default=None,
        description="Endpoint, region and credentials for the s3:// URIs of this job (data, models, export).",
    )
    export: ExportSpec | None = Field(
        default=None,
        description="After training, write the chosen checkpoint with its tokenizer and a model card to s3:// or a "
        "Hugging Face Hub repository (done by the training pod; status.export says where and its digest).",
    )
    image: str = Field(
        default="", max_length=bounds.IMAGE_MAX, description="Trainer image; default: the operator's configured image."
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, max_length=bounds.PULL_SECRETS_MAX, description="Pull secrets."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=bounds.ENV_ITEMS_MAX,
        description=f"Extra environment of the trainer (at most {bounds.ENV_ITEMS_MAX} variables).",
    )
    suspend: bool = Field(default=False, description="Suspend (true) or resume (false) training.")
    backoff_limit: int = Field(default=3, ge=0, le=100, description="Retries; each resumes from a checkpoint.")
    active_deadline_seconds: int | None = Field(default=86400, ge=1, description="Give up after this long.")
    ttl_seconds_after_finished: int | None = Field(
        default=604800, ge=0, description="Delete the finished batch Job after this long (status is kept)."
    )

    model_config = {
        "json_schema_extra": cel_rules(
            rule("self.method == 'dpo' || !has(self.dpo)", "dpo is only valid with method dpo", field_path=".dpo"),
            rule(
                "self.method == 'distillation' ? has(self.distillation) : !has(self.distillation)",
                "method distillation needs the distillation section, and only it may have one",
                field_path=".distillation",
            ),
            rule(
                "self.method == 'rft' ? has(self.rft) : !has(self.rft)",
                "method rft needs the rft section with graders, and only it may have one",
                field_path=".rft",
            ),
            rule(
                "self.freezeLayers == 0 || self.adapter.type == 'none'",
                "freezeLayers applies to full fine-tuning: set adapter.type none or freezeLayers 0",
                field_path=".freezeLayers",
            ),
            rule(
                "!has(self.storage.claimName) || !has(self.storage.storageClassName)",
                "storage.storageClassName applies to a created PVC; it cannot be set with storage.claimName",
                field_path=".storage",
            ),
            rule(
                "!has(self.resources) || !has(self.resources.nodes) || self.resources.nodes <= 1"
                " || (has(self.storage) && (has(self.storage.claimName)"
                " || (has(self.storage.accessModes) && 'ReadWriteMany' in self.storage.accessModes)))",
                "resources.nodes > 1 runs pods on several nodes that all mount the checkpoint PVC: set "
                "storage.accessModes to [ReadWriteMany] (a StorageClass that supports it) or storage.claimName "
                "to a ReadWriteMany claim",
                field_path=".storage.accessModes",
            ),
            rule(
                "!has(self.adapter) || !has(self.adapter.type) || self.adapter.type != 'qlora'"
                " || !has(self.resources) || !has(self.resources.gpus) || self.resources.gpus > 0",
                "adapter.type qlora loads the base model in 4 bits with bitsandbytes, which needs a GPU: set "
                "resources.gpus to 1 or more, or use adapter.type lora",
                field_path=".resources.gpus",
            ),
        )
    }


class DataStatus(StatusModel):
    format: str | None = Field(default=None, description="Detected dataset format.")
    train_examples: int | None = Field(default=None, description="Valid training examples.")
    validation_examples: int | None = Field(default=None, description="Valid validation examples.")
    train_tokens: int | None = Field(default=None, description="Tokens in the training data.")
    warnings: list[str] = Field(default_factory=list, description="Things worth a look; training went on.")
    errors: list[str] = Field(default_factory=list, description="Line-numbered problems that stopped the job.")


class ProgressStatus(StatusModel):
    step: int | None = Field(default=None, description="Optimizer steps done.")
    total_steps: int | None = Field(default=None, description="Optimizer steps planned.")
    epoch: float | None = Field(default=None, description="Epochs done (fractional).")
    percent: int | None = Field(default=None, description="step / totalSteps in percent.")
    eta_seconds: int | None = Field(default=None, description="Estimated seconds left.")
    tokens_per_second: float | None = Field(default=None, description="Training throughput.")


class PromptFormatStatus(StatusModel):
    type: Literal["chat-template", "raw-text"] = Field(
        description="chat-template: trained on conversations, prompted through the chat template; raw-text: "
        "trained on string prompts joined to their completions, prompted with the raw string."
    )
    prefix: str | None = Field(
        default=None, description="raw-text: the special tokens the tokenizer put before each prompt (e.g. a BOS)."
    )


class CheckpointStatus(StatusModel):
    name: str = Field(description="Checkpoint name, e.g. checkpoint-400.")
    step: int | None = Field(default=None, description="Step it was saved at.")
    epoch: float | None = Field(default=None, description="Epoch it was saved at.")
    uri: str | None = Field(default=None, description="Where it is (pvc://...).")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Metrics at that step (losses; for rft: reward, rewards/<grader>)."
    )
    prompt_format: PromptFormatStatus | None = Field(
        default=None,
        description="How prompts were formatted in training; evaluation and serving prompt it the same way. "
        "Absent for checkpoints from before it was recorded: chat-template.",
    )


class OutputStatus(StatusModel):
    uri: str | None = Field(default=None, description="Where the job's output lives.")
    checkpoint: str | None = Field(default=None, description="The checkpoint the output points at (best).")


class MemoryPlanStatus(StatusModel):
    """The trainer's memory plan at start (kubetune.api.memoryplan), from the model's config.json and its GPU."""

    peak_bytes_per_device: int | None = Field(default=None, description="Planned peak memory of one device.")
    device_memory_bytes: int | None = Field(default=None, description="Memory of one device (the GPU, or the pod).")
    fits: bool | None = Field(default=None, description="Whether the planned peak fits the device.")
    sharding: str | None = Field(default=None, max_length=16, description="The layout planned: none or fsdp.")
    recommended_sharding: str | None = Field(default=None, max_length=16, description="none or fsdp.")
    gpu_hours: float | None = Field(default=None, description="Estimated GPU-hours of the run.")
    summary: str | None = Field(default=None, max_length=1024, description="The plan in one line.")
    suggestion: str | None = Field(default=None, max_length=1024, description="A layout that fits, when it does not.")


class FineTuneJobStatus(CommonStatus):
    phase: Literal["Pending", "Validating", "Queued", "Running", "Succeeded", "Failed", "Suspended"] | None = Field(
        default=None, description="Pending, Validating, Queued, Running, Succeeded, Failed or Suspended."
    )
    start_time: str | None = Field(default=None, description="When training started.")
    completion_time: str | None = Field(default=None, description="When the job finished.")
    data: DataStatus | None = Field(default=None, description="What the data validation found.")
    progress: ProgressStatus | None = Field(default=None, description="Training progress.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Latest metrics (trainLoss, evalLoss).")
    checkpoints: list[CheckpointStatus] = Field(default_factory=list, description="Kept checkpoints.")
    best_checkpoint: str | None = Field(default=None, description="Best checkpoint by checkpoints.selectBy.")
    output: OutputStatus | None = Field(default=None, description="The job's result.")
    base_model_uri: str | None = Field(
        default=None, description="The model training started from (baseModel.fromJob resolved to a checkpoint)."
    )
    export: ExportStatus | None = Field(default=None, description="Where spec.export wrote the model, and its digest.")
    tracking: TrackingStatus | None = Field(default=None, description="The experiment-tracking run of this job.")
    memory_plan: MemoryPlanStatus | None = Field(
        default=None, description="Per-device peak memory and GPU-hours, as the trainer planned them at start."
    )
    retries: int = Field(default=0, description="Pod failures counted against backoffLimit.")
    gpu_seconds: float | None = Field(default=None, description="GPU time consumed (GPUs x wall seconds).")


def _frozen_spec_rules() -> list[dict]:
    """`spec` may not change once the job has started, except MUTABLE_AFTER_START: transition rules.

    One rule per field, at the root because only there a rule sees `oldSelf.status.startTime` (a rule
    on a spec field sees that field alone), as Kueue's Workload freezes its fields once admitted: the
    refusal names the field (fieldPath), and each rule compares one bounded field, so its estimated
    cost stays small (tests/unit/api/test_cel_cost.py). A field with a default or a required one is
    always present after the API server's defaulting; only optional ones need the has() checks.
    """
    started = "has(oldSelf.status) && has(oldSelf.status.startTime)"
    out = []
    for name, f in FineTuneJobSpec.model_fields.items():
        k = f.alias or name
        if k in MUTABLE_AFTER_START:
            continue
        if f.is_required() or f.default is not None or f.default_factory is not None:
            same = f"self.spec.{k} == oldSelf.spec.{k}"
        else:
            same = (
                f"has(self.spec.{k}) == has(oldSelf.spec.{k})"
                f" && (!has(self.spec.{k}) || self.spec.{k} == oldSelf.spec.{k})"
            )
        out.append(
            rule(
                f"!({started}) || ({same})",
                f"{k} is immutable once the job has started (only suspend and ttlSecondsAfterFinished may "
                "change); create a new FineTuneJob, e.g. with baseModel.fromJob to continue from this one",
                field_path=f".spec.{k}",
                reason="FieldValueForbidden",
            )
        )
    return out


class FineTuneJob(KubeModel):
    api_version: Literal["kubetune.dev/v1alpha1"] = Field(default=c.API_VERSION, alias="apiVersion")
    kind: Literal["FineTuneJob"] = c.FINETUNEJOB
    metadata: ObjectMeta
    spec: FineTuneJobSpec
    status: FineTuneJobStatus | None = None

    model_config = {"json_schema_extra": cel_rules(*_frozen_spec_rules())}
