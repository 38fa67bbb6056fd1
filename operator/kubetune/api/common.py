"""Building blocks shared by the three resources: the base model, references, conditions, rules.

YAML is camelCase; the models are snake_case with camelCase aliases. `extra="forbid"` on specs makes
a typo an error; status models ignore unknown fields so an older operator can read a newer status.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from kubetune.api import bounds

# A Kubernetes quantity ("8", "500m", "64Gi") or a plain integer, as the API server accepts it, but never
# negative: every quantity here is a resource request, limit or volume size, which Kubernetes refuses below 0
# (a '-8' CPU passed the API server and then failed the Job's creation, so it is refused at admission).
QUANTITY_PATTERN = r"^(\+?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"


def _check_quantity(value: int | str) -> int | str:
    """What the schema's pattern, maxLength and minimum say, for `kubetune validate` too."""
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{value} is negative: a resource quantity must be 0 or more")
    if isinstance(value, str) and value.startswith("-") and re.fullmatch(QUANTITY_PATTERN, value[1:]):
        raise ValueError(f"{value[:80]!r} is negative: a resource quantity must be 0 or more")
    if isinstance(value, str) and (len(value) > bounds.QUANTITY_MAX or not re.fullmatch(QUANTITY_PATTERN, value)):
        raise ValueError(f"{value[:80]!r} is not a quantity such as 8, 500m or 64Gi")
    return value


Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "maxLength": bounds.QUANTITY_MAX,
            "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": QUANTITY_PATTERN}],
        }
    ),
    AfterValidator(_check_quantity),
]

# Model and data locations: a scheme the loaders know, or a path relative to the manifest (local runs).
# http(s) is not one: it names an endpoint (distillation.teacher.endpoint.url), never a model or a dataset.
# No '@' before the first '/' after the scheme: no USER:PASSWORD@ (see refuse_userinfo).
URI_PATTERN = r"^((hf|pvc|s3|file)://([^/?#@]*[/?#].*|[^/?#@]+)|[^:]+)$"
# An http(s) endpoint: HOST[:PORT] (no USER:PASSWORD@), then any path.
HTTP_URL_PATTERN = r"^https?://[^/?#@\s]+([/?#].*)?$"
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@")


