"""Kopf's record of the last handled state (its "diffbase"), kept where the operator sets it up (main.py).

Kopf copies an object's spec, labels and annotations into the annotation kubetune.dev/last-handled-configuration
after handling it. For an object whose annotations leave no room for that copy (admission refuses it:
kubetune.api.admission.bookkeeping_size_problem), the API server would refuse the copy (422 "Too long") and Kopf
would handle the object again every second, forever. For such an object the copy carries a digest of each long
annotation value instead of the value: Kopf records the failure once, and still notices when a value changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import kopf

from kubetune.api.admission import bookkeeping_size_problem

# Values longer than this are replaced by their digest in the copy of a refused object (a digest is 71 bytes).
DIGESTED_VALUE_BYTES = 256


def digested(value: Any) -> Any:
    if not isinstance(value, str) or len(value.encode()) <= DIGESTED_VALUE_BYTES:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


class FittingDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Kopf's annotation storage of the last handled state, with long annotation values digested in the copy of
    an object that admission refuses as too large for it."""

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[kopf.FieldSpec] | None = None,
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        if bookkeeping_size_problem(dict(body)) is None:
            return essence
        annotations = essence.get("metadata", {}).get("annotations") or {}
        for key, value in list(annotations.items()):
            annotations[key] = digested(value)
        return essence
