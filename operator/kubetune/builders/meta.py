"""Metadata every child object carries: name, namespace, labels, and the owner reference to its parent."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetune import constants as c
from kubetune.api.evaluation import Evaluation
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.builders import names

Parent = FineTuneJob | Evaluation | ModelDeployment | Mapping[str, Any]

PARENT_LABELS = {c.FINETUNEJOB: c.LABEL_JOB, c.EVALUATION: c.LABEL_EVALUATION, c.MODELDEPLOYMENT: c.LABEL_DEPLOYMENT}


def _parts(obj: Parent) -> tuple[str, str, str, str | None, str | None]:
    """(apiVersion, kind, name, namespace, uid) of a typed resource or a raw body."""
    if isinstance(obj, Mapping):
        meta = obj.get("metadata") or {}
        return obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"), meta.get("uid")
    return obj.api_version, obj.kind, obj.metadata.name, obj.metadata.namespace, obj.metadata.uid


def owner_reference(obj: Parent) -> dict[str, Any]:
    """The controller owner reference to `obj`: the child is garbage-collected with it.

    Raises ValueError without a uid (an owner reference to nothing would orphan the child at once).
    """
    api_version, kind, name, _, uid = _parts(obj)
    if not uid:
        raise ValueError(f"{kind} {name!r} has no metadata.uid; owner references need one")
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(obj: Parent, role: str, *, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """metadata of the child `<parent>-<role>` of `obj`: namespace, labels and owner reference."""
    _, kind, parent, namespace, _ = _parts(obj)
    meta: dict[str, Any] = {
        "name": name or names.child_name(parent, role),
        "namespace": namespace,
        "labels": names.labels(PARENT_LABELS[kind], parent, role),
        "ownerReferences": [owner_reference(obj)],
    }
    for key, value in extra.items():
        if value:
            meta[key] = value
    return meta


# --- Governance: labels and annotations a resource passes on to its children ---

# Label keys (by prefix) a resource does not pass on: the bookkeeping of the tools that applied it (kubectl,
# Argo CD, whose tracking label is app.kubernetes.io/instance, Flux, Helm), kubetune's own labels (the
# children carry their own), and what Kubernetes sets on Jobs and pods.
EXCLUDED_LABEL_PREFIXES = (
    "kubectl.kubernetes.io/",
    "argocd.argoproj.io/",
    "app.kubernetes.io/",
    "kustomize.toolkit.fluxcd.io/",
    "helm.toolkit.fluxcd.io/",
    "helm.sh/",
    f"{c.GROUP}/",
    "batch.kubernetes.io/",
)
# Single keys not passed on: Kueue's queue label (spec.queueName is the one way to queue a workload: the
# operator then also creates it suspended) and the labels the Job controller sets on its pods.
EXCLUDED_LABELS = frozenset({c.LABEL_KUEUE_QUEUE, "controller-uid", "job-name"})


@dataclass(frozen=True)
class Propagation:
    """Which labels and annotations every child object (Job, JobSet, pod template, PVC, ConfigMap, RBAC,
    Service, Deployment) carries besides kubetune's own.

    From the resource: every label except EXCLUDED_LABEL_PREFIXES / EXCLUDED_LABELS (so a team's `team`,
    `cost-center` or Kueue's `kueue.x-k8s.io/priority-class` reach the Job and its pods), and the annotations
    whose key starts with one of `annotation_prefixes`. From the chart (operator settings): `default_labels`
    and `default_annotations`, which the resource's own override. kubetune's labels override both.
    """

    default_labels: Mapping[str, str] = field(default_factory=dict)
    default_annotations: Mapping[str, str] = field(default_factory=dict)
    annotation_prefixes: tuple[str, ...] = (c.ANNOTATION_PROPAGATE_PREFIX,)


def _parent_meta(obj: Parent) -> tuple[Mapping[str, str], Mapping[str, str]]:
    if isinstance(obj, Mapping):
        meta = obj.get("metadata") or {}
        return meta.get("labels") or {}, meta.get("annotations") or {}
    return obj.metadata.labels, obj.metadata.annotations


def label_passes(key: str) -> bool:
    """Whether a resource's label `key` is passed on to its children."""
    return key not in EXCLUDED_LABELS and not key.startswith(EXCLUDED_LABEL_PREFIXES)


def propagated(obj: Parent, propagation: Propagation) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) the children of `obj` carry, before kubetune's own."""
    labels, annotations = _parent_meta(obj)
    out_labels = {**propagation.default_labels, **{k: v for k, v in labels.items() if label_passes(k)}}
    prefixes = propagation.annotation_prefixes
    chosen = {k: v for k, v in annotations.items() if prefixes and k.startswith(prefixes)}
    return out_labels, {**propagation.default_annotations, **chosen}


