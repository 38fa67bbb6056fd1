"""The runs folder remembers finished resources so a second `kubetune run` skips them."""

import json

import pytest

from kubetune import constants as c
from kubetune.api import FineTuneJob
from kubetune.api.common import UriError
from kubetune.local.state import RunsDir, RunsDirError, inputs_hash

JOB = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "travel", "namespace": "team"},
    "spec": {"baseModel": {"uri": "pvc://models/tiny"}, "dataset": {"train": {"uri": "data/train.jsonl"}}},
}
KEY = ("team", "FineTuneJob", "travel")


def test_succeeded_with_same_inputs_is_done_changed_inputs_is_not(tmp_path):
    runs = RunsDir(tmp_path)
    job = FineTuneJob.model_validate({**JOB, "status": {"phase": "Succeeded", "bestCheckpoint": "checkpoint-2"}})
    digest = inputs_hash(job.spec.to_k8s())
    runs.save(job, digest)
    assert runs.is_done(KEY, digest)
    assert not runs.is_done(KEY, inputs_hash({**job.spec.to_k8s(), "method": "dpo"}))
    saved, saved_digest = runs.load(KEY)
    assert saved.status.best_checkpoint == "checkpoint-2" and saved_digest == digest
    assert (tmp_path / "team" / "finetunejobs" / "travel" / "resource.json").exists()


def test_interrupted_job_is_not_done(tmp_path):
    runs = RunsDir(tmp_path)
    job = FineTuneJob.model_validate({**JOB, "status": {"phase": c.Phase.RUNNING}})
    runs.save(job, "h")
    assert not runs.is_done(KEY, "h")


def test_unreadable_state_counts_as_never_run(tmp_path):
    runs = RunsDir(tmp_path)
    d = runs.resource_dir(KEY)
    d.mkdir(parents=True)
    (d / "resource.json").write_text("{half a fi")
    assert runs.load(KEY) == (None, None)


def test_storage_maps_pvc_into_runs_and_relative_paths_to_the_manifest(tmp_path):
    runs = RunsDir(tmp_path / "runs")
    storage = runs.storage(tmp_path / "manifests")
    assert storage.local_path("pvc://models/tiny") == (tmp_path / "runs" / "pvc" / "models" / "tiny").resolve()
    assert storage.local_path("data/train.jsonl") == (tmp_path / "manifests" / "data" / "train.jsonl").resolve()
    assert storage.local_path("hf://Qwen/Qwen2.5-0.5B") is None


def test_inputs_hash_is_stable_and_order_independent():
    assert inputs_hash({"a": 1, "b": 2}) == inputs_hash({"b": 2, "a": 1})
    assert inputs_hash({"a": 1}) != inputs_hash({"a": 2})


def test_file_digest_changes_with_the_content(tmp_path):
    from kubetune.local.state import file_digest

    f = tmp_path / "train.jsonl"
    f.write_text('{"text": "a"}\n')
    before = file_digest(f)
    f.write_text('{"text": "b"}\n')
    assert file_digest(f) != before and file_digest(tmp_path / "missing.jsonl") is None


# --- nothing outside the runs folder ------------------------------------------------------------------------

OUTSIDE_NAMESPACES = ["../../victim", "..", "a/../../victim", "/abs/victim"]


def _victim(tmp_path):
    """A folder with a file outside the runs folder, where an unchecked namespace would lead."""
    victim = tmp_path / "victim" / "finetunejobs" / "travel"
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    return victim


@pytest.mark.parametrize("namespace", OUTSIDE_NAMESPACES)
def test_a_namespace_that_is_a_path_writes_and_deletes_nothing_outside(tmp_path, namespace):
    victim = _victim(tmp_path)
    runs = RunsDir(tmp_path / "deep" / "runs")
    key = (namespace.replace("/abs", str(tmp_path)), "FineTuneJob", "travel")
    with pytest.raises(RunsDirError, match=r"metadata\.namespace"):
        runs.forget(key)
    with pytest.raises(RunsDirError, match=r"metadata\.namespace"):
        runs.resource_dir(key)
    job = FineTuneJob.model_validate({**JOB, "metadata": {"name": "travel", "namespace": key[0]}})
    with pytest.raises(RunsDirError):
        runs.save(job, "h")
    assert (victim / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]


def test_a_symbolic_link_out_of_the_runs_folder_is_not_followed(tmp_path):
    victim = _victim(tmp_path)
    runs = RunsDir(tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "team").symlink_to(tmp_path / "victim")  # runs/team/finetunejobs/travel -> victim
    with pytest.raises(RunsDirError, match="outside the runs folder"):
        runs.forget(("team", "FineTuneJob", "travel"))
    assert (victim / "precious.txt").exists()


def test_forget_removes_nothing_when_one_path_is_outside(tmp_path):
    victim = _victim(tmp_path)
    runs = RunsDir(tmp_path / "runs")
    job = FineTuneJob.model_validate(JOB)
    saved = runs.save(job, "h")
    with pytest.raises(RunsDirError, match="outside the runs folder"):
        runs.forget(KEY, victim)
    assert saved.exists() and (victim / "precious.txt").exists()


def test_kubetune_run_refuses_a_namespace_path_before_anything_starts(tmp_path, capsys):
    """`kubetune run --fresh` with metadata.namespace ../victim: exit 1 naming the field; nothing removed."""
    from kubetune.local.cli import main

    victim = _victim(tmp_path)  # runs/../victim/finetunejobs/travel
    (tmp_path / "runs" / "pvc" / "models" / "tiny").mkdir(parents=True)
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]} for i in range(12)
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {**JOB, "metadata": {"name": "travel", "namespace": "../victim"}}
    manifest["spec"] = {**JOB["spec"], "dataset": {"train": {"uri": "train.jsonl"}}}
    (tmp_path / "job.yaml").write_text(json.dumps(manifest))
    rc = main([str(tmp_path / "job.yaml"), "--runs-dir", str(tmp_path / "runs"), "--fresh", "--no-serve"])
    assert rc == 1
    out = capsys.readouterr().out
    assert "metadata.namespace" in out and "'../victim'" in out
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / "runs" / "pvc" / "kubetune-travel-data").exists()  # no training started


def test_pvc_uris_stay_inside_their_claim(tmp_path):
    runs = RunsDir(tmp_path / "runs")
    storage = runs.storage(tmp_path)
    for uri in ("pvc://models/../../../etc/passwd", "pvc://models/a/../../other", "pvc://../x", "pvc://Models/x"):
        with pytest.raises(UriError):
            storage.local_path(uri)
    (tmp_path / "runs" / "pvc" / "models").mkdir(parents=True)
    (tmp_path / "runs" / "pvc" / "models" / "mine").symlink_to(tmp_path)  # the user's own link, on their machine
    assert storage.local_path("pvc://models/mine/tiny").resolve() == tmp_path.resolve() / "tiny"  # read through it
    assert storage.local_path("pvc://models/./tiny/") == tmp_path.resolve() / "runs" / "pvc" / "models" / "tiny"
