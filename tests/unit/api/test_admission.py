"""One admission (kubetune.api.admission) for validate, run and the operator: schema, CEL rules, metadata,
spec and cross-resource checks, each refusal naming the field."""

from __future__ import annotations

import copy

import kopf
import pytest

from kubetune.api import FineTuneJob
from kubetune.api.admission import admit, admit_all, admit_resource
from kubetune.controllers import common

JOB = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "travel", "namespace": "team"},
    "spec": {"baseModel": {"uri": "hf://a/b"}, "dataset": {"train": {"uri": "pvc://d/train.jsonl"}}},
}
EVAL = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "Evaluation",
    "metadata": {"name": "travel-eval", "namespace": "team"},
    "spec": {"model": {"fineTuneJob": {"name": "travel"}}, "dataset": {"uri": "pvc://d/test.jsonl"}},
}
DEPLOY = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "travel", "namespace": "team"},
    "spec": {"model": {"fineTuneJob": {"name": "travel"}}, "promotion": {"evaluation": {"name": "travel-eval"}}},
}


def with_(doc: dict, path: str, value) -> dict:
    """A copy of doc with the dotted path set (created where missing)."""
    out = copy.deepcopy(doc)
    node = out
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def refusals(doc: dict) -> list[str]:
    resource, errors = admit(doc, "m.yaml")
    assert (resource is None) == bool(errors)
    return [f"{e.path}: {e.message}" for e in errors]


def test_a_valid_job_is_admitted():
    resource, errors = admit(JOB, "m.yaml")
    assert errors == [] and resource is not None and resource.metadata.name == "travel"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.dataset.validationSplit", 0.1, "spec.dataset: set at most one of dataset.validation or dataset.validationSplit"),
        ("spec.freezeLayers", 2, "spec.freezeLayers: freezeLayers applies to full fine-tuning"),
        ("spec.rft", {"graders": [{"type": "exact_match"}]}, "spec.rft: method rft needs the rft section"),
        ("spec.dpo", {"beta": 0.2}, "spec.dpo: dpo is only valid with method dpo"),
    ],
    ids=["validation-and-split", "freeze-with-lora", "rft-on-sft", "dpo-on-sft"],
)  # fmt: skip
def test_cel_rules_refuse_a_job_naming_the_field(path, value, expected):
    doc = with_(JOB, "spec.dataset.validation", {"uri": "pvc://d/valid.jsonl"}) if "Split" in path else JOB
    assert any(r.startswith(expected) for r in refusals(with_(doc, path, value))), refusals(with_(doc, path, value))


def test_a_regex_grader_without_pattern_is_refused():
    doc = with_(JOB, "spec.method", "rft")
    doc = with_(doc, "spec.rft", {"graders": [{"type": "regex"}]})
    assert "spec.rft.graders[0].pattern: a regex grader needs pattern" in refusals(doc)


def test_a_misspelled_select_by_is_refused():
    doc = with_(EVAL, "spec.selectBy", "exact_mach")
    assert "spec.selectBy: selectBy must be one of metrics" in refusals(doc)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("metadata.name", "a..b", "metadata.name: 'a..b' is not a DNS-1123 subdomain"),
        ("metadata.namespace", "../../x", "metadata.namespace: '../../x' is not a DNS-1123 label"),
        ("metadata.namespace", "team.a", "metadata.namespace: 'team.a' is not a DNS-1123 label"),
        ("metadata.namespace", "n" * 64, "metadata.namespace: must be no more than 63 characters"),
        ("metadata.labels", {"team name": "x"}, "metadata.labels: 'team name': the name part"),
        ("metadata.labels", {"example.com/": "x"}, "metadata.labels: 'example.com/': the name part"),
        ("metadata.labels", {"team": "v" * 64}, "metadata.labels[team]: must be no more than 63 characters"),
        ("metadata.labels", {"team": "a b"}, "metadata.labels[team]: 'a b' must be empty or"),
        ("metadata.annotations", {"Bad_Prefix.com/x": "1"}, "metadata.annotations: 'Bad_Prefix.com/x': the prefix"),
    ],
)  # fmt: skip
def test_metadata_is_checked_like_the_api_server(path, value, expected):
    found = refusals(with_(JOB, path, value))
    assert any(r.startswith(expected) for r in found), found


