"""Secrets only by reference: a URL with USER:PASSWORD@ is refused in every URL/URI field, by pydantic and by
the CRD's schema, with a message naming the Secret field and without echoing the password; an s3:// dataset or
model URI names a key, not a bucket alone."""

from __future__ import annotations

import copy
import re

import pytest

from kubetune import constants as c
from kubetune.api import crdgen
from kubetune.api.admission import admit

JOB = {
    "baseModel": {"uri": "hf://a/b"},
    "dataset": {"train": {"uri": "t.jsonl"}},
}
JUDGE = {"endpoint": {"url": "http://judge:8000/v1"}, "model": "m", "prompt": "Rate {completion}"}

# (a FineTuneJob spec patch, the field admission names, the Secret field the message points at)
CASES = [
    (
        {"tracking": {"mlflow": {"uri": "http://bob:TopSecretPw@127.0.0.1:15000"}}},
        "spec.tracking.mlflow.uri",
        "tracking.mlflow.credentialsSecretRef",
    ),
    (
        {
            "tracking": {
                "wandb": {
                    "project": "p",
                    "host": "https://bob:TopSecretPw@wandb.local",
                    "apiKeySecretRef": {"name": "w", "key": "k"},
                }
            }
        },
        "spec.tracking.wandb.host",
        "tracking.wandb.apiKeySecretRef",
    ),
    ({"s3": {"endpoint": "http://admin:TopSecretPw@minio:9000"}}, "spec.s3.endpoint", "spec.s3.credentialsSecretRef"),
    (
        {"dataset": {"train": {"uri": "s3://AKIA:TopSecretPw@mlteam/train.jsonl"}}},
        "spec.dataset.train.uri",
        "spec.s3.credentialsSecretRef",
    ),
    ({"baseModel": {"uri": "hf://bob:TopSecretPw@org/name"}}, "spec.baseModel.uri", "Hub token Secret"),
    ({"export": {"uri": "s3://AKIA:TopSecretPw@models/x/"}}, "spec.export.uri", "spec.s3.credentialsSecretRef"),
]


def job(patch: dict) -> dict:
    spec = copy.deepcopy(JOB)
    spec.update(patch)
    return {"apiVersion": c.API_VERSION, "kind": c.FINETUNEJOB, "metadata": {"name": "x"}, "spec": spec}


@pytest.mark.parametrize(("patch", "path", "secret_field"), CASES)
def test_a_password_in_a_url_is_refused_naming_the_secret_field_and_not_echoed(patch, path, secret_field):
    resource, errors = admit(job(patch), "job.yaml")
    assert resource is None
    mine = [e for e in errors if e.path == path]
    assert mine, [str(e) for e in errors]
    assert "credentials may not be written into a URL" in mine[0].message
    assert secret_field in mine[0].message
    assert all("TopSecretPw" not in str(e) for e in errors)


def test_the_teacher_and_judge_endpoints_refuse_a_password_too():
    teacher = {
        "method": "distillation",
        "distillation": {"teacher": {"endpoint": {"url": "https://bob:TopSecretPw@api.local/v1", "model": "m"}}},
    }
    _, errors = admit(job(teacher), "job.yaml")
    assert any(
        "credentials may not be written" in e.message and "teacher.endpoint.apiKeySecretRef" in e.message
        for e in errors
    ), [str(e) for e in errors]
    assert all("TopSecretPw" not in str(e) for e in errors)


def test_the_crd_schema_refuses_userinfo_where_admission_does():
    """The API server (kubectl apply without the webhook) refuses the same URLs: the patterns leave out '@'."""
    crds = {crd["spec"]["names"]["kind"]: crd for crd in crdgen.crds()}
    spec = crds[c.FINETUNEJOB]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec["properties"]
    patterns = {
        "mlflow": props["tracking"]["properties"]["mlflow"]["properties"]["uri"]["pattern"],
        "s3": props["s3"]["properties"]["endpoint"]["pattern"],
        "dataset": props["dataset"]["properties"]["train"]["properties"]["uri"]["pattern"],
    }
    assert not re.search(patterns["mlflow"], "http://bob:pw@127.0.0.1:15000")
    assert re.search(patterns["mlflow"], "http://127.0.0.1:15000/a@b")
    assert not re.search(patterns["s3"], "http://admin:pw@minio:9000")
    assert not re.search(patterns["dataset"], "s3://AKIA:pw@mlteam/train.jsonl")
    assert re.search(patterns["dataset"], "hf://org/name@main")
    assert re.search(patterns["dataset"], "file:///data/t.jsonl")


@pytest.mark.parametrize("uri", ["s3://mlteam", "s3://mlteam/", "s3://mlteam//"])
def test_an_s3_dataset_uri_naming_only_a_bucket_is_refused(uri):
    resource, errors = admit(job({"dataset": {"train": {"uri": uri}}}), "job.yaml")
    assert resource is None
    assert [(e.path, "names only a bucket" in e.message) for e in errors] == [("spec.dataset.train.uri", True)]


def test_an_s3_model_prefix_may_end_with_a_slash():
    resource, errors = admit(job({"baseModel": {"uri": "s3://models/tiny/"}}), "job.yaml")
    assert errors == [] and resource is not None
    _, errors = admit(job({"baseModel": {"uri": "s3://models"}}), "job.yaml")
    assert [e.path for e in errors] == ["spec.baseModel.uri"]
