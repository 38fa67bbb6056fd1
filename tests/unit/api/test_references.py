"""The models and datasets a resource reads, from one table (kubetune.api.references), and the places that use it:
`kubetune validate`, `kubetune run`'s preflight and the training pod's mounted claims."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubetune.api import parse_resource
from kubetune.api.references import ReferencedUri, referenced_uris
from kubetune.builders.training import build_training_job
from kubetune.cli import validate_paths
from kubetune.local import runner

DISTILLATION = """\
apiVersion: kubetune.dev/v1alpha1
kind: FineTuneJob
metadata: {name: travel, namespace: team, uid: u-1}
spec:
  method: distillation
  baseModel: {uri: pvc://models/student}
  dataset: {format: chat, train: {uri: train.jsonl}, validation: {uri: pvc://datasets/val.jsonl}}
  distillation: {teacher: {uri: TEACHER}}
"""


def _doc(teacher: str = "pvc://teachers/big") -> dict:
    return yaml.safe_load(DISTILLATION.replace("TEACHER", teacher))


def test_a_job_names_its_models_and_data_with_field_paths_kinds_and_format():
    expected = [
        ReferencedUri("spec.baseModel.uri", "pvc://models/student", "model"),
        ReferencedUri("spec.dataset.train.uri", "train.jsonl", "dataset", "chat"),
        ReferencedUri("spec.dataset.validation.uri", "pvc://datasets/val.jsonl", "dataset", "chat"),
        ReferencedUri("spec.distillation.teacher.uri", "pvc://teachers/big", "model"),
    ]
    resource, errors = parse_resource(_doc())
    assert errors == []
    assert referenced_uris(resource) == expected  # the parsed resource ...
    assert referenced_uris(_doc()) == expected  # ... and the raw document validate reads say the same


def test_evaluations_and_deployments():
    evaluation = {
        "kind": "Evaluation",
        "spec": {"model": {"uri": "hf://a/b"}, "baseline": {"uri": "hf://a/base"}, "dataset": {"uri": "test.jsonl"}},
    }
    assert [(r.field, r.kind, r.format) for r in referenced_uris(evaluation)] == [
        ("spec.model.uri", "model", None),
        ("spec.baseline.uri", "model", None),
        ("spec.dataset.uri", "dataset", None),  # no format declared in the document
    ]
    deployment = {"kind": "ModelDeployment", "spec": {"model": {"fineTuneJob": {"name": "travel"}}}}
    assert referenced_uris(deployment) == []  # a job's output, not a URI
    deployment["spec"]["model"] = {"uri": "pvc://models/served"}
    assert referenced_uris(deployment) == [ReferencedUri("spec.model.uri", "pvc://models/served", "model")]


def test_a_malformed_document_names_what_it_can():
    assert referenced_uris({"kind": [], "spec": {}}) == []
    assert referenced_uris({"kind": "FineTuneJob", "spec": []}) == []
    doc = {"kind": "FineTuneJob", "spec": {"baseModel": "hf://a/b", "dataset": {"train": {"uri": 3}, "format": 7}}}
    assert referenced_uris(doc) == []
    doc["spec"]["dataset"]["validation"] = {"uri": "v.jsonl"}
    assert referenced_uris(doc) == [ReferencedUri("spec.dataset.validation.uri", "v.jsonl", "dataset")]


def test_the_training_pod_mounts_every_claim_the_job_reads():
    resource, _ = parse_resource(_doc())
    pod = build_training_job(resource)["spec"]["template"]["spec"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims[1:] == ["models", "datasets", "teachers"]  # after the job's own output claim, in reading order


def _write_job(tmp_path: Path, teacher: str) -> Path:
    (tmp_path / "train.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n' * 4
    )
    path = tmp_path / "job.yaml"
    path.write_text(DISTILLATION.replace("TEACHER", teacher).replace("pvc://models/student", "hf://a/student")
                    .replace("pvc://datasets/val.jsonl", "train.jsonl"))  # fmt: skip
    return path


def test_a_missing_local_teacher_is_named_by_validate_and_refused_by_run_preflight(tmp_path, capsys):
    path = _write_job(tmp_path, "teacher-model")
    found = validate_paths([path])
    assert any("spec.distillation.teacher.uri: teacher-model does not exist yet" in w for w in found.warnings)
    rc = runner.main([str(path), "--runs-dir", str(tmp_path / "runs"), "--no-serve"])
    out = " ".join((capsys.readouterr().out).split())
    assert rc == runner.EXIT_FAILED
    assert f"{path}: spec.distillation.teacher.uri: teacher-model does not exist" in out, out
