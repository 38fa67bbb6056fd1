"""The bound of every spec string, list and map, and why it is what it is.

A real API server estimates the cost of each CEL rule (`x-kubernetes-validations`) from these bounds
before it accepts a CRD: an unbounded string counts as 3 MiB, an unbounded list as a million items,
and a rule over them "exceeds budget" and the whole CRD is refused. So every spec field carries a
bound (`crdgen` refuses to generate one without), taken from Kubernetes' own limits where it has
one, and the pydantic models enforce the same bounds, so `kubetune validate` refuses what the API
server would. tests/unit/api/test_cel_cost.py estimates every rule's cost from them.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

# --- Kubernetes' own limits (k8s.io/apimachinery/pkg/util/validation) ------------------------------

# Object names (Secret, PVC, PriorityClass, StorageClass, FineTuneJob ...): IsDNS1123Subdomain.
OBJECT_NAME_MAX = 253
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# A DNS-1123 label (Service names, a Kueue LocalQueue name used as a label value): IsDNS1123Label.
DNS_LABEL_MAX = 63
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Label values: IsValidLabelValue (empty, or alphanumerics at both ends with '-', '_', '.' between).
LABEL_VALUE_MAX = 63
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# Label keys (node labels, taint keys, extended resource names): IsQualifiedName, an optional
# DNS-subdomain prefix (253) and '/' before a name of at most 63 characters.
QUALIFIED_NAME_MAX = 253 + 1 + 63
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# Keys of a Secret's data: IsConfigMapKey. Environment variable names use the same characters and,
# Kubernetes setting no limit of its own, the same length.
SECRET_KEY_MAX = 253
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
ENV_NAME_MAX = 253

# --- Our choices where Kubernetes sets no limit ------------------------------------------------------

# A location (hf://, pvc://, s3://, file://, a path): PATH_MAX on Linux.
URI_MAX = 4096
# A container image reference: at most 520 characters by the distribution spec (name 255, ':' tag 128,
# '@sha512:' digest 135); 1024 leaves room for registries that read it loosely.
IMAGE_MAX = 1024
# A Hub revision (branch, tag or commit) and a checkpoint name (a directory): NAME_MAX, 255 bytes.
REVISION_MAX = 255
CHECKPOINT_NAME_MAX = 255
# A model name sent to an OpenAI-compatible API, a reference field of the examples, a metric name.
MODEL_NAME_MAX = 256
FIELD_NAME_MAX = 256
METRIC_NAME_MAX = 128
GRADER_NAME_MAX = 63
# An MLflow experiment or run name, a W&B project or entity (MLflow keeps tag values, which hold the run name,
# up to 250 characters in older servers).
TRACKING_NAME_MAX = 250
# adapter.targetModules: all-linear or a comma-separated list of module names.
TARGET_MODULES_MAX = 1024
# A grader's regular expression.
PATTERN_MAX = 1024
# The baseline's system prompt: instructions, not a document.
PROMPT_MAX = 32768
# An LLM judge's rubric (instructions, sent with every request), its labels and how many there may be.
RUBRIC_MAX = 16384
JUDGE_LABEL_MAX = 128
JUDGE_LABELS_MAX = 16
# An environment variable's literal value: a setting, not a file (mount a ConfigMap or Secret for more).
ENV_VALUE_MAX = 8192
# An S3-compatible endpoint URL (scheme, host, port, optional path) and an AWS region name ("eu-west-1").
URL_MAX = 2048
REGION_MAX = 64
# A Kubernetes quantity ("500m", "64Gi", "1.5e3"): a number and a suffix.
QUANTITY_MAX = 64

# Lists and maps. Kubernetes sets no limit on the number of env vars, tolerations, pull secrets or
# nodeSelector terms of a pod; these are well beyond what a training pod uses.
ENV_ITEMS_MAX = 64
TOLERATIONS_MAX = 64
NODE_SELECTOR_MAX = 64
PULL_SECRETS_MAX = 16


def _check_qualified_names(value: dict[str, str]) -> dict[str, str]:
    """Map keys (a CRD schema cannot bound them: `propertyNames` is not allowed) are label keys."""
    for key in value:
        if len(key) > QUALIFIED_NAME_MAX or not re.fullmatch(QUALIFIED_NAME_PATTERN, key):
            raise ValueError(
                f"{key!r} is not a label key: an optional DNS-subdomain prefix and '/', then at most 63 "
                "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
        if "/" in key and len(key.split("/", 1)[0]) > OBJECT_NAME_MAX:
            raise ValueError(f"{key!r}: the prefix before '/' is longer than {OBJECT_NAME_MAX} characters")
    return value


LabelValue = Annotated[str, Field(max_length=LABEL_VALUE_MAX, pattern=LABEL_VALUE_PATTERN)]
QualifiedName = Annotated[str, Field(min_length=1, max_length=QUALIFIED_NAME_MAX, pattern=QUALIFIED_NAME_PATTERN)]
# An optional object name: "" (the default) or a DNS subdomain.
OptionalObjectName = Annotated[str, Field(max_length=OBJECT_NAME_MAX, pattern=f"^$|{OBJECT_NAME_PATTERN}")]
NodeSelector = Annotated[
    dict[str, LabelValue],
    Field(max_length=NODE_SELECTOR_MAX),
    AfterValidator(_check_qualified_names),
]
ANNOTATIONS_MAX = 32
ANNOTATION_VALUE_MAX = 4096
# An annotation key is a qualified name, as the API server checks metadata.annotations. A CRD cannot bound map
# keys (`propertyNames` is not structural), so the CRD says it with a CEL rule, the size test first: cel-go
# stops there on a longer key, so no key costs more than QUALIFIED_NAME_MAX characters of matching.
_KEY_PATTERN_CEL = QUALIFIED_NAME_PATTERN.replace("\\.", "[.]")
ANNOTATION_KEY_RULE: dict[str, str] = {
    "rule": f"self.all(k, size(k) <= {QUALIFIED_NAME_MAX} && k.matches('{_KEY_PATTERN_CEL}'))",
    "message": "every key must be a qualified name: an optional DNS-subdomain prefix and '/', then at most 63 "
    "letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
}
AnnotationKey = Annotated[str, Field(min_length=1, max_length=QUALIFIED_NAME_MAX, pattern=QUALIFIED_NAME_PATTERN)]
# Annotations a spec asks the operator to put on an object it makes (qualified-name keys, bounded values); each
# bad key is its own error, at `...annotations["key"]`.
Annotations = Annotated[
    dict[AnnotationKey, Annotated[str, Field(max_length=ANNOTATION_VALUE_MAX)]],
    Field(max_length=ANNOTATIONS_MAX, json_schema_extra={"x-kubernetes-validations": [dict(ANNOTATION_KEY_RULE)]}),
    AfterValidator(_check_qualified_names),
]