def refuse_userinfo(secret_field: str) -> BeforeValidator:
    """Refuse credentials written into a URL (scheme://USER:PASSWORD@HOST): they would end up in status, logs and
    the run config. Secrets come only by reference: the message names `secret_field`. The URL is not echoed."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and _USERINFO.match(value):
            raise PydanticCustomError(
                "url_credentials",
                "credentials may not be written into a URL (USER:PASSWORD@ before the host): they would show in "
                "status and logs; put them in a Secret and name it in {ref}",
                {"ref": secret_field},
            )
        return value

    return BeforeValidator(check)


URI_SECRET_FIELDS = "spec.s3.credentialsSecretRef (s3://) or the Hub token Secret (hf://)"
URI_FORM = "hf://ORG/NAME, pvc://CLAIM/PATH, s3://BUCKET/KEY, file:///PATH or a relative path"


class UriError(ValueError):
    """A URI whose form is wrong (or that leads outside its claim); the message says what is expected."""


# A Hugging Face repository id part (organisation or name), as the hub allows it: letters, digits, '-', '_'
# and '.' ('-' and '.' not at either end), no '--' or '..', at most 96 characters.
_HF_PART = re.compile(r"\w(?:[\w.-]{0,94}\w)?", re.ASCII)
# A revision: a branch, a tag (v1.0, refs/pr/1) or a commit hash.
_HF_REVISION = re.compile(r"\w(?:[\w./-]{0,253}\w)?", re.ASCII)
HF_FORM = "hf://ORG/NAME[@REVISION] (or hf://NAME)"


def split_hf_uri(uri: str) -> tuple[str, str | None]:
    """hf://ORG/NAME[@REVISION] -> (repo id, revision or None).

    Raises UriError naming what is wrong (no name, too many parts, a character the hub refuses, an empty
    revision), so that no odd name reaches huggingface_hub (whose HFValidationError is a traceback).
    """
    repo, at, revision = uri.removeprefix("hf://").strip("/").partition("@")
    if not repo:
        raise UriError(f"{uri!r} names no repository: expected {HF_FORM}")
    parts = repo.split("/")
    if len(parts) > 2:
        raise UriError(f"{uri!r} has {len(parts)} parts in {repo!r}: expected {HF_FORM}")
    for part in parts:
        if not _HF_PART.fullmatch(part) or "--" in part or ".." in part or part.endswith(".git"):
            raise UriError(
                f"{uri!r}: {part!r} is not a Hugging Face name (letters, digits, '-', '_' and '.', not at either "
                f"end; no '--' or '..'; at most 96 characters): expected {HF_FORM}"
            )
    if at and not revision:
        raise UriError(f"{uri!r} has an empty revision after '@': name a branch, tag or commit, or drop the '@'")
    if at and (not _HF_REVISION.fullmatch(revision) or ".." in revision or "//" in revision):
        raise UriError(
            f"{uri!r}: {revision!r} is not a revision (a branch, tag or commit hash: letters, digits, '-', '_', "
            "'.' and '/')"
        )
    return repo, revision or None


def split_pvc_uri(uri: str) -> tuple[str, str]:
    """pvc://CLAIM[/PATH] -> (claim, path inside the claim; '' for the whole claim), normalised.

    Raises UriError when CLAIM is not a PersistentVolumeClaim name or PATH climbs out of the claim ('..'):
    a pvc:// URI names something inside its claim and nothing else.
    """
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    if not claim or len(claim) > 253 or not re.fullmatch(NAME_PATTERN, claim):
        raise UriError(
            f"{uri!r}: {claim!r} is not a PersistentVolumeClaim name (lowercase letters, digits, '-' and '.', "
            "at most 253 characters): expected pvc://CLAIM/PATH"
        )
    if "\x00" in path:
        raise UriError(f"{uri!r}: the path contains a NUL character")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UriError(f"{uri!r}: '..' may not appear in the path; pvc://CLAIM/PATH names something inside CLAIM")
    return claim, "/".join(parts)


def split_s3_key(uri: str) -> tuple[str, str]:
    """s3://BUCKET/KEY -> (bucket, key). Raises UriError without a bucket or a key: a bucket alone is no file or
    model (reading it returns the bucket's XML listing). A key may end with '/' (a model or export prefix)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise UriError(f"{uri!r} names no bucket: expected s3://BUCKET/KEY")
    if not key.strip("/"):
        raise UriError(f"{uri!r} names only a bucket: expected s3://BUCKET/KEY (a file, or a PREFIX/ for a model)")
    return bucket, key


def _check_scheme(uri: Any) -> Any:
    """A human refusal of a scheme the loaders do not read, before the schema's pattern says it as a regex."""
    if isinstance(uri, str) and not re.fullmatch(URI_PATTERN, uri, re.DOTALL):
        scheme = uri.partition("://")[0] if "://" in uri else None
        if scheme in ("http", "https"):
            problem = f"{scheme}:// names an endpoint, not a model or dataset location"
        elif scheme is not None:
            problem = f"the scheme {scheme[:20]!r} is not one kubetune reads"
        else:
            problem = "a relative path may not contain ':'"
        raise PydanticCustomError("uri_scheme", "{problem}: use {form}", {"problem": problem, "form": URI_FORM})
    return uri


def check_uri(uri: str) -> str:
    """The form of hf:// and pvc:// URIs (the schema's pattern cannot say it); other URIs as they are."""
    try:
        if uri.startswith("hf://"):
            split_hf_uri(uri)
        elif uri.startswith("pvc://"):
            split_pvc_uri(uri)
        elif uri.startswith("s3://"):
            split_s3_key(uri)
    except UriError as err:
        raise PydanticCustomError("uri_form", "{message}", {"message": str(err)}) from None
    return uri


Uri = Annotated[
    str,
    Field(
        min_length=1,
        max_length=bounds.URI_MAX,
        pattern=URI_PATTERN,
        description="hf://ORG/NAME[@REVISION], pvc://CLAIM/PATH, s3://BUCKET/KEY, file:///PATH, "
        "or a path relative to the manifest (local runs).",
    ),
    BeforeValidator(_check_scheme),
    refuse_userinfo(URI_SECRET_FIELDS),
    AfterValidator(check_uri),
]


def pinned_uri(uri: str, revision: str | None) -> str:
    """`uri` with `revision` (spec.baseModel.revision) folded in as hf://ORG/NAME@REVISION; other URIs unchanged.

    What a checkpoint records as its base, so an adapter is always loaded onto the weights it was trained on.
    """
    if not revision or not uri.startswith("hf://"):
        return uri
    return f"hf://{split_hf_uri(uri)[0]}@{revision}"


# DNS-1123 subdomain: the names of the objects we refer to.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=NAME_PATTERN)]


def rule(rule: str, message: str, *, field_path: str | None = None, reason: str | None = None) -> dict:
    """One CEL rule as it appears under `x-kubernetes-validations` in the generated CRD."""
    out: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def cel_rules(*rules: dict) -> dict:
    """`json_schema_extra` that attaches CEL rules to a model's schema node."""
    return {"x-kubernetes-validations": list(rules)}


class KubeModel(BaseModel):
    """Base of every spec model: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        validate_assignment=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The camelCase form a Kubernetes client sends (unset optional fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def identity(self) -> dict[str, Any]:
        """The fields set to something other than their default (camelCase): what a spec digest is taken of.
        A field added in a later version with a default (which the API server fills in on every read once the
        CRD has it) leaves the digest as it was, so an upgrade re-creates no child and restarts no local run."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True, mode="json")


class StatusModel(KubeModel):
    """Base of status models: tolerant of fields it does not know."""

    model_config = ConfigDict(extra="ignore")


class LocalObjectReference(KubeModel):
    name: ObjectName = Field(description="Name of an object in the same namespace.")


class SecretKeyRef(KubeModel):
    name: ObjectName = Field(description="Name of a Secret in the resource's namespace.")
    key: str = Field(
        min_length=1,
        max_length=bounds.SECRET_KEY_MAX,
        pattern=bounds.SECRET_KEY_PATTERN,
        description="Key in the Secret whose value is used.",
    )


class EnvVar(KubeModel):
    name: str = Field(
        min_length=1,
        max_length=bounds.ENV_NAME_MAX,
        pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$",
        description="Variable name.",
    )
    value: str | None = Field(
        default=None,
        max_length=bounds.ENV_VALUE_MAX,
        description=f"Literal value (at most {bounds.ENV_VALUE_MAX} characters); never put secrets here.",
    )
    secret_key_ref: SecretKeyRef | None = Field(
        default=None, description="Take the value from a key of a Secret (preferred for credentials)."
    )

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            rule("has(self.value) != has(self.secretKeyRef)", "set exactly one of value or secretKeyRef")
        )
    )


