"""A grader's regex or JSON schema that cannot work is refused at admission, naming the field, instead of
after the model loaded (or a pod was scheduled); the `$ref` rule is the one kubetune_trainer.matching uses."""

from __future__ import annotations

import pytest

from kubetune import constants as c
from kubetune.api.admission import admit

JOB = {"baseModel": {"uri": "hf://a/b"}, "dataset": {"train": {"uri": "t.jsonl"}}, "method": "rft"}
REMOTE = {"$ref": "https://example.com/schema.json"}


def refusals(kind: str, spec: dict) -> dict[str, str]:
    _, errors = admit({"apiVersion": c.API_VERSION, "kind": kind, "metadata": {"name": "x"}, "spec": spec}, "m.yaml")
    return {e.path: e.message for e in errors}


@pytest.mark.parametrize(
    ("grader", "field", "expected"),
    [
        ({"type": "regex", "pattern": "(["}, "pattern", "'([' is not a valid regular expression"),
        ({"type": "json_schema", "schema": {"type": 5}}, "schema", "not a valid JSON schema (at type)"),
        ({"type": "json_schema", "schema": REMOTE}, "schema", "$ref 'https://example.com/schema.json' points outside"),
    ],
    ids=["bad-regex", "bad-schema", "remote-ref"],
)
def test_a_grader_that_cannot_work_is_refused_naming_its_field(grader, field, expected):
    found = refusals(c.FINETUNEJOB, {**JOB, "rft": {"graders": [{"type": "exact_match"}, grader]}})
    assert list(found) == [f"spec.rft.graders[1].{field}"], found
    assert found[f"spec.rft.graders[1].{field}"].startswith(expected)


def test_refs_inside_the_schema_are_fine():
    schema = {"$defs": {"city": {"type": "string"}}, "type": "object", "properties": {"c": {"$ref": "#/$defs/city"}}}
    assert refusals(c.FINETUNEJOB, {**JOB, "rft": {"graders": [{"type": "json_schema", "schema": schema}]}}) == {}


def test_an_evaluation_schema_with_a_remote_ref_is_refused():
    spec = {
        "model": {"uri": "hf://a/b"},
        "dataset": {"uri": "t.jsonl"},
        "metrics": ["json_schema"],
        "jsonSchema": REMOTE,
    }
    found = refusals(c.EVALUATION, spec)
    assert list(found) == ["spec.jsonSchema"] and "points outside the schema" in found["spec.jsonSchema"]
