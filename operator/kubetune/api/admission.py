"""One admission for every entry point: `kubetune validate`, `kubetune run` and the operator.

What the API server would refuse, and what is certain to fail later, refused before anything starts:

0. the document as the API server validates it on create (`as_created`): `status` ignored, nulls of
   non-nullable fields pruned or defaulted;
1. the schema (the pydantic models the CRDs are generated from; `parse_resource`, strictly typed);
2. `metadata` as the API server checks it: only ObjectMeta's fields, name a DNS-1123 subdomain, namespace a
   DNS-1123 label, label keys and values, annotation keys and their total size, also with the copy of spec,
   labels and annotations that Kopf keeps in an annotation (`bookkeeping_size_problem`);
3. the CRDs' CEL rules, evaluated here as the API server would (kubetune.api.cel);
4. spec checks a schema cannot say: `queueName` is a Kueue LocalQueue name and a label value, a declared
   `dataset.format` must be one the method trains on (kubetune.data's table), a ModelDeployment's `extraArgs`
   set no flag the operator sets (kubetune.api.serving_access);
5. across the resources of one set of manifests (`admit_all`): duplicates, a job continuing from itself,
   a ModelDeployment promoted by an Evaluation that scores another job.

Pure: no Kubernetes client, no torch; the datasets themselves are checked by the callers that can read them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from kubetune import constants as c
from kubetune.api.evaluation import Evaluation
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.manifests import KINDS, ManifestError, Resource, is_ours, parse_resource
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.api.nulls import prune_document
from kubetune.api.serving_access import extra_args_problems, served_runtime

# The API server's name rules (k8s.io/apimachinery/pkg/util/validation).
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_SUBDOMAIN, MAX_LABEL, MAX_QUALIFIED_NAME = 253, 63, 63
MAX_ANNOTATIONS_BYTES = 256 * 1024  # TotalAnnotationSizeLimitB
# Kopf (the operator's framework) keeps its copy of an object's spec, labels and annotations in this annotation
# of the object itself (kubetune.controllers.main; Kopf's diffbase "essence"), and its progress records and the
# kopf-managed marker under the same prefix: this much is kept free for those records.
KOPF_COPY_ANNOTATION = f"{c.KOPF_ANNOTATION_PREFIX}/last-handled-configuration"
KOPF_RECORDS_RESERVE_BYTES = 4 * 1024
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"  # kubectl apply's; Kopf skips it
# The fields of ObjectMeta (k8s.io/apimachinery/pkg/apis/meta/v1): the API server refuses any other key under
# metadata ('strict decoding error: unknown field "metadata.bogus"').
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


def _short(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."


def subdomain_problem(value: str) -> str | None:
    if len(value) > MAX_SUBDOMAIN:
        return f"must be no more than {MAX_SUBDOMAIN} characters"
    if not DNS1123_SUBDOMAIN.match(value):
        return (
            f"{_short(value)!r} is not a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return None


def label_problem(value: str) -> str | None:
    if len(value) > MAX_LABEL:
        return f"must be no more than {MAX_LABEL} characters"
    if not DNS1123_LABEL.match(value):
        return (
            f"{_short(value)!r} is not a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def qualified_name_problem(key: str) -> str | None:
    """A label or annotation key: [prefix/]name, prefix a DNS subdomain, name at most 63 characters."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return f"{_short(key)!r}: the prefix before '/' is empty"
    if prefix and (len(prefix) > MAX_SUBDOMAIN or not DNS1123_SUBDOMAIN.match(prefix)):
        return f"{_short(key)!r}: the prefix {_short(prefix)!r} must be a DNS-1123 subdomain"
    if not name or len(name) > MAX_QUALIFIED_NAME or not QUALIFIED_NAME.match(name):
        return (
            f"{_short(key)!r}: the name part must be 1-{MAX_QUALIFIED_NAME} characters of letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > MAX_LABEL:
        return f"must be no more than {MAX_LABEL} characters"
    if not LABEL_VALUE.match(value):
        return (
            f"{_short(value)!r} must be empty or letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    return None


def metadata_errors(meta: Any, source: str) -> list[ManifestError]:
    """What the API server checks in `metadata` (of a raw document, so it shows beside schema errors)."""
    if not isinstance(meta, dict):
        return []  # the schema reports a missing or malformed metadata
    out: list[ManifestError] = []

    def err(path: str, message: str | None) -> None:
        if message:
            out.append(ManifestError(source, path, message))

    for key in meta:
        if key not in OBJECT_META_FIELDS:
            err(f"metadata.{key}", "unknown field: not a field of metadata (ObjectMeta); labels or annotations?")
    name, namespace = meta.get("name"), meta.get("namespace")
    if isinstance(name, str) and name:
        err("metadata.name", subdomain_problem(name))
    if isinstance(namespace, str):
        err("metadata.namespace", label_problem(namespace) if namespace else "must not be empty")
    for field in ("labels", "annotations"):
        values = meta.get(field)
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if isinstance(key, str):
                err(f"metadata.{field}", qualified_name_problem(key))
            if field == "labels" and isinstance(value, str):
                err(f"metadata.labels[{key}]", label_value_problem(value))
        if field == "annotations":
            size = _annotations_bytes(values)
            if size > MAX_ANNOTATIONS_BYTES:
                err("metadata.annotations", f"{size:,} bytes in all; the API server allows {MAX_ANNOTATIONS_BYTES:,}")
    return out


def _annotations_bytes(annotations: dict[Any, Any]) -> int:
    """The API server's measure: the bytes of every key and value (UTF-8)."""
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _kopf_copy(doc: dict[str, Any]) -> str:
    """The annotation value Kopf stores for `doc` (kopf/_cogs/configs/diffbase.py, DiffBaseStorage.build and
    AnnotationsDiffBaseStorage.store): every top-level field but apiVersion, kind, metadata and status, plus
    metadata.labels and metadata.annotations without kubectl's last-applied-configuration, Kopf's own copy
    and the annotations of Kopf-managed prefixes; compact JSON and a newline."""
    meta, essence = (
        _dict(doc.get("metadata")),
        {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata", "status")},
    )
    annotations = _dict(meta.get("annotations"))
    split = [str(k).split("/", 1) for k in annotations if "/" in str(k)]
    marked = {prefix for prefix, name in split if name == "kopf-managed"}
    marked |= {prefix for prefix, _ in split if prefix == "kopf.zalando.org" or prefix.endswith(".kopf.zalando.org")}
    kept = {
        k: v
        for k, v in annotations.items()
        if k not in (LAST_APPLIED_ANNOTATION, KOPF_COPY_ANNOTATION) and str(k).split("/", 1)[0] not in marked
    }
    picked = {k: v for k, v in (("labels", meta.get("labels")), ("annotations", kept)) if v}
    if picked:
        essence["metadata"] = picked
    return json.dumps(essence, separators=(",", ":"), default=str) + "\n"


def bookkeeping_size_problem(doc: Any) -> str | None:
    """Annotations that fit the API server's limit alone but not with the copy Kopf adds to them: Kopf could
    never record that it handled the object (422 "Too long"), so the operator would handle it again and again.

    An object as stored (it has a uid) is measured as it is, Kopf's previous copy replaced by the new one. A
    manifest not yet applied (`kubetune validate`) is measured as `kubectl apply` would store it, with its copy
    of the manifest in kubectl.kubernetes.io/last-applied-configuration."""
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        return None
    meta = _dict(doc["metadata"])
    annotations = _dict(meta.get("annotations"))
    stored = _annotations_bytes({k: v for k, v in annotations.items() if k != KOPF_COPY_ANNOTATION})
    if stored > MAX_ANNOTATIONS_BYTES:
        return None  # refused as too large by itself (metadata_errors)
    if LAST_APPLIED_ANNOTATION in annotations:
        applied_bytes = len(str(annotations[LAST_APPLIED_ANNOTATION]).encode())
        applied = f", {applied_bytes:,} of them kubectl apply's copy in {LAST_APPLIED_ANNOTATION}"
    elif not meta.get("uid"):
        applied_bytes = len(LAST_APPLIED_ANNOTATION) + len(json.dumps(doc, separators=(",", ":"), default=str)) + 1
        stored += applied_bytes
        applied = f" with the {applied_bytes:,} that kubectl apply adds ({LAST_APPLIED_ANNOTATION})"
    else:
        applied = ""
    copy = len(KOPF_COPY_ANNOTATION) + len(_kopf_copy(doc).encode())
    total = stored + copy + KOPF_RECORDS_RESERVE_BYTES
    if total <= MAX_ANNOTATIONS_BYTES:
        return None
    return (
        f"{stored:,} bytes of annotations{applied}; the operator keeps a copy of spec, labels and annotations in "
        f"the annotation {KOPF_COPY_ANNOTATION} ({copy:,} bytes) and {KOPF_RECORDS_RESERVE_BYTES:,} bytes for "
        f"its progress records: {total:,} bytes in all, over the API server's limit of {MAX_ANNOTATIONS_BYTES:,} "
        "bytes of annotations per object. Keep large data out of annotations (a ConfigMap, or a URI to it)"
    )


def _cel_errors(target: Resource | dict[str, Any], source: str, typed: bool) -> list[ManifestError]:
    from kubetune.api import cel  # imported when used: celpy costs ~0.3 s of start-up

    try:
        found = cel.validate(target)
    except Exception as err:  # a value the rules cannot be evaluated on: the schema has already said why
        return [] if not typed else [ManifestError(source, "", f"the CEL rules could not be evaluated: {err}")]
    # With schema errors the rules run on the document as written; rules that could not run on a malformed
    # value stay quiet (the schema error says what is wrong there).
    return [ManifestError(source, e.path, e.message) for e in found if typed or e.evaluated]


def spec_errors(resource: Resource, source: str) -> list[ManifestError]:
    """Checks of one typed resource that neither the schema nor a CEL rule can say."""
    out: list[ManifestError] = []
    if isinstance(resource, FineTuneJob):
        from kubetune.data.methods import needs_of

        spec = resource.spec
        if spec.queue_name is not None:
            problem = label_value_problem(spec.queue_name) or (
                subdomain_problem(spec.queue_name) if spec.queue_name else "must not be empty"
            )
            if problem:
                out.append(
                    ManifestError(
                        source,
                        "spec.queueName",
                        f"{problem} (a Kueue LocalQueue name, set as the {c.LABEL_KUEUE_QUEUE} label)",
                    )
                )
        mismatch = needs_of(spec).mismatch(spec.dataset.format)
        if mismatch:
            out.append(ManifestError(source, "spec.dataset.format", mismatch))
    if isinstance(resource, ModelDeployment):
        out += [ManifestError(source, path, message) for path, message in serving_spec_problems(resource)]
    return out


def serving_spec_problems(deployment: ModelDeployment) -> list[tuple[str, str]]:
    """spec.extraArgs that set a flag the operator sets (or any, on the built-in server)."""
    spec = deployment.spec
    return extra_args_problems(
        spec.extra_args,
        runtime=served_runtime(spec.runtime, spec.resources.gpus),
        gpus=spec.resources.gpus,
        max_model_len=spec.max_model_len,
        adapters=bool(spec.adapters),
    )


def as_created(doc: Any) -> Any:
    """A kubetune document as the API server validates it on create: `status` dropped (the status subresource
    ignores it on create and update of the main resource) and nulls pruned or defaulted (kubetune.api.nulls).
    Other documents as they are."""
    if not is_ours(doc) or doc.get("apiVersion") != c.API_VERSION:
        return doc
    return prune_document({k: v for k, v in doc.items() if k != "status"})


def admit(doc: Any, source: str = "<manifest>") -> tuple[Resource | None, list[ManifestError]]:
    """Schema, metadata, CEL rules and spec checks of one document.

    (resource, []) when it is admitted; (None, errors) when not; (None, []) for a document that is not
    kubetune's (another kind with its own apiVersion), which callers skip.
    """
    doc = as_created(doc)
    resource, errors = parse_resource(doc, source)
    kind = doc.get("kind") if isinstance(doc, dict) else None
    ours = isinstance(kind, str) and kind in KINDS and doc.get("apiVersion") == c.API_VERSION
    if resource is None and not ours:
        return None, errors
    errors = [*errors, *metadata_errors(doc.get("metadata"), source)]
    too_large = bookkeeping_size_problem(doc)
    if too_large:
        errors.append(ManifestError(source, "metadata.annotations", too_large))
    errors += _cel_errors(resource if resource is not None else doc, source, typed=resource is not None)
    if resource is not None:
        errors += spec_errors(resource, source)
    return (resource, []) if not errors else (None, _dedupe(errors))


def admit_resource(resource: Resource | dict[str, Any]) -> list[ManifestError]:
    """The operator's guard: every check of `admit` on an object as the API server stored it."""
    doc = resource if isinstance(resource, dict) else resource.to_k8s()
    meta = doc.get("metadata") or {}
    _, errors = admit(doc, f"{doc.get('kind')} {meta.get('namespace') or 'default'}/{meta.get('name')}")
    return errors


def _dedupe(errors: list[ManifestError]) -> list[ManifestError]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for e in errors:
        key = (e.source, e.path, e.message)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _key(resource: Resource) -> tuple[str, str, str]:
    return (resource.metadata.namespace or "default", resource.kind, resource.metadata.name)


def cross_resource_errors(admitted: Iterable[tuple[str, Resource]]) -> list[ManifestError]:
    """What is certainly wrong between resources applied together (same namespace)."""
    out: list[ManifestError] = []
    by_key: dict[tuple[str, str, str], tuple[str, Resource]] = {}
    for source, res in admitted:
        key = _key(res)
        if key in by_key:
            out.append(
                ManifestError(
                    source, "metadata.name", f"{res.kind} {key[0]}/{key[2]} is also defined in {by_key[key][0]}"
                )
            )
            continue
        by_key[key] = (source, res)
    for (ns, _, name), (source, res) in by_key.items():
        if isinstance(res, FineTuneJob) and res.spec.base_model.from_job and res.spec.base_model.from_job.name == name:
            out.append(
                ManifestError(source, "spec.baseModel.fromJob.name", "a FineTuneJob cannot continue from itself")
            )
        if isinstance(res, ModelDeployment) and res.spec.promotion.evaluation:
            ev_name = res.spec.promotion.evaluation.name
            found = by_key.get((ns, c.EVALUATION, ev_name))
            if found is None or not isinstance(found[1], Evaluation):
                continue
            ev = found[1]
            served = res.spec.model.fine_tune_job.name if res.spec.model.fine_tune_job else None
            scored = ev.spec.model.fine_tune_job.name if ev.spec.model.fine_tune_job else None
            if served and scored != served:
                what = f"FineTuneJob {scored!r}" if scored else "no FineTuneJob's checkpoints"
                out.append(
                    ManifestError(
                        source,
                        "spec.promotion.evaluation.name",
                        f"Evaluation {ev_name!r} scores {what}, but this ModelDeployment serves FineTuneJob "
                        f"{served!r}: promote by an Evaluation of the job it serves",
                    )
                )
    return out


def admit_all(docs: Iterable[tuple[str, Any]]) -> tuple[list[tuple[str, Resource]], list[ManifestError]]:
    """`admit` of every document plus the checks across them: ([(source, resource)], errors).

    Documents that are not kubetune's are skipped; the resources returned are those admitted one by one.
    """
    admitted: list[tuple[str, Resource]] = []
    errors: list[ManifestError] = []
    for source, doc in docs:
        resource, errs = admit(doc, source)
        errors += errs
        if resource is not None:
            admitted.append((source, resource))
    errors += cross_resource_errors(admitted)
    return admitted, errors


__all__ = [
    "admit",
    "admit_all",
    "admit_resource",
    "as_created",
    "bookkeeping_size_problem",
    "cross_resource_errors",
    "is_ours",
    "metadata_errors",
    "spec_errors",
]
