"""Experiment tracking of a FineTuneJob: `spec.tracking` (MLflow; Weights & Biases by the same switch).

The trainer logs into one MLflow run per FineTuneJob: params (method, adapter, base model, hyperparameters),
metrics per logging step (transformers' MLflowCallback), checkpoint metrics, and the Evaluation's results and
report (the evaluator logs into the same run: its id is in `status.tracking.runId`). Credentials come from a
Secret, as the variables MLflow and W&B read (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN, WANDB_API_KEY); they
never appear in the spec, the run config, status or logs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from kubetune.api import bounds
from kubetune.api.common import (
    HTTP_URL_PATTERN,
    KubeModel,
    LocalObjectReference,
    SecretKeyRef,
    StatusModel,
    cel_rules,
    refuse_userinfo,
    rule,
)

# The Secret keys of `mlflow.credentialsSecretRef`: each becomes the pod variable of the same name when present.
MLFLOW_CREDENTIAL_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
WANDB_API_KEY_ENV = "WANDB_API_KEY"


class MlflowTracking(KubeModel):
    uri: Annotated[str, refuse_userinfo("tracking.mlflow.credentialsSecretRef")] = Field(
        max_length=bounds.URI_MAX,
        pattern=r"^(https?://[^/?#@\s]+([/?#].*)?|databricks(://[^/?#@]*([/?#].*)?)?)$",
        description="Tracking server: http(s)://HOST[:PORT][/PATH], or databricks.",
    )
    experiment: str | None = Field(
        default=None,
        min_length=1,
        max_length=bounds.TRACKING_NAME_MAX,
        description="Experiment the run goes into (created when missing); default: the FineTuneJob's name.",
    )
    run_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=bounds.TRACKING_NAME_MAX,
        description="Name of the run; default: the FineTuneJob's name.",
    )
    credentials_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret whose keys MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD and MLFLOW_TRACKING_TOKEN "
        "(each optional) become the trainer's and evaluator's variables of the same names.",
    )


class WandbTracking(KubeModel):
    project: str = Field(min_length=1, max_length=bounds.TRACKING_NAME_MAX, description="W&B project (WANDB_PROJECT).")
    entity: str | None = Field(
        default=None, min_length=1, max_length=bounds.TRACKING_NAME_MAX, description="W&B entity (team or user)."
    )
    host: Annotated[str | None, refuse_userinfo("tracking.wandb.apiKeySecretRef")] = Field(
        default=None,
        max_length=bounds.URI_MAX,
        pattern=HTTP_URL_PATTERN,
        description="A self-hosted W&B server (WANDB_BASE_URL); default: wandb.ai.",
    )
    api_key_secret_ref: SecretKeyRef = Field(description="Secret key holding the W&B API key (WANDB_API_KEY).")


class TrackingSpec(KubeModel):
    mlflow: MlflowTracking | None = Field(default=None, description="Log the run to an MLflow tracking server.")
    wandb: WandbTracking | None = Field(default=None, description="Log the run to Weights & Biases.")

    model_config = {
        "json_schema_extra": cel_rules(
            rule("has(self.mlflow) || has(self.wandb)", "tracking needs mlflow or wandb (or leave tracking out)")
        )
    }

    @model_validator(mode="after")
    def _one_tracker_at_least(self) -> TrackingSpec:
        if self.mlflow is None and self.wandb is None:
            raise ValueError("tracking needs mlflow or wandb (or leave tracking out)")
        return self


class TrackingStatus(StatusModel):
    run_id: str | None = Field(default=None, description="The MLflow run the trainer logs into.")
    experiment_id: str | None = Field(default=None, description="Its MLflow experiment.")
    url: str | None = Field(default=None, description="The run's page on the tracking server.")


class EvalTracking(KubeModel):
    """What an evaluation run needs to log into its FineTuneJob's MLflow run (from the job's spec and status)."""

    uri: str = Field(description="The job's tracking server.")
    run_id: str = Field(description="The job's run (status.tracking.runId).")
