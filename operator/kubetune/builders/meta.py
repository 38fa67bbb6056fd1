"""Metadata every child object carries: name, namespace, labels, and the owner reference to its parent."""

from __future__ import annotations

from collections.abc import Mapping
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
