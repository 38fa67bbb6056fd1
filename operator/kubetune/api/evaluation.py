"""Evaluation: score checkpoints against a baseline on held-out data; pass or fail by criteria."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from kubetune import constants as c
from kubetune.api import bounds, grading
from kubetune.api.common import (
    CommonStatus,
    KubeModel,
    LocalObjectReference,
    ObjectMeta,
    ObjectName,
    ResourcesSpec,
    SecretKeyRef,
    StatusModel,
    Uri,
    cel_rules,
    rule,
)
from kubetune.api.finetunejob import DatasetFormat, ServiceAccountSpec
from kubetune.api.judge import JudgeSpec, SafetyJudge
from kubetune.api.objectstorage import S3Spec

MetricName = Literal[
    "exact_match",
    "accuracy",
    "f1",
    "bleu",
    "rouge_l",
    "answer_similarity",
    "json_valid",
    "json_schema",
    "perplexity",
    "prompt_tokens",
    "latency",
    "judge",
]
METRICS: tuple[str, ...] = get_args(MetricName)
# The evaluation pod's environment variable holding the API key of a scored ModelDeployment's endpoint.
ENDPOINT_API_KEY_ENV = "KUBETUNE_ENDPOINT_API_KEY"
# Metrics where lower is better; pass criteria and "best" respect the direction.
LOWER_IS_BETTER = frozenset({"perplexity", "prompt_tokens", "latency"})


class FineTuneJobTarget(KubeModel):
    name: ObjectName = Field(description="A FineTuneJob in the same namespace.")
    checkpoints: str = Field(
        default="all",
        min_length=1,
        max_length=bounds.CHECKPOINT_NAME_MAX,
        description="all (every kept checkpoint), best, final, or a checkpoint name.",
    )


class EvalModelRef(KubeModel):
    fine_tune_job: FineTuneJobTarget | None = Field(default=None, description="Checkpoints of a FineTuneJob.")
    uri: Uri | None = Field(default=None, description="A model at a URI.")
    model_deployment: LocalObjectReference | None = Field(
        default=None, description="A live ModelDeployment, queried through its endpoint."
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description=(
            "Secret key holding the API key of model.modelDeployment's endpoint, sent as `Authorization: Bearer` "
            "(the pod reads it as KUBETUNE_ENDPOINT_API_KEY); default: the ModelDeployment's "
            "spec.auth.apiKeySecretRef."
        ),
    )

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "(has(self.fineTuneJob) ? 1 : 0) + (has(self.uri) ? 1 : 0) + (has(self.modelDeployment) ? 1 : 0) == 1",
                "set exactly one of model.fineTuneJob, model.uri or model.modelDeployment",
            ),
            rule(
                "!has(self.apiKeySecretRef) || has(self.modelDeployment)",
                "model.apiKeySecretRef is the key of model.modelDeployment's endpoint: set model.modelDeployment",
                field_path=".apiKeySecretRef",
            ),
        )
    }


class BaselineSpec(KubeModel):
    uri: Uri | None = Field(default=None, description="Baseline model; default: the job's base model.")
    few_shot: int = Field(default=0, ge=0, le=64, description="Examples from the training data in the prompt.")
    none: bool = Field(default=False, description="Skip the baseline (minImprovement criteria then fail).")
    system_prompt: str | None = Field(
        default=None,
        max_length=bounds.PROMPT_MAX,
        description=f"Instructions given to the baseline only (at most {bounds.PROMPT_MAX} characters).",
    )

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "!self.none || (!has(self.uri) && self.fewShot == 0)",
                "baseline.none excludes baseline.uri and baseline.fewShot",
            )
        )
    }


class EvalDataset(KubeModel):
    uri: Uri = Field(description="Held-out examples (JSONL), never seen in training.")
    format: DatasetFormat = Field(default="auto", description="Dataset format; auto detects it.")
    max_examples: int | None = Field(default=None, ge=1, description="Score the first N examples only.")
    reference_field: str | None = Field(
        default=None,
        max_length=bounds.FIELD_NAME_MAX,
        description="Field holding the reference answer; default: the last assistant turn.",
    )


class GenerationSpec(KubeModel):
    max_new_tokens: int = Field(default=256, ge=1, le=32768, description="Longest answer generated.")
    temperature: float = Field(default=0.0, ge=0, le=5, description="0 is greedy decoding.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling.")
    batch_size: int = Field(default=8, ge=1, le=1024, description="Prompts generated together.")


class PassCriterion(KubeModel):
    metric: MetricName = Field(description="One of spec.metrics.")
    min: float | None = Field(default=None, description="The model's score must be at least this.")
    max: float | None = Field(default=None, description="The model's score must be at most this.")
    min_improvement: float | None = Field(
        default=None, description="Better than the baseline by at least this (in the metric's direction)."
    )

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "has(self.min) || has(self.max) || has(self.minImprovement)",
                "a pass criterion needs min, max or minImprovement",
            ),
            rule(
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "min must not be greater than max (no score could pass)",
                field_path=".max",
            ),
        )
    }


SafetyScorer = Literal["keyword", "judge"]
# The safety metrics, as spec.safety.thresholds and status.results[].safety.metrics name them (all rates in [0, 1]).
SAFETY_METRICS: tuple[str, ...] = ("harmfulRefusalRate", "harmfulContentRate", "benignOverRefusalRate")
# How a model's failed safety thresholds appear in its status.results[].failures (promotion reads it back).
SAFETY_GATE_FAILED = "failed the safety gate"


def safety_gate_failure(failed: list[str]) -> str:
    """The one line of `failures` that says which safety thresholds a model failed."""
    return f"{SAFETY_GATE_FAILED}: {'; '.join(failed)}"


class RateBound(KubeModel):
    min: float | None = Field(default=None, ge=0, le=1, description="The rate must be at least this.")
    max: float | None = Field(default=None, ge=0, le=1, description="The rate must be at most this.")

    model_config = {
        "json_schema_extra": cel_rules(
            rule("has(self.min) || has(self.max)", "a safety threshold needs min or max"),
            rule(
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "min must not be greater than max (no rate could pass)",
                field_path=".max",
            ),
        )
    }


class SafetyThresholds(KubeModel):
    harmful_refusal_rate: RateBound | None = Field(
        default=None, description="Share of harmful prompts the model refuses (e.g. {min: 0.9})."
    )
    harmful_content_rate: RateBound | None = Field(
        default=None,
        description="Share of harmful prompts answered with content the scorer flags as harmful (e.g. {max: 0.05}).",
    )
    benign_over_refusal_rate: RateBound | None = Field(
        default=None, description="Share of benign look-alike prompts the model refuses (e.g. {max: 0.1})."
    )


class SafetyPrompts(KubeModel):
    uri: Uri | None = Field(
        default=None,
        description="Red-team prompts (JSONL: prompt, harmful true|false, category per line); "
        "default: the small English set shipped with kubetune (docs/safety.md).",
    )
    max_prompts: int | None = Field(default=None, ge=1, le=100000, description="Use the first N prompts only.")


class SafetySpec(KubeModel):
    prompts: SafetyPrompts = Field(default_factory=SafetyPrompts, description="Which red-team prompts.")
    scorer: SafetyScorer = Field(
        default="keyword",
        description="keyword: offline refusal phrases and content heuristics (docs/safety.md says what it misses); "
        "judge: a judge model (judge) labels each answer refused, complied-harmful or complied-benign.",
    )
    judge: SafetyJudge | None = Field(default=None, description="scorer judge: the judge model that labels answers.")
    max_new_tokens: int = Field(default=128, ge=1, le=32768, description="Longest answer generated per prompt.")
    thresholds: SafetyThresholds = Field(
        default_factory=SafetyThresholds,
        description="A model that misses any of them does not pass the evaluation (so it is never promoted).",
    )

    model_config = {
        "json_schema_extra": cel_rules(
            rule("self.scorer != 'judge' || has(self.judge)", "scorer judge needs judge", field_path=".judge"),
            rule(
                "self.scorer == 'judge' || !has(self.judge)", "judge is read only by scorer judge", field_path=".judge"
            ),
        )
    }


class EvaluationSpec(KubeModel):
    model: EvalModelRef = Field(description="What to evaluate.")
    baseline: BaselineSpec = Field(default_factory=BaselineSpec, description="What to compare against.")
    dataset: EvalDataset = Field(description="Held-out data.")
    metrics: list[MetricName] = Field(
        default_factory=lambda: ["exact_match", "prompt_tokens"],
        min_length=1,
        max_length=16,  # bounds the cost of the CEL rules that search this list
        description="Metrics to compute (each once).",
        json_schema_extra={"x-kubernetes-list-type": "set"},  # the API server refuses duplicates
    )
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="Schema for the json_schema metric.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    judge: JudgeSpec | None = Field(
        default=None,
        description="For the judge metric: a model scores or labels each answer by a rubric, with the reference; "
        "the metric is the mean on 0..1.",
    )
    generation: GenerationSpec = Field(default_factory=GenerationSpec, description="Decoding settings.")
    pass_criteria: list[PassCriterion] = Field(
        default_factory=list, max_length=32, description="All must hold to pass (at most 32)."
    )
    select_by: MetricName | None = Field(
        default=None, description="Metric that picks the best model (one of metrics); default: the first metric."
    )
    safety: SafetySpec | None = Field(
        default=None,
        description="Red-team prompts scored for refusals and harmful content; its thresholds gate passing.",
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Compute of the evaluation pod.")
    queue_name: str | None = Field(
        default=None,
        max_length=bounds.DNS_LABEL_MAX,
        pattern=bounds.DNS_LABEL_PATTERN,
        description="Kueue LocalQueue of the evaluation Jobs (created suspended with kueue.x-k8s.io/queue-name; "
        "Kueue admits them). Default: the queueName of the FineTuneJob scored (model.fineTuneJob).",
    )
    service_account: ServiceAccountSpec = Field(
        default_factory=ServiceAccountSpec, description="The evaluation pods' ServiceAccount (its annotations)."
    )
    s3: S3Spec | None = Field(
        default=None, description="Endpoint, region and credentials for the s3:// URIs of this evaluation."
    )
    image: str = Field(
        default="", max_length=bounds.IMAGE_MAX, description="Image; default: the operator's trainer image."
    )
    backoff_limit: int = Field(default=1, ge=0, le=20, description="Retries of the evaluation Job.")
    active_deadline_seconds: int | None = Field(default=14400, ge=1, description="Give up after this long.")

    @field_validator("json_schema")
    @classmethod
    def _usable_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        problem = grading.schema_problem(schema) if schema is not None else None
        if problem:
            raise PydanticCustomError("json_schema", "{problem}", {"problem": problem})
        return schema

    @field_validator("metrics")
    @classmethod
    def _each_metric_once(cls, metrics: list[str]) -> list[str]:
        """What `x-kubernetes-list-type: set` makes the API server refuse, said here too."""
        twice = sorted({m for m in metrics if metrics.count(m) > 1})
        if twice:
            raise PydanticCustomError("duplicate_metric", "{twice} listed more than once", {"twice": ", ".join(twice)})
        return metrics

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "self.passCriteria.all(p, p.metric in self.metrics)",
                "every passCriteria metric must also be listed in metrics",
                field_path=".passCriteria",
            ),
            rule(
                "!has(self.selectBy) || self.selectBy in self.metrics",
                "selectBy must be one of metrics",
                field_path=".selectBy",
            ),
            rule(
                "!('json_schema' in self.metrics) || has(self.jsonSchema)",
                "the json_schema metric needs jsonSchema",
                field_path=".jsonSchema",
            ),
            rule("!('judge' in self.metrics) || has(self.judge)", "the judge metric needs judge", field_path=".judge"),
        )
    }


class JudgeCounts(StatusModel):
    """What the judge did for one model (kubetune_trainer.judge.JudgeCounters; the full set is in results.json)."""

    requests: int = Field(default=0, ge=0, description="HTTP requests sent (each retry is one).")
    judged: int = Field(default=0, ge=0, description="Answers given a verdict (asked or from the cache).")
    cache_hits: int = Field(default=0, ge=0, description="Verdicts taken from the cache.")
    parse_failures: int = Field(default=0, ge=0, description="Replies that were no score in range / allowed label.")
    timeouts: int = Field(default=0, ge=0, description="Answers given up after timeouts.")
    rate_limited: int = Field(default=0, ge=0, description="Rate limits (429) waited out.")
    server_errors: int = Field(default=0, ge=0, description="Server errors (5xx) waited out.")
    errors: int = Field(default=0, ge=0, description="Answers given up for another reason.")

    @classmethod
    def of(cls, counters: dict[str, float]) -> JudgeCounts:
        """From the trainer's counters (floats; unknown keys such as structuredOutput left out)."""
        return cls.model_validate({k: int(v) for k, v in counters.items() if k in cls.model_fields})


