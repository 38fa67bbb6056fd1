"""`kubetune run` orders resources by their references and refuses dangling ones and cycles up front."""

from pathlib import Path

import pytest
import yaml

from kubetune.local.plan import PlanError, load, order

QUICKSTART = Path(__file__).parents[3] / "examples" / "quickstart"


def job(name, from_job=None, ns="team"):
    base = {"fromJob": {"name": from_job}} if from_job else {"uri": "pvc://models/tiny"}
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"baseModel": base, "dataset": {"train": {"uri": "train.jsonl"}}},
    }


def evaluation(name, job_name):
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"model": {"fineTuneJob": {"name": job_name}}, "dataset": {"uri": "test.jsonl"}},
    }


def deployment(name, job_name, eval_name=None):
    spec = {"model": {"fineTuneJob": {"name": job_name}}}
    if eval_name:
        spec["promotion"] = {"evaluation": {"name": eval_name}}
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "team"},
        "spec": spec,
    }


def write(tmp_path: Path, *docs, name="all.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return path


def names(items):
    return [f"{it.kind}/{it.name}" for it in items]


def test_dependencies_come_first_whatever_the_file_order(tmp_path):
    path = write(
        tmp_path,
        deployment("serve", "v2", "v2-eval"),
        evaluation("v2-eval", "v2"),
        job("v2", from_job="v1"),
        job("v1"),
    )
    assert names(order(load(path))) == [
        "FineTuneJob/v1",
        "FineTuneJob/v2",
        "Evaluation/v2-eval",
        "ModelDeployment/serve",
    ]


def test_folder_reads_every_yaml_file_but_not_subfolders_or_other_kinds(tmp_path):
    write(tmp_path, job("a"), name="a.yaml")
    write(tmp_path, evaluation("a-eval", "a"), {"apiVersion": "v1", "kind": "ConfigMap"}, name="b.yml")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", job("ignored"), name="c.yaml")
    items = load(tmp_path)
    assert names(items) == ["FineTuneJob/a", "Evaluation/a-eval"]
    assert all(it.base_dir == tmp_path.resolve() for it in items)


def test_reference_to_an_undefined_job_names_the_field(tmp_path):
    path = write(tmp_path, evaluation("e", "missing"))
    with pytest.raises(PlanError) as err:
        order(load(path))
    assert "spec.model.fineTuneJob.name" in str(err.value) and "'missing'" in str(err.value)


def test_reference_satisfied_by_an_earlier_run(tmp_path):
    path = write(tmp_path, evaluation("e", "done-before"))
    known = {("team", "FineTuneJob", "done-before")}
    assert names(order(load(path), known=known.__contains__)) == ["Evaluation/e"]


def test_cycle_is_an_error(tmp_path):
    path = write(tmp_path, job("a", from_job="b"), job("b", from_job="a"))
    with pytest.raises(PlanError, match="cycle"):
        order(load(path))


def test_duplicate_definition_is_an_error(tmp_path):
    path = write(tmp_path, job("a"), job("a"))
    with pytest.raises(PlanError, match="also defined"):
        order(load(path))


def test_same_name_in_another_namespace_is_not_a_reference(tmp_path):
    path = write(tmp_path, job("a", ns="other"), evaluation("e", "a"))
    with pytest.raises(PlanError, match="namespace 'team'"):
        order(load(path))


def test_invalid_manifest_reports_file_and_field(tmp_path):
    bad = job("a")
    bad["spec"]["hyperparameters"] = {"learningRate": -1}
    path = write(tmp_path, bad)
    with pytest.raises(PlanError) as err:
        load(path)
    assert f"{path}: spec.hyperparameters.learningRate" in str(err.value)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(PlanError, match="no FineTuneJob"):
        load(tmp_path)


def test_quickstart_plan():
    assert names(order(load(QUICKSTART))) == [
        "FineTuneJob/travel-assistant",
        "Evaluation/travel-assistant-eval",
        "ModelDeployment/travel-assistant",
    ]