def _merge_into(meta: dict[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]) -> None:
    """Add labels/annotations to `meta`; keys it has already (kubetune's) stay as they are."""
    if labels:
        meta["labels"] = {**labels, **(meta.get("labels") or {})}
    if annotations:
        meta["annotations"] = {**annotations, **(meta.get("annotations") or {})}


def _into_templates(spec: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]) -> None:
    """Pod and Job templates below `spec`: a Job's or Deployment's `template`, a JobSet's replicatedJobs."""
    template = spec.get("template")
    if isinstance(template, dict):
        _merge_into(template.setdefault("metadata", {}), labels, annotations)
        inner = template.get("spec")
        if isinstance(inner, dict):
            _into_templates(inner, labels, annotations)
    for replicated in spec.get("replicatedJobs") or []:
        _into_templates(replicated, labels, annotations)


def propagated_record(labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    """The value of a child's ANNOTATION_PROPAGATED: which keys its parent passed on (sorted JSON)."""
    return json.dumps({"labels": sorted(labels), "annotations": sorted(annotations)}, separators=(",", ":"))


def _recorded(meta: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(label keys, annotation keys) a child's record says were passed on; none without (or with a broken) one."""
    raw = (meta.get("annotations") or {}).get(c.ANNOTATION_PROPAGATED)
    try:
        found = json.loads(raw) if raw else {}
        return set(found.get("labels") or []), set(found.get("annotations") or [])
    except (ValueError, AttributeError, TypeError):
        return set(), set()


def _own_key(key: str) -> bool:
    """kubetune's own keys on a child (spec-hash, the record ...): never set or removed by propagation."""
    return key.startswith(f"{c.GROUP}/")


def metadata_patch(
    child: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any] | None:
    """The merge patch of an existing child's metadata that makes it carry what its parent passes on now
    (`labels`, `annotations`, from `propagated`); None when it does already.

    Keys the child's record lists and the parent no longer passes on are removed; keys nobody passed on (set
    on the child by someone else) are never touched. Metadata only: a Job's pod template is immutable, so its
    pods keep what they were created with.
    """
    meta = child.get("metadata") or {}
    old_labels, old_annotations = _recorded(meta)
    patch: dict[str, dict[str, str | None]] = {}
    for part, wanted, old in (("labels", labels, old_labels), ("annotations", annotations, old_annotations)):
        have = meta.get(part) or {}
        changes: dict[str, str | None] = {k: v for k, v in wanted.items() if not _own_key(k) and have.get(k) != v}
        changes |= {k: None for k in old - set(wanted) if k in have and not _own_key(k)}
        if changes:
            patch[part] = changes
    record = propagated_record(labels, annotations) if labels or annotations else None
    if (meta.get("annotations") or {}).get(c.ANNOTATION_PROPAGATED) != record:
        patch.setdefault("annotations", {})[c.ANNOTATION_PROPAGATED] = record
    return {"metadata": patch} if patch else None


def with_propagated(
    manifest: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    """A copy of `manifest` whose metadata and pod templates also carry `labels` and `annotations`; its metadata
    records which keys those were (ANNOTATION_PROPAGATED, see `metadata_patch`)."""
    out = copy.deepcopy(dict(manifest))
    _merge_into(out.setdefault("metadata", {}), labels, annotations)
    out["metadata"].setdefault("annotations", {})[c.ANNOTATION_PROPAGATED] = propagated_record(labels, annotations)
    spec = out.get("spec")
    if isinstance(spec, dict):
        _into_templates(spec, labels, annotations)
    return out


def propagate(
    manifests: Iterable[Mapping[str, Any] | None], obj: Parent, propagation: Propagation | None
) -> list[dict[str, Any] | None]:
    """`manifests` (children of `obj`; None stays None) with the labels and annotations `obj` passes on."""
    labels, annotations = propagated(obj, propagation or Propagation())
    if not labels and not annotations:  # nothing to pass on (most objects): no copy of every child
        return [None if m is None else dict(m) for m in manifests]
    return [None if m is None else with_propagated(m, labels, annotations) for m in manifests]
