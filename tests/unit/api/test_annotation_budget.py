"""Annotations and Kopf's copy of them (T2 D6): Kopf keeps spec, labels and annotations (but kubectl's
last-applied-configuration) in the annotation kubetune.dev/last-handled-configuration, so an object whose
annotations fit the API server's 256 KiB alone can still leave no room for that copy. Admission refuses it up to
the byte, measured with Kopf's own essence; the operator's Kopf storage then records the refusal with digests."""

from __future__ import annotations

import copy
import json
from typing import Any, cast

import kopf

from kubetune.api.admission import (
    KOPF_COPY_ANNOTATION,
    KOPF_RECORDS_RESERVE_BYTES,
    LAST_APPLIED_ANNOTATION,
    MAX_ANNOTATIONS_BYTES,
    admit,
)
from kubetune.controllers.kopf_storage import FittingDiffBaseStorage

BLOB = "propagate.kubetune.dev/blob"
JOB = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "travel", "namespace": "team", "uid": "0b7f6d3c-1", "labels": {"team": "travel"}},
    "spec": {"baseModel": {"uri": "hf://a/b"}, "dataset": {"train": {"uri": "pvc://d/train.jsonl"}}},
}


def stored(blob: int, label: int = 1, **annotations: str) -> dict[str, Any]:
    """The job as the API server stores it (a uid), with a `blob`-byte annotation and a `label`-byte label."""
    doc = copy.deepcopy(JOB)
    doc["metadata"]["annotations"] = {BLOB: "y" * blob, **annotations}
    doc["metadata"]["labels"]["pad"] = "p" * label
    return doc


def kopfs_total(doc: dict[str, Any]) -> int:
    """The object's annotations once Kopf has added its copy (Kopf's own code), plus the reserve for its records."""
    essence = kopf.AnnotationsDiffBaseStorage(prefix="kubetune.dev", key="last-handled-configuration").build(
        body=body(doc)
    )
    annotations = {**doc["metadata"]["annotations"], KOPF_COPY_ANNOTATION: json.dumps(essence, separators=(",", ":"))}
    return sum(
        len(k.encode()) + len(v.encode()) + (1 if k == KOPF_COPY_ANNOTATION else 0) for k, v in annotations.items()
    )


def body(doc: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, doc))


def built(storage: FittingDiffBaseStorage, doc: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], storage.build(body=body(doc)))


def errors(doc: dict[str, Any]) -> list[str]:
    return [f"{e.path}: {e.message}" for e in admit(doc, "job.yaml")[1]]


def test_refused_from_the_first_byte_over_the_limit_with_kopfs_copy_counted():
    room = MAX_ANNOTATIONS_BYTES - KOPF_RECORDS_RESERVE_BYTES - kopfs_total(stored(120_000))
    assert 0 < room < 20_000  # the 120 KB annotation fits alone, and twice, but not with the rest
    blob = 120_000 + room // 2  # a byte of the annotation counts twice (object, copy); of a label once (copy)
    at_limit, over = stored(blob, label=1 + room % 2), stored(blob, label=2 + room % 2)
    assert kopfs_total(at_limit) + KOPF_RECORDS_RESERVE_BYTES == MAX_ANNOTATIONS_BYTES
    assert errors(at_limit) == []
    (refusal,) = errors(over)
    assert refusal.startswith(f"metadata.annotations: {len(BLOB) + blob:,} bytes of annotations")
    assert f"{MAX_ANNOTATIONS_BYTES + 1:,} bytes in all" in refusal and "limit of 262,144 bytes" in refusal
    assert KOPF_COPY_ANNOTATION in refusal


def test_kubectls_last_applied_copy_counts_in_the_object_but_not_in_kopfs_copy():
    applied = stored(80_000)
    applied["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = json.dumps(stored(80_000))
    assert errors(applied) == []  # 80 KB three times (object, kubectl's copy, Kopf's copy); four would not fit
    applied = stored(100_000)
    applied["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = json.dumps(stored(100_000))
    (refusal,) = errors(applied)
    assert f"of them kubectl apply's copy in {LAST_APPLIED_ANNOTATION}" in refusal


def test_a_manifest_not_yet_applied_is_measured_as_kubectl_apply_stores_it():
    manifest = stored(100_000)
    del manifest["metadata"]["uid"]
    (refusal,) = errors(manifest)  # 100 KB x 3 (the manifest, kubectl apply's copy, Kopf's copy)
    assert "that kubectl apply adds" in refusal
    assert errors(stored(100_000)) == []  # kubectl create: stored once, copied once


def test_kopfs_copy_of_a_refused_object_digests_long_values_and_fits():
    storage = FittingDiffBaseStorage(prefix="kubetune.dev", key="last-handled-configuration")
    small, large = stored(2_000), stored(130_000)
    assert built(storage, small)["metadata"]["annotations"][BLOB] == "y" * 2_000
    copied = built(storage, large)["metadata"]
    assert copied["annotations"][BLOB].startswith("sha256:") and len(copied["annotations"][BLOB]) == 71
    assert copied["labels"] == large["metadata"]["labels"]  # labels as they are: only annotation values digested
    changed = stored(130_000)
    changed["metadata"]["annotations"][BLOB] = "z" * 130_000
    assert built(storage, changed) != built(storage, large)  # a change is seen
