"""Admission says what is wrong in words and names the field: name patterns are not printed as regexes, and
lists that the API server keeps as sets refuse duplicates."""

from __future__ import annotations

from kubetune import constants as c
from kubetune.api import crdgen
from kubetune.api.admission import admit

JOB = {"baseModel": {"uri": "hf://a/b"}, "dataset": {"train": {"uri": "t.jsonl"}}}
EVAL = {"model": {"uri": "hf://a/b"}, "dataset": {"uri": "t.jsonl"}}


def refusals(kind: str, spec: dict) -> dict[str, str]:
    _, errors = admit({"apiVersion": c.API_VERSION, "kind": kind, "metadata": {"name": "x"}, "spec": spec}, "m.yaml")
    return {e.path: e.message for e in errors}


def test_a_bad_queue_name_is_explained_not_shown_as_a_regex():
    found = refusals(c.FINETUNEJOB, {**JOB, "queueName": "Team.Q"})
    assert found == {
        "spec.queueName": "'Team.Q' is not a DNS-1123 label: lower-case letters, digits and '-', starting and "
        "ending with a letter or digit"
    }


def test_a_metric_listed_twice_is_refused_and_the_crd_keeps_metrics_a_set():
    assert refusals(c.EVALUATION, {**EVAL, "metrics": ["f1", "bleu", "f1"]}) == {
        "spec.metrics": "f1 listed more than once"
    }
    crd = next(d for d in crdgen.crds() if d["spec"]["names"]["kind"] == c.EVALUATION)
    metrics = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["metrics"]
    assert metrics["x-kubernetes-list-type"] == "set"
