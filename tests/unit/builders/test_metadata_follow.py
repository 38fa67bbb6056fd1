"""A label or annotation change on a FineTuneJob reaches its existing children as a metadata-only merge patch
(builders.meta.metadata_patch): added and changed keys set, dropped keys removed, keys set by others kept."""

from __future__ import annotations

import json
from typing import Any

from kubetune import constants as c
from kubetune.builders.meta import Propagation, metadata_patch, propagate, propagated

TEAM = {"team": "travel", "cost-center": "cc-1"}
OWNER = {f"{c.ANNOTATION_PROPAGATE_PREFIX}owner": "alice@example.com"}


def parent(labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.FINETUNEJOB,
        "metadata": {
            "name": "travel",
            "namespace": "team-a",
            "uid": "u1",
            "labels": labels,
            "annotations": annotations or {},
        },
    }


def made_for(obj: dict[str, Any]) -> dict[str, Any]:
    """A child as the operator creates it for `obj` (with what `obj` passes on then)."""
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "travel-train",
            "labels": {c.LABEL_ROLE: "train"},
            "annotations": {c.ANNOTATION_SPEC_HASH: "h"},
        },
        "spec": {"template": {"metadata": {"labels": {}}, "spec": {}}},
    }
    (out,) = propagate([job], obj, Propagation())
    assert out is not None
    return out


def patch_for(child: dict[str, Any], obj: dict[str, Any], propagation: Propagation | None = None) -> Any:
    labels, annotations = propagated(obj, propagation or Propagation())
    return metadata_patch(child, labels, annotations)


def test_a_created_child_records_what_was_passed_on_and_needs_no_patch():
    obj = parent(TEAM, OWNER)
    child = made_for(obj)
    record = json.loads(child["metadata"]["annotations"][c.ANNOTATION_PROPAGATED])
    assert record == {"labels": ["cost-center", "team"], "annotations": sorted(OWNER)}
    assert c.ANNOTATION_PROPAGATED not in child["spec"]["template"]["metadata"].get("annotations", {})
    assert patch_for(child, obj) is None


def test_a_changed_added_and_removed_label_is_patched_and_a_label_set_by_someone_else_is_kept():
    child = made_for(parent(TEAM, OWNER))
    child["metadata"]["labels"]["added-by-hand"] = "yes"  # not the parent's: never touched
    relabelled = parent({"cost-center": "cc-9999", "priority": "high"}, {})
    patch = patch_for(child, relabelled)
    assert patch["metadata"]["labels"] == {"cost-center": "cc-9999", "priority": "high", "team": None}
    annotations = patch["metadata"]["annotations"]
    assert annotations[next(iter(OWNER))] is None
    assert json.loads(annotations[c.ANNOTATION_PROPAGATED]) == {
        "labels": ["cost-center", "priority"],
        "annotations": [],
    }
    assert set(patch) == {"metadata"}  # metadata only: never the (immutable) pod template


def test_applying_the_patch_reaches_the_wanted_metadata_and_then_nothing_more_is_patched():
    child = made_for(parent(TEAM))
    obj = parent({"team": "travel"}, OWNER)
    patch = patch_for(child, obj)
    for part, changes in patch["metadata"].items():  # a JSON merge patch, as the API server applies it
        target = child["metadata"].setdefault(part, {})
        for key, value in changes.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    assert child["metadata"]["labels"] == {c.LABEL_ROLE: "train", "team": "travel"}
    assert child["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH] == "h"  # kubetune's own stay
    assert child["metadata"]["annotations"][next(iter(OWNER))] == "alice@example.com"
    assert patch_for(child, obj) is None


def test_everything_removed_drops_the_record_too_and_chart_defaults_count_as_passed_on():
    child = made_for(parent(TEAM))
    patch = patch_for(child, parent({}))
    assert patch["metadata"]["labels"] == {"team": None, "cost-center": None}
    assert patch["metadata"]["annotations"] == {c.ANNOTATION_PROPAGATED: None}
    defaults = Propagation(default_labels={"platform": "ml"})
    assert patch_for(made_for(parent({})), parent({}), defaults)["metadata"]["labels"] == {"platform": "ml"}


def test_a_child_made_before_records_existed_only_gains_keys():
    child = made_for(parent({}))
    child["metadata"]["labels"]["team"] = "old"  # passed on by an older operator, or set by hand: unknown
    patch = patch_for(child, parent({"cost-center": "cc-1"}))
    assert patch["metadata"]["labels"] == {"cost-center": "cc-1"}
