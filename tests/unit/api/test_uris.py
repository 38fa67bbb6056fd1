"""hf:// and pvc:// URIs: one parser in kubetune.api, so validate, admission and the trainer refuse the same
odd names with a kubetune message naming the field (never a huggingface_hub traceback, never a path out of
the claim)."""

from __future__ import annotations

import re

import pytest

from kubetune import constants as c
from kubetune.api import parse_resource
from kubetune.api.common import UriError, split_hf_uri, split_pvc_uri

BAD_HF = {
    "hf://../x": "'..' is not a Hugging Face name",
    "hf://a/b/c/d": "has 4 parts",
    "hf://org/na me": "'na me' is not a Hugging Face name",
    "hf://org/name@": "empty revision",
    "hf:///": "names no repository",
    "hf://org/-name": "'-name' is not a Hugging Face name",
    "hf://org/a--b": "'a--b' is not a Hugging Face name",
    "hf://org/name@a b": "'a b' is not a revision",
    "hf://org/name@../main": "is not a revision",
}
BAD_PVC = {
    "pvc://data/../../etc/passwd": "'..' may not appear",
    "pvc://data/a/../../b": "'..' may not appear",
    "pvc://../data/x": "'..' is not a PersistentVolumeClaim name",
    "pvc://Data/x": "'Data' is not a PersistentVolumeClaim name",
    "pvc:///x": "'' is not a PersistentVolumeClaim name",
    "pvc://my_claim/x": "'my_claim' is not a PersistentVolumeClaim name",
}


def job(**model: str) -> dict:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.FINETUNEJOB,
        "metadata": {"name": "x"},
        "spec": {"baseModel": model, "dataset": {"train": {"uri": "pvc://data/train.jsonl"}}},
    }


@pytest.mark.parametrize(("uri", "expected"), BAD_HF.items())
def test_odd_hf_names_are_refused_naming_the_field(uri, expected):
    with pytest.raises(UriError, match=re.escape(expected)):
        split_hf_uri(uri)
    resource, errors = parse_resource(job(uri=uri), "job.yaml")
    assert resource is None
    assert [(e.path, expected in e.message) for e in errors] == [("spec.baseModel.uri", True)]


@pytest.mark.parametrize(("uri", "expected"), BAD_PVC.items())
def test_pvc_uris_out_of_their_claim_or_with_a_bad_claim_are_refused(uri, expected):
    with pytest.raises(UriError, match=re.escape(expected)):
        split_pvc_uri(uri)
    doc = job(uri="hf://Qwen/Qwen2.5-0.5B")
    doc["spec"]["dataset"]["train"]["uri"] = uri
    resource, errors = parse_resource(doc, "job.yaml")
    assert resource is None
    assert [(e.path, expected in e.message) for e in errors] == [("spec.dataset.train.uri", True)]


def test_good_uris_parse():
    assert split_hf_uri("hf://Qwen/Qwen2.5-0.5B-Instruct@main") == ("Qwen/Qwen2.5-0.5B-Instruct", "main")
    assert split_hf_uri("hf://gpt2") == ("gpt2", None)
    assert split_hf_uri("hf://org/name@refs/pr/1") == ("org/name", "refs/pr/1")
    assert split_pvc_uri("pvc://models/./tiny//v1/") == ("models", "tiny/v1")
    assert split_pvc_uri("pvc://models") == ("models", "")
    resource, errors = parse_resource(job(uri="pvc://models/tiny"), "job.yaml")
    assert errors == [] and resource is not None