class Toleration(KubeModel):
    key: str | None = Field(
        default=None,
        max_length=bounds.QUALIFIED_NAME_MAX,
        pattern=f"^$|{bounds.QUALIFIED_NAME_PATTERN}",
        description="Taint key the toleration applies to (a label key); empty with operator Exists matches all.",
    )
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(
        default=None,
        max_length=bounds.LABEL_VALUE_MAX,
        pattern=bounds.LABEL_VALUE_PATTERN,
        description="Taint value to match with operator Equal (a label value).",
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="For NoExecute: how long the pod stays bound after the taint."
    )


class Condition(StatusModel):
    """A kstatus-compatible condition."""

    type: str = Field(description="Condition type, e.g. Ready, Reconciling, Stalled, Succeeded, Failed.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: str | None = Field(default=None, description="When the status last changed.")
    observed_generation: int | None = Field(default=None, description="Generation this was computed for.")


class CommonStatus(StatusModel):
    """What every kubetune status has: phase, observed generation, conditions."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation of the spec the operator last acted on."
    )
    conditions: list[Condition] = Field(default_factory=list, description="kstatus conditions.")
    message: str | None = Field(default=None, description="Last human-readable message about the phase.")


class ResourcesSpec(KubeModel):
    """Compute requested by the pods of a resource."""

    gpus: int = Field(default=1, ge=0, le=64, description="GPUs per node (0 runs on CPU).")
    gpu_resource_name: bounds.QualifiedName = Field(
        default="nvidia.com/gpu", description="Extended resource name of the GPU, e.g. amd.com/gpu."
    )
    cpu: Quantity = Field(default="4", description="CPU request per pod.")
    memory: Quantity = Field(default="16Gi", description="Memory request and limit per pod.")
    nodes: int = Field(default=1, ge=1, le=256, description="Number of nodes (pods) for distributed runs.")
    node_selector: bounds.NodeSelector = Field(
        default_factory=dict,
        description=f"Node labels the pods require (label keys and values; at most {bounds.NODE_SELECTOR_MAX}).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=bounds.TOLERATIONS_MAX,
        description=f"Taints the pods tolerate (at most {bounds.TOLERATIONS_MAX}).",
    )
    priority_class_name: bounds.OptionalObjectName = Field(default="", description="PriorityClass of the pods.")


class ObjectMeta(BaseModel):
    """The parts of metadata kubetune reads; everything else is kept as it is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None
