"""ModelDeployment: serve the best passing checkpoint behind an OpenAI-compatible endpoint."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from kubetune import constants as c
from kubetune.api import bounds
from kubetune.api.common import (
    CommonStatus,
    EnvVar,
    KubeModel,
    LocalObjectReference,
    ObjectMeta,
    ObjectName,
    Quantity,
    StatusModel,
    Toleration,
    Uri,
    cel_rules,
    rule,
)
from kubetune.api.serving_access import AuthSpec, ExtraArgs, NetworkPolicySpec


class DeployJobRef(KubeModel):
    name: ObjectName = Field(description="A FineTuneJob in the same namespace.")
    checkpoint: str = Field(
        default="best",
        min_length=1,
        max_length=bounds.CHECKPOINT_NAME_MAX,
        description="best, final, latest, or a checkpoint name.",
    )


class DeployModelRef(KubeModel):
    fine_tune_job: DeployJobRef | None = Field(default=None, description="Serve a checkpoint of a FineTuneJob.")
    uri: Uri | None = Field(default=None, description="Serve the model at this URI.")

    model_config = {
        "json_schema_extra": cel_rules(
            rule("has(self.fineTuneJob) != has(self.uri)", "set exactly one of model.fineTuneJob or model.uri")
        )
    }


class CanarySpec(KubeModel):
    weight: int = Field(
        ge=0,
        le=100,
        description="Percent of requests the canary checkpoint serves (0: no canary runs; 100: it becomes stable). "
        "Split by the HTTPRoute's backend weights with spec.gateway, else by replica proportion.",
    )


GatewayHostname = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ),
]
GatewayPath = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^/$|^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$")]


class GatewayRef(KubeModel):
    name: ObjectName = Field(description="A Gateway API Gateway: the HTTPRoute's parent.")
    namespace: bounds.OptionalObjectName = Field(default="", description="Its namespace; default: this one.")
    section_name: bounds.OptionalObjectName = Field(default="", description="One listener of the Gateway.")
    hostnames: list[GatewayHostname] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "The HTTPRoute's hostnames (Gateway API); empty: every hostname of the listener. Two ModelDeployments on "
            "the same Gateway listener need different hostnames or pathPrefix: with the same match the older route "
            "gets every request."
        ),
    )
    path_prefix: GatewayPath = Field(
        default="/",
        description=(
            "Requests whose path starts with this prefix (e.g. /team-a/travel) reach this model; the prefix is "
            "rewritten to / (URLRewrite ReplacePrefixMatch), so /team-a/travel/v1/chat/completions is served as "
            "/v1/chat/completions. Default /: every path."
        ),
    )


class PromotionSpec(KubeModel):
    evaluation: LocalObjectReference | None = Field(
        default=None, description="Only checkpoints that passed this Evaluation; the best of them."
    )
    policy: Literal["auto", "manual"] = Field(
        default="auto", description="auto rolls forward to a better passing checkpoint; manual stays on the pin."
    )
    pin: str = Field(
        default="",
        max_length=bounds.CHECKPOINT_NAME_MAX,
        description="Serve this checkpoint; setting it is also how to roll back.",
    )
    canary: CanarySpec | None = Field(
        default=None,
        description="Roll forward through a canary: a new checkpoint serves this share of requests beside the "
        "stable one until the weight is 100 (it becomes stable) or 0 (it is removed), or it fails the evaluation.",
    )

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "self.policy != 'manual' || self.pin != '' || has(self.evaluation)",
                "policy manual needs a pin or an evaluation to take the first checkpoint from",
            )
        )
    }


# LoRA adapters on one base (vLLM's --max-loras and --max-cpu-loras are this count).
ADAPTERS_MAX = 32
ADAPTER_NAME_MAX = 63


class AdapterSpec(KubeModel):
    name: str = Field(
        min_length=1,
        max_length=ADAPTER_NAME_MAX,
        pattern=bounds.DNS_LABEL_PATTERN,
        description="Model name of the adapter in the API (requests choose it with `model: <name>`).",
    )
    fine_tune_job: DeployJobRef | None = Field(
        default=None, description="A LoRA FineTuneJob trained on spec.model; serve one of its checkpoints."
    )
    uri: Uri | None = Field(default=None, description="A LoRA adapter at this URI.")
    promotion: PromotionSpec = Field(
        default_factory=PromotionSpec,
        description="Which checkpoint of this adapter, and when to move (evaluation, policy, pin); per adapter.",
    )

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "has(self.fineTuneJob) != has(self.uri)",
                "set exactly one of adapters[].fineTuneJob or adapters[].uri",
            ),
            rule(
                "!has(self.promotion) || !has(self.promotion.canary)",
                "an adapter has no canary (its promotion changes one adapter without restarting the pods)",
                field_path=".promotion.canary",
            ),
        )
    }


class ServeResources(KubeModel):
    gpus: int = Field(default=0, ge=0, le=16, description="GPUs per replica (0: CPU serving).")
    gpu_resource_name: bounds.QualifiedName = Field(
        default="nvidia.com/gpu", description="Extended resource name of the GPU."
    )
    cpu: Quantity = Field(default="2", description="CPU request per replica.")
    memory: Quantity = Field(default="8Gi", description="Memory request and limit per replica.")
    node_selector: bounds.NodeSelector = Field(
        default_factory=dict,
        description=f"Node labels required (label keys and values; at most {bounds.NODE_SELECTOR_MAX}).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=bounds.TOLERATIONS_MAX,
        description=f"Taints tolerated (at most {bounds.TOLERATIONS_MAX}).",
    )
    priority_class_name: bounds.OptionalObjectName = Field(default="", description="PriorityClass of the pods.")


class AutoscalingSpec(KubeModel):
    engine: Literal["auto", "keda", "hpa"] = Field(
        default="auto",
        description=(
            "keda: a KEDA ScaledObject on the pods' Prometheus metrics; hpa: an autoscaling/v2 HPA on the pods "
            "metric kubetune_serve_requests_in_flight (needs a custom-metrics adapter); auto: keda where the "
            "cluster serves ScaledObjects (seen at operator start), hpa otherwise."
        ),
    )
    min_replicas: int = Field(
        default=1, ge=0, le=1000, description="Fewest replicas; 0 scales to zero when idle (KEDA only, with wakeQuery)."
    )
    max_replicas: int = Field(default=4, ge=1, le=1000, description="Most replicas.")
    target_concurrency: int = Field(
        default=8, ge=1, le=100000, description="In-flight requests (running + waiting) per replica to aim for."
    )
    scale_down_delay_seconds: int = Field(
        default=600,
        ge=0,
        le=86400,
        description="How long the load must stay low before replicas are removed (model servers start slowly).",
    )
    wake_query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description=(
            "PromQL whose value above 0 wakes a deployment scaled to zero, e.g. the gateway's request rate for "
            "its route (at zero replicas no serving pod exports metrics); needed with minReplicas 0."
        ),
    )

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "self.minReplicas <= self.maxReplicas",
                "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
                field_path=".minReplicas",
            ),
            rule(
                "self.minReplicas > 0 || (self.engine != 'hpa' && has(self.wakeQuery))",
                "autoscaling.minReplicas 0 (scale to zero) needs engine keda (or auto) and a wakeQuery: "
                "at zero replicas no serving pod exports the metrics to scale up on",
                field_path=".minReplicas",
            ),
        )
    }


class ModelDeploymentSpec(KubeModel):
    model: DeployModelRef = Field(description="What to serve.")
    promotion: PromotionSpec = Field(default_factory=PromotionSpec, description="Which checkpoint, and when to move.")
    runtime: Literal["auto", "vllm", "transformers"] = Field(
        default="auto", description="auto: vLLM when gpus > 0, the image's own server otherwise."
    )
    replicas: int = Field(default=1, ge=0, le=1000, description="Replicas when autoscaling is off.")
    resources: ServeResources = Field(default_factory=ServeResources, description="Compute per replica.")
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Replicas follow the load (KEDA ScaledObject or HPA); unset: spec.replicas."
    )
    auth: AuthSpec | None = Field(default=None, description="Require an API key; unset: no key asked.")
    network_policy: NetworkPolicySpec | None = Field(
        default=None,
        description=(
            "A NetworkPolicy admitting only these callers to the serving port; unset: no NetworkPolicy, every pod "
            "in the cluster may connect."
        ),
    )
    extra_args: ExtraArgs = Field(
        default_factory=list,
        description=(
            "Extra vLLM arguments (e.g. --tool-call-parser=hermes, --quantization=awq, --max-model-len=8192); "
            "flags the operator sets itself are refused. vLLM only."
        ),
    )
    served_model_name: str | None = Field(
        default=None,
        max_length=bounds.OBJECT_NAME_MAX,
        description="Model name in the API; default: metadata.name.",
    )
    max_model_len: int | None = Field(default=None, ge=16, description="Longest context served.")
    image: str = Field(
        default="",
        max_length=bounds.IMAGE_MAX,
        description="Serving image; default per runtime from the operator settings.",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=bounds.ENV_ITEMS_MAX,
        description=f"Extra environment of the server (at most {bounds.ENV_ITEMS_MAX} variables).",
    )
    adapters: list[AdapterSpec] = Field(
        default_factory=list,
        max_length=ADAPTERS_MAX,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="LoRA adapters served on spec.model (the base), each a model name of its own, promoted on "
        f"its own; changing one does not restart the pods (at most {ADAPTERS_MAX}).",
    )
    gateway: GatewayRef | None = Field(
        default=None,
        description="Route through this Gateway API Gateway (an HTTPRoute; a canary's weight is a backend weight).",
    )

    @field_validator("adapters")
    @classmethod
    def _each_adapter_once(cls, adapters: list[AdapterSpec]) -> list[AdapterSpec]:
        """What `x-kubernetes-list-type: map` keyed by name makes the API server refuse, said here too (a CEL
        rule `all(a, exists_one(b, ...))` would be quadratic: 0.4 s in cel-python for 24 adapters)."""
        names = [a.name for a in adapters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise PydanticCustomError(
                "duplicate_adapter",
                "adapter names must be unique: {twice} listed more than once",
                {"twice": ", ".join(twice)},
            )
        return adapters


class Revision(StatusModel):
    revision: int = Field(description="Increasing revision number.")
    checkpoint: str = Field(description="Checkpoint served in this revision.")
    uri: str | None = Field(default=None, description="Where it is.")
    promoted_at: str | None = Field(default=None, description="When it was promoted.")
    reason: str = Field(default="", description="Why: the passing score, a pin, a rollback.")


class AdapterStatus(StatusModel):
    name: str = Field(description="The adapter (spec.adapters[].name).")
    served_checkpoint: str | None = Field(default=None, description="Checkpoint the adapter set names for it.")
    served_uri: str | None = Field(default=None, description="Where it is.")
    message: str = Field(default="", description="What is served, or why nothing is.")
    revisions: list[Revision] = Field(default_factory=list, description="Promotion history, newest last.")


class TrafficTarget(StatusModel):
    track: Literal["stable", "canary"] = Field(description="stable or canary.")
    checkpoint: str = Field(description="Checkpoint this track serves.")
    uri: str | None = Field(default=None, description="Where it is.")
    weight: int = Field(description="Percent of requests it gets.")
    revision: int | None = Field(default=None, description="Its revision (stable); a canary has none yet.")


class ModelDeploymentStatus(CommonStatus):
    phase: Literal["Pending", "Deploying", "Ready", "Failed"] | None = Field(
        default=None, description="Pending, Deploying, Ready or Failed."
    )
    served_checkpoint: str | None = Field(default=None, description="Checkpoint being served.")
    served_uri: str | None = Field(default=None, description="Where the served model is.")
    endpoint: str | None = Field(default=None, description="OpenAI-compatible base URL.")
    ready_replicas: int = Field(default=0, description="Replicas passing readiness.")
    revisions: list[Revision] = Field(default_factory=list, description="Promotion history, newest last.")
    traffic: list[TrafficTarget] = Field(
        default_factory=list, description="Stable and canary checkpoints with their weights (with a canary)."
    )
    adapters: list[AdapterStatus] = Field(default_factory=list, description="Each adapter's checkpoint and history.")


class ModelDeployment(KubeModel):
    api_version: Literal["kubetune.dev/v1alpha1"] = Field(default=c.API_VERSION, alias="apiVersion")
    kind: Literal["ModelDeployment"] = c.MODELDEPLOYMENT
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    model_config = {
        "json_schema_extra": cel_rules(
            # At the root, where metadata.name (the base's default model name) is in reach. A conditional, not
            # `!has(x) || ...`: cel-python evaluates both sides of || and, over a list, its error values grew
            # exponentially (26 adapters took 1.6 GB).
            rule(
                "!has(self.spec.adapters) || self.spec.adapters.all(a, a.name != "
                "(has(self.spec.servedModelName) ? self.spec.servedModelName : self.metadata.name))",
                "an adapter may not be named like the base model (spec.servedModelName, default metadata.name)",
                field_path=".spec.adapters",
            ),
        )
    }