@pytest.mark.parametrize("queue", ["Team Queue", "Team-Queue", "", "q" * 64, "team.queue-"])
def test_queue_name_must_be_a_local_queue_name_and_label_value(queue):
    found = refusals(with_(JOB, "spec.queueName", queue))
    assert found and all(r.startswith("spec.queueName: ") for r in found), found


def test_valid_labels_annotations_and_queue_pass():
    doc = with_(JOB, "metadata.labels", {"app.kubernetes.io/name": "travel", "empty": ""})
    doc = with_(doc, "metadata.annotations", {"example.com/note": "any text at all: ✓"})
    doc = with_(doc, "spec.queueName", "team-travel")
    assert refusals(doc) == []


def test_a_declared_format_the_method_cannot_train_on_is_refused():
    doc = with_(with_(JOB, "spec.method", "dpo"), "spec.dataset.format", "chat")
    found = refusals(doc)
    assert any(r.startswith("spec.dataset.format: spec.method dpo trains on preference") for r in found), found


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (with_(JOB, "apiVersion", "Kubetune.dev/v1alpha1"), "apiVersion: unsupported apiVersion 'Kubetune.dev/v1alpha1'"),
        (with_(JOB, "apiVersion", "kubetune.dev/v1"), "apiVersion: unsupported apiVersion 'kubetune.dev/v1'"),
        ({k: v for k, v in JOB.items() if k != "apiVersion"}, "apiVersion: apiVersion is missing"),
        ({"metadata": {"name": "x"}}, "apiVersion: apiVersion is missing"),
        ({"apiVersion": "v1", "metadata": {"name": "x"}}, "kind: kind is missing"),
    ],
    ids=["capitalised-group", "other-version", "no-api-version", "no-api-version-or-kind", "no-kind"],
)  # fmt: skip
def test_wrong_or_missing_api_version_and_kind_are_errors(doc, expected):
    assert any(r.startswith(expected) for r in refusals(doc)), refusals(doc)


def test_foreign_kinds_are_skipped():
    assert admit({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}) == (None, [])


def test_a_deployment_promoted_by_an_evaluation_of_another_job_is_refused():
    other = with_(EVAL, "spec.model.fineTuneJob.name", "other")
    admitted, errors = admit_all([("a.yaml#1", JOB), ("a.yaml#2", other), ("a.yaml#3", DEPLOY)])
    assert len(admitted) == 3
    assert [str(e) for e in errors] == [
        "a.yaml#3: spec.promotion.evaluation.name: Evaluation 'travel-eval' scores FineTuneJob 'other', but this "
        "ModelDeployment serves FineTuneJob 'travel': promote by an Evaluation of the job it serves"
    ]
    assert admit_all([("a.yaml#1", JOB), ("a.yaml#2", EVAL), ("a.yaml#3", DEPLOY)])[1] == []


def test_duplicates_and_a_job_continuing_from_itself_are_refused():
    itself = with_(JOB, "spec.baseModel", {"fromJob": {"name": "travel"}})
    _, errors = admit_all([("a.yaml", itself), ("b.yaml", JOB)])
    found = [str(e) for e in errors]
    assert "b.yaml: metadata.name: FineTuneJob team/travel is also defined in a.yaml" in found
    assert "a.yaml: spec.baseModel.fromJob.name: a FineTuneJob cannot continue from itself" in found


def test_the_operator_guard_refuses_what_validate_refuses():
    bad = with_(JOB, "spec.freezeLayers", 2)
    assert [e.path for e in admit_resource(bad)] == ["spec.freezeLayers"]
    with pytest.raises(kopf.PermanentError, match=r"invalid resource: spec\.freezeLayers: freezeLayers applies"):
        common.parse(FineTuneJob, bad)
    assert common.parse(FineTuneJob, JOB).metadata.name == "travel"
