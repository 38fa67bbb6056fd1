"""The environment a training or evaluation pod needs to log to the job's experiment tracker.

Credentials only as Secret references (`valueFrom.secretKeyRef`): their values never appear in a manifest,
the run config or status. The MLflow keys are optional, so one Secret may hold a token or a user and password.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.tracking import MLFLOW_CREDENTIAL_KEYS, WANDB_API_KEY_ENV, TrackingSpec
from kubetune.builders import pods


def tracking_env(tracking: TrackingSpec | None) -> list[dict[str, Any]]:
    """MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN from `mlflow.credentialsSecretRef` (each key optional) and
    WANDB_API_KEY from `wandb.apiKeySecretRef`; [] without tracking or credentials."""
    env: list[dict[str, Any]] = []
    if tracking is None:
        return env
    ref = tracking.mlflow.credentials_secret_ref if tracking.mlflow else None
    if ref is not None:
        for key in MLFLOW_CREDENTIAL_KEYS:
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": key, "optional": True}}})
    if tracking.wandb is not None:
        env.append(pods.secret_env(WANDB_API_KEY_ENV, tracking.wandb.api_key_secret_ref))
    return env
