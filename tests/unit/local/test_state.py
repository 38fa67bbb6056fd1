"""The runs folder remembers finished resources so a second `kubetune run` skips them."""

from kubetune import constants as c
from kubetune.api import FineTuneJob
from kubetune.local.state import RunsDir, inputs_hash

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
