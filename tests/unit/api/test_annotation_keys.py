"""spec.serviceAccount.annotations keys are checked as the API server checks metadata.annotations keys: every bad
key is named at its own path (kubetune validate, the operator), and the CRD's CEL rule refuses them at apply."""

from __future__ import annotations

import pytest

from kubetune import constants as c
from kubetune.api.admission import admit

JOB = {"method": "sft", "baseModel": {"uri": "hf://m"}, "dataset": {"train": {"uri": "pvc://d/t.jsonl"}}}
EVAL = {"model": {"fineTuneJob": {"name": "j"}}, "dataset": {"uri": "pvc://d/e.jsonl"}}


@pytest.mark.parametrize(("kind", "spec"), [(c.FINETUNEJOB, JOB), (c.EVALUATION, EVAL)])
def test_every_bad_service_account_annotation_key_is_named_with_its_path(kind, spec):
    keys = {"a/b/c": "v", "not a valid key!": "v", "iam.gke.io/gcp-service-account": "sa@p.iam"}
    doc = {
        "apiVersion": c.API_VERSION,
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": {**spec, "serviceAccount": {"annotations": keys}},
    }
    resource, errors = admit(doc)
    assert resource is None
    paths = {e.path for e in errors}
    assert 'spec.serviceAccount.annotations["a/b/c"]' in paths
    assert 'spec.serviceAccount.annotations["not a valid key!"]' in paths
    assert not any("iam.gke.io" in p for p in paths)
    assert "spec.serviceAccount.annotations" in paths  # the CRD's rule, as kubectl apply says it


def test_good_keys_are_admitted():
    doc = {
        "apiVersion": c.API_VERSION,
        "kind": c.FINETUNEJOB,
        "metadata": {"name": "x"},
        "spec": {**JOB, "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}}},
    }
    resource, errors = admit(doc)
    assert errors == [] and resource is not None
