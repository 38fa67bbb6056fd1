"""Where `kubetune run` reads and writes pvc:// paths: one claims folder per namespace (claims are namespaced on
a cluster), reads through the user's own symbolic links, writes never outside the runs folder, and a local
model folder that transformers cannot load refused before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune import cli
from kubetune.api import parse_resource
from kubetune.builders.names import job_output_uri
from kubetune.local import plan, preflight
from kubetune.local.cli import _forget_all
from kubetune.local.state import RunsDir

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def job_file(folder: Path, namespace: str | None, base: str = "hf://a/b") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(CHAT) + "\n" for _ in range(12)))
    ns = f", namespace: {namespace}" if namespace else ""
    path = folder / "job.yaml"
    path.write_text(
        f"apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {{name: tk{ns}}}\nspec:\n"
        f"  baseModel: {{uri: '{base}'}}\n  dataset: {{train: {{uri: train.jsonl}}}}\n"
    )
    return path


def output_of(runs: RunsDir, item: plan.Item) -> Path:
    return runs.storage(item.base_dir, item.namespace).local_path(job_output_uri(item.resource))


def test_the_same_job_name_in_two_namespaces_has_two_output_folders(tmp_path):
    runs = RunsDir(tmp_path / "runs")
    [a] = plan.load(job_file(tmp_path / "a", "ns-a"))
    [b] = plan.load(job_file(tmp_path / "b", "ns-b"))
    [d] = plan.load(job_file(tmp_path / "d", None))
    assert output_of(runs, a) != output_of(runs, b)
    assert output_of(runs, a).is_relative_to(runs.root / "namespaces" / "ns-a" / "pvc")
    assert output_of(runs, d).is_relative_to(runs.root / "pvc")  # the quickstart's layout stays
    # --fresh on ns-a's job removes ns-a's checkpoints only
    for item in (a, b):
        (output_of(runs, item) / "checkpoint-1").mkdir(parents=True)
    _forget_all([a], runs)
    assert not output_of(runs, a).exists() and (output_of(runs, b) / "checkpoint-1").is_dir()


def tiny_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_a_base_model_behind_the_users_own_symbolic_link_is_read(tmp_path):
    runs = RunsDir(tmp_path / "runs")
    model = tiny_model(tmp_path / "elsewhere" / "tiny")
    (runs.pvc_root / "models").mkdir(parents=True)
    (runs.pvc_root / "models" / "tiny").symlink_to(model)
    items = plan.load(job_file(tmp_path / "m", None, "pvc://models/tiny"))
    assert preflight.check(items, runs).errors == []


@pytest.mark.parametrize("content", ["folder", "file"])
def test_a_local_model_folder_without_config_json_is_refused_by_run_and_warned_by_validate(tmp_path, capsys, content):
    target = tmp_path / "not-a-model"
    if content == "folder":
        (target / "sub").mkdir(parents=True)
    else:
        target.write_text("x")
    path = job_file(tmp_path / "m", None, f"file://{target}")
    [error] = preflight.check(plan.load(path), RunsDir(tmp_path / "runs")).errors
    assert "spec.baseModel.uri" in error and "not a model folder" in error, error
    rc = cli.main(["validate", str(path)])
    out = capsys.readouterr().out
    assert rc == 0 and "warning: " in out and "not a model folder" in out, out


def test_an_http_model_uri_is_refused_at_admission_naming_the_field():
    doc = json.loads(json.dumps({
        "apiVersion": "kubetune.dev/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "x"},
        "spec": {"baseModel": {"uri": "http://example.com/model"}, "dataset": {"train": {"uri": "https://h/t.jsonl"}}},
    }))  # fmt: skip
    _, errors = parse_resource(doc, "m.yaml")
    fields = {e.path: e.message for e in errors}
    assert set(fields) == {"spec.baseModel.uri", "spec.dataset.train.uri"}, fields
    assert fields["spec.baseModel.uri"].startswith("http:// names an endpoint, not a model or dataset location")