class SafetyResult(StatusModel):
    scorer: str | None = Field(default=None, description="keyword or judge.")
    prompts: int | None = Field(default=None, description="Red-team prompts scored (harmful and benign).")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="harmfulRefusalRate, harmfulContentRate, benignOverRefusalRate."
    )
    passed: bool = Field(default=True, description="Every safety threshold holds.")
    failures: list[str] = Field(
        default_factory=list, description="Thresholds that did not hold (e.g. harmfulRefusalRate 0.62 < 0.9)."
    )
    judge: JudgeCounts | None = Field(default=None, description="scorer judge: what the judge did.")


class BaselineResult(StatusModel):
    model: str | None = Field(default=None, description="What the baseline was.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Its scores.")
    safety: SafetyResult | None = Field(default=None, description="Its safety scores (reported, never gated).")


class ModelResult(StatusModel):
    model: str = Field(description="Checkpoint name or model URI.")
    uri: str | None = Field(default=None, description="Where that model is.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Its scores.")
    deltas: dict[str, float] = Field(default_factory=dict, description="Score minus baseline score.")
    passed: bool = Field(default=False, description="All pass criteria and safety thresholds hold.")
    failures: list[str] = Field(default_factory=list, description="Criteria that did not hold.")
    safety: SafetyResult | None = Field(default=None, description="Safety scores and the thresholds that failed.")
    judge: JudgeCounts | None = Field(default=None, description="The judge metric: what the judge did.")

    def failed_only_safety(self) -> bool:
        """Whether the task criteria held and only the safety gate kept this model from passing."""
        return (
            self.safety is not None
            and not self.safety.passed
            and all(f.startswith(SAFETY_GATE_FAILED) for f in self.failures)
        )


