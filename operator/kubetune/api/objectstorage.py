"""The `s3` section (where s3:// URIs are and how the pod signs in) and the FineTuneJob's `export` section.

    spec:
      s3:
        endpoint: http://minio.storage.svc:9000   # MinIO, Ceph RGW ...; omit for AWS S3
        region: eu-west-1
        forcePathStyle: true                      # default: path style with an endpoint, virtual-hosted without
        credentialsSecretRef: {name: s3-creds}    # keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY[, AWS_SESSION_TOKEN]
      export: {uri: s3://models/travel/, checkpoint: best, merge: false}

Credentials reach the pod only as environment variables taken from the Secret (secretKeyRef), under the
standard AWS names; without `credentialsSecretRef` the client falls back to the pod's identity (web identity
token file + role ARN, as EKS IRSA and EKS Pod Identity set them, or the instance metadata service).
Never a ConfigMap, never status.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from kubetune.api import bounds
from kubetune.api.common import (
    KubeModel,
    LocalObjectReference,
    SecretKeyRef,
    StatusModel,
    Uri,
    cel_rules,
    refuse_userinfo,
    rule,
)

# The keys read from `credentialsSecretRef` (the standard AWS variable names, as `aws configure` and every SDK
# reads them); the session token and the region are optional keys.
CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
OPTIONAL_CREDENTIAL_KEYS = ("AWS_SESSION_TOKEN", "AWS_REGION")


class S3Spec(KubeModel):
    """Where s3:// URIs of this resource are served and how to sign in (datasets, models, export)."""

    endpoint: Annotated[str | None, refuse_userinfo("spec.s3.credentialsSecretRef")] = Field(
        default=None,
        max_length=bounds.URL_MAX,
        pattern=r"^https?://[^\s/?#@]+(/[^\s?#]*)?$",
        description="An S3-compatible endpoint (MinIO, Ceph RGW ...), e.g. http://minio.storage.svc:9000; "
        "omit for AWS S3.",
    )
    region: str | None = Field(
        default=None,
        max_length=bounds.REGION_MAX,
        pattern=r"^[a-z0-9-]+$",
        description="The bucket's region (AWS_REGION); some S3-compatible servers want any value, e.g. us-east-1.",
    )
    force_path_style: bool | None = Field(
        default=None,
        description="Address buckets as ENDPOINT/BUCKET (path style) instead of BUCKET.ENDPOINT (virtual-hosted). "
        "Default: path style with an endpoint (what MinIO and Ceph expect), virtual-hosted without.",
    )
    credentials_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="A Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and optionally "
        "AWS_SESSION_TOKEN, AWS_REGION), given to the pod as those environment variables. Without it the pod's "
        "identity is used (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN from the ServiceAccount, or instance "
        "metadata). kubetune run reads these variables from its own environment.",
    )


def _is_export_uri(uri: str) -> bool:
    return uri.startswith(("s3://", "hf://"))


class ExportSpec(KubeModel):
    """Write the chosen checkpoint, its tokenizer and a model card to object storage or a Hub repository."""

    uri: Uri = Field(
        description="s3://BUCKET/PREFIX (files go under PREFIX/) or hf://ORG/NAME (a Hub model repository, "
        "created private if missing)."
    )
    checkpoint: str = Field(
        default="best",
        min_length=1,
        max_length=bounds.CHECKPOINT_NAME_MAX,
        description="best (by checkpoints.selectBy), final, or a kept checkpoint's name (checkpoint-400).",
    )
    merge: bool = Field(
        default=False,
        description="LoRA/QLoRA: export the adapter merged into the base model (safetensors) instead of the "
        "adapter alone. Full fine-tuning always exports the full weights.",
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="hf:// exports: the Secret key holding a Hub token with write access (given to the pod as "
        "HF_EXPORT_TOKEN). s3:// exports sign in through spec.s3.",
    )

    model_config = {
        "json_schema_extra": cel_rules(
            rule(
                "self.uri.startsWith('s3://') || self.uri.startsWith('hf://')",
                "export.uri must be s3://BUCKET/PREFIX or hf://ORG/NAME",
                field_path=".uri",
            )
        )
    }

    @field_validator("uri")
    @classmethod
    def _export_scheme(cls, uri: str) -> str:
        if not _is_export_uri(uri):
            raise ValueError(f"{uri!r} must be s3://BUCKET/PREFIX or hf://ORG/NAME")
        return uri


class ExportStatus(StatusModel):
    """Where the export went (written by the training pod once the files are uploaded)."""

    uri: str | None = Field(default=None, description="Where the files are (s3://... or hf://ORG/NAME@COMMIT).")
    checkpoint: str | None = Field(default=None, description="The checkpoint exported.")
    kind: Literal["adapter", "merged", "full"] | None = Field(default=None, description="What was exported.")
    digest: str | None = Field(
        default=None, description="sha256 of the manifest (one 'SHA256  SIZE  PATH' line per file, sorted by path)."
    )
    files: int | None = Field(default=None, description="How many files were uploaded.")
    bytes: int | None = Field(default=None, description="Their total size.")
    exported_at: str | None = Field(default=None, description="When the upload finished.")
