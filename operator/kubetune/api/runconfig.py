"""Run configs: what the operator (or `kubetune run`) hands the trainer image, one per pod role.

The operator writes one into a ConfigMap mounted at /etc/kubetune/run-config.json; `kubetune run`
writes the same file into the local runs folder. The trainer reads it with `load()`; the spec inside
is the validated resource spec, so the trainer never re-interprets YAML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlparse

from pydantic import Field

from kubetune.api import yamlload
from kubetune.api.common import KubeModel, UriError, split_pvc_uri
from kubetune.api.evaluation import EvaluationSpec
from kubetune.api.finetunejob import FineTuneJobSpec
from kubetune.api.tracking import EvalTracking

T = TypeVar("T", bound="_RunConfigBase")


class Identity(KubeModel):
    """The resource a run belongs to (the trainer patches its status)."""

    name: str
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None


class StorageMap(KubeModel):
    """How URIs become local paths inside the pod (or on this machine for local runs)."""

    pvc_root: str = Field(default="/mnt/pvc", description="pvc://CLAIM/PATH is read at PVC_ROOT/CLAIM/PATH.")
    base_dir: str = Field(default=".", description="Relative paths resolve against this directory.")
    follow_links: bool = Field(
        default=False,
        description="Whether a symbolic link inside a claim may lead out of it (local runs: the user's own links "
        "on the user's own machine; never in a pod, where claims are mounted side by side).",
    )

    def local_path(self, uri: str) -> Path | None:
        """The local path of a pvc://, file:// or relative URI; None for remote schemes (hf://, s3://, http).

        A pvc:// path never leads outside its claim's folder (PVC_ROOT/CLAIM) by '..', and, unless
        `follow_links`, not through a symbolic link either: UriError otherwise. This is where to READ; a
        caller that writes checks the resolved path itself (kubetune.local.state.RunsDir.inside).
        """
        if uri.startswith("pvc://"):
            claim, inside = split_pvc_uri(uri)
            root = Path(self.pvc_root) / claim
            path = root / inside if inside else root
            if not self.follow_links and not path.resolve().is_relative_to(root.resolve()):
                raise UriError(
                    f"{uri!r} leads outside the claim {claim!r} (through a symbolic link to {path.resolve()})"
                )
            return path
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return Path(parsed.path)
        if parsed.scheme == "" and "://" not in uri:
            p = Path(uri)
            return p if p.is_absolute() else Path(self.base_dir) / p
        return None


class ProgressSink(KubeModel):
    backend: Literal["file", "kubernetes", "none"] = Field(default="none", description="Where progress goes.")
    path: str | None = Field(default=None, description="JSON-lines file for backend file.")
    min_interval_seconds: float = Field(default=5.0, ge=0, description="Throttle of status patches.")


class _RunConfigBase(KubeModel):
    api_version: Literal["kubetune.dev/v1alpha1"] = Field(default="kubetune.dev/v1alpha1", alias="apiVersion")
    job: Identity
    storage: StorageMap = Field(default_factory=StorageMap)
    progress: ProgressSink = Field(default_factory=ProgressSink)
    output_dir: str = Field(description="Local directory the run writes into.")
    output_uri: str | None = Field(default=None, description="The URI of output_dir, for status (pvc://...).")
    judge_endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="Endpoints of the ModelDeployments the spec's judges name (name -> status.endpoint).",
    )

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        text = Path(path).read_text()
        data = json.loads(text) if text.lstrip().startswith("{") else yamlload.load_one(text)
        return cls.model_validate(data)

    def dump(self) -> str:
        return json.dumps(self.to_k8s(), indent=2, sort_keys=True)


class TrainRunConfig(_RunConfigBase):
    kind: Literal["TrainRunConfig"] = "TrainRunConfig"
    spec: FineTuneJobSpec
    base_model_uri: str = Field(description="The model to start from; fromJob is already resolved to a checkpoint.")
    teacher_api_key_env: str | None = Field(default=None, description="Env var with the teacher endpoint's key.")
    sharding: Literal["none", "fsdp"] | None = Field(
        default=None,
        description="The run's resolved sharding. The operator passes spec.resources.sharding.strategy none or fsdp "
        "on; None (auto) is resolved by the trainer at start, which has the model's config.json and the GPU's "
        "memory, and hands its workers a run config with the choice.",
    )


class EvalTarget(KubeModel):
    name: str = Field(description="Checkpoint name, 'final', a model name or deployment name.")
    uri: str | None = Field(default=None, description="Model location (checkpoint dir, adapter or merged).")
    endpoint: str | None = Field(default=None, description="OpenAI-compatible base URL instead of a model.")
    endpoint_model: str | None = Field(default=None, description="Model name at that endpoint.")
    base_model_uri: str | None = Field(default=None, description="Base model under a LoRA adapter.")


class EvalRunConfig(_RunConfigBase):
    kind: Literal["EvalRunConfig"] = "EvalRunConfig"
    spec: EvaluationSpec
    targets: list[EvalTarget] = Field(min_length=1)
    baseline: EvalTarget | None = Field(default=None, description="None when spec.baseline.none.")
    few_shot_source_uri: str | None = Field(default=None, description="Training data to draw few-shot examples from.")
    tracking: EvalTracking | None = Field(
        default=None, description="The FineTuneJob's MLflow run: results and report are logged into it."
    )


class ServeRunConfig(_RunConfigBase):
    kind: Literal["ServeRunConfig"] = "ServeRunConfig"
    model_uri: str = Field(description="Merged model, or the adapter when base_model_uri is set.")
    base_model_uri: str | None = Field(default=None, description="Base model under a LoRA adapter.")
    served_model_name: str
    host: str = "0.0.0.0"
    port: int = 8000
    max_model_len: int | None = None