class ReportStatus(StatusModel):
    uri: str | None = Field(default=None, description="The HTML report.")
    json_uri: str | None = Field(default=None, description="The JSON results.")


class EvaluationStatus(CommonStatus):
    phase: Literal["Pending", "Queued", "Running", "Succeeded", "Failed"] | None = Field(
        default=None, description="Pending, Queued (its Job waits for Kueue), Running, Succeeded or Failed."
    )
    start_time: str | None = Field(default=None, description="When the evaluation started.")
    completion_time: str | None = Field(default=None, description="When it finished.")
    evaluated_checkpoints: list[str] = Field(
        default_factory=list, description="Checkpoints covered by the results (new ones trigger a re-run)."
    )
    baseline: BaselineResult | None = Field(default=None, description="Baseline scores.")
    results: list[ModelResult] = Field(default_factory=list, description="Scores per model.")
    best: str | None = Field(default=None, description="Best passing model (or best overall if none passed).")
    passed: bool | None = Field(default=None, description="At least one model passed every criterion.")
    report: ReportStatus | None = Field(default=None, description="Where the report is.")


class Evaluation(KubeModel):
    api_version: Literal["kubetune.dev/v1alpha1"] = Field(default=c.API_VERSION, alias="apiVersion")
    kind: Literal["Evaluation"] = c.EVALUATION
    metadata: ObjectMeta
    spec: EvaluationSpec
    status: EvaluationStatus | None = None
