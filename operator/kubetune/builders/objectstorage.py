"""Env vars that let a pod reach the resource's object storage and export destination; Secrets by reference only.

The endpoint, region and path style travel in the run config (spec.s3, applied by the trainer); only the
credentials come here, from `s3.credentialsSecretRef` under the standard AWS names (optional keys stay
optional, so a Secret without a session token still starts the pod). Without that ref nothing is added
and the client uses the pod's identity (IRSA / Pod Identity env vars set by the cluster).
"""

from __future__ import annotations

from typing import Any

from kubetune import constants as c
from kubetune.api.objectstorage import CREDENTIAL_KEYS, OPTIONAL_CREDENTIAL_KEYS, ExportSpec, S3Spec
from kubetune.builders import pods


def s3_env(s3: S3Spec | None) -> list[dict[str, Any]]:
    if s3 is None or s3.credentials_secret_ref is None:
        return []
    name = s3.credentials_secret_ref.name
    out = [{"name": k, "valueFrom": {"secretKeyRef": {"name": name, "key": k}}} for k in CREDENTIAL_KEYS]
    out += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": name, "key": k, "optional": True}}}
        for k in OPTIONAL_CREDENTIAL_KEYS
        if k != "AWS_REGION" or not s3.region  # the spec's region wins over the Secret's
    ]
    return out


def export_env(export: ExportSpec | None) -> list[dict[str, Any]]:
    """The Hub token of an hf:// export, apart from HF_TOKEN (which may be a read-only token of the base model)."""
    if export is None or export.token_secret_ref is None:
        return []
    return [pods.secret_env(c.ENV_HF_EXPORT_TOKEN, export.token_secret_ref)]
