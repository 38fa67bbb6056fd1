"""Admission agrees with a real kube-apiserver (issue 16): strict JSON types, ObjectMeta's fields only, nulls
pruned and `status` ignored on create, the seed and resource quantities bounded. The same cases go to the
real server in tests/integration/test_real_apiserver_admission.py (ADMISSION_CASES)."""

from __future__ import annotations

import copy

import pytest

from kubetune.api import crdgen
from kubetune.api.admission import admit
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.nulls import prune_nulls

JOB = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "travel", "namespace": "team"},
    "spec": {"baseModel": {"uri": "hf://a/b"}, "dataset": {"train": {"uri": "pvc://d/train.jsonl"}}},
}


def with_(path: str, value) -> dict:
    out = copy.deepcopy(JOB)
    node = out
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


# (id, dotted path, value, the path the refusal names or None when admitted): the API server's verdicts.
CASES = [
    ("epochs-string", "spec.hyperparameters.epochs", "3", "spec.hyperparameters.epochs"),
    ("batch-size-string", "spec.hyperparameters.batchSize", "8", "spec.hyperparameters.batchSize"),
    ("packing-string", "spec.hyperparameters.packing", "true", "spec.hyperparameters.packing"),
    ("packing-int", "spec.hyperparameters.packing", 1, "spec.hyperparameters.packing"),
    ("learning-rate-bool", "spec.hyperparameters.learningRate", True, "spec.hyperparameters.learningRate"),
    ("suspend-string", "spec.suspend", "yes", "spec.suspend"),
    ("gpus-string", "spec.resources.gpus", "1", "spec.resources.gpus"),
    ("uri-int", "spec.baseModel.uri", 5, "spec.baseModel.uri"),
    ("learning-rate-int", "spec.hyperparameters.learningRate", 1, None),  # JSON integers are numbers
    ("epochs-int", "spec.hyperparameters.epochs", 2, None),
    ("metadata-unknown", "metadata.bogus", 1, "metadata.bogus"),
    ("adapter-null", "spec.adapter", None, None),
    ("hyperparameters-null", "spec.hyperparameters", None, None),
    ("epochs-null", "spec.hyperparameters.epochs", None, None),
    ("labels-null", "metadata.labels", None, None),
    ("status-ignored", "status", {"phase": "Bogus"}, None),
    ("seed-max", "spec.hyperparameters.seed", 2**32 - 1, None),
    ("seed-2-32", "spec.hyperparameters.seed", 2**32, "spec.hyperparameters.seed"),
    ("seed-2-63", "spec.hyperparameters.seed", 2**63, "spec.hyperparameters.seed"),
    ("cpu-negative", "spec.resources.cpu", "-8", "spec.resources.cpu"),
    ("cpu-negative-int", "spec.resources.cpu", -8, "spec.resources.cpu"),
    ("memory-negative", "spec.resources.memory", "-1Gi", "spec.resources.memory"),
    ("storage-negative", "spec.storage.size", "-50Gi", "spec.storage.size"),
    ("cpu-plus", "spec.resources.cpu", "+8", None),
    ("cpu-millis", "spec.resources.cpu", "500m", None),
]


def refused_at(doc: dict) -> set[str]:
    resource, errors = admit(doc, "m.yaml")
    assert (resource is None) == bool(errors)
    return {e.path for e in errors}


@pytest.mark.parametrize(("path", "value", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_admitted_or_refused_as_the_api_server_does(path: str, value, expected: str | None) -> None:
    assert refused_at(with_(path, value)) == ({expected} if expected else set())


def test_a_quoted_number_is_refused_saying_what_was_given() -> None:
    _, errors = admit(with_("spec.hyperparameters.batchSize", "8"), "m.yaml")
    assert [str(e) for e in errors] == [
        "m.yaml: spec.hyperparameters.batchSize: must be an integer, not a string '8' (remove the quotes)"
    ]


def test_a_seed_beyond_int64_names_the_field_not_a_cel_overflow() -> None:
    _, errors = admit(with_("spec.hyperparameters.seed", 2**63), "m.yaml")
    (error,) = errors
    assert error.path == "spec.hyperparameters.seed" and "4294967295" in error.message
    assert "CEL" not in error.message


def test_a_null_section_gets_the_defaults_of_a_missing_one() -> None:
    resource, errors = admit(with_("spec.hyperparameters", None), "m.yaml")
    assert errors == [] and isinstance(resource, FineTuneJob)
    assert resource.spec.hyperparameters == FineTuneJob.model_validate(JOB).spec.hyperparameters


def test_a_null_list_item_is_not_pruned_and_is_refused() -> None:
    """prunenulls.go recurses into list items but never removes one: the schema refuses the null."""
    doc = with_("spec.resources.tolerations", [None])
    assert refused_at(doc) == {"spec.resources.tolerations[0]"}


def test_nulls_are_pruned_or_defaulted_by_the_schema() -> None:
    node = {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "integer", "default": 3},
            "c": {"type": "integer", "nullable": True},
            "m": {"type": "object", "additionalProperties": {"type": "string"}},
            "xs": {"type": "array", "items": {"type": "object", "properties": {"y": {"type": "string"}}}},
        },
    }
    value = {"a": None, "b": None, "c": None, "m": {"k": None}, "xs": [None, {"y": None}], "unknown": None}
    assert prune_nulls(value, node) == {"b": 3, "c": None, "m": {}, "xs": [None, {}], "unknown": None}


def test_the_crd_bounds_the_seed_and_quantities() -> None:
    schema = crdgen.openapi_schema(FineTuneJob)["properties"]["spec"]["properties"]
    assert schema["hyperparameters"]["properties"]["seed"]["maximum"] == 2**32 - 1
    cpu = schema["resources"]["properties"]["cpu"]
    assert cpu["minimum"] == 0 and cpu["pattern"].startswith(r"^(\+?")
