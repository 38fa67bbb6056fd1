"""`kubetune run` writes status as the operator does: observedGeneration (counted as an API server counts
metadata.generation) and kstatus conditions (Ready, Reconciling, Stalled, Failed), which Flux, Argo CD and
`kubectl wait` read from a resource that went through a local run and was then applied."""

from __future__ import annotations

import json

from kubetune import constants as c
from kubetune.api import FineTuneJob
from kubetune.local.cli import main
from kubetune.local.state import RunsDir

CLAIM = "pvc://travel-data/output"
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def trained_job(runs: RunsDir) -> None:
    """The FineTuneJob `travel` as an earlier `kubetune run` left it: succeeded, two checkpoints."""
    job = FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "travel", "namespace": "team"},
            "spec": {"baseModel": {"uri": "pvc://models/tiny"}, "dataset": {"train": {"uri": "train.jsonl"}}},
            "status": {
                "phase": "Succeeded",
                "checkpoints": [{"name": n, "uri": f"{CLAIM}/{n}"} for n in ("checkpoint-3", "final")],
                "bestCheckpoint": "checkpoint-3",
            },
        }
    )
    runs.save(job, "earlier")


def deployment(replicas: int) -> dict:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "travel", "namespace": "team"},
        "spec": {"model": {"fineTuneJob": {"name": "travel", "checkpoint": "best"}}, "replicas": replicas},
    }


def conditions(status) -> dict[str, tuple[str, str, int | None]]:
    return {cd.type: (cd.status, cd.reason, cd.observed_generation) for cd in status.conditions}


def test_a_deployment_not_served_is_pending_and_reconciling_and_a_spec_edit_is_a_new_generation(tmp_path):
    runs = RunsDir(tmp_path / "runs")
    trained_job(runs)
    path = tmp_path / "deploy.yaml"
    path.write_text(json.dumps(deployment(1)))

    assert main([str(path), "--runs-dir", str(runs.root), "--no-serve"]) == c.EXIT_OK
    saved, _ = runs.load(("team", "ModelDeployment", "travel"))
    assert saved.metadata.generation == 1 and saved.status.observed_generation == 1
    assert conditions(saved.status) == {"Ready": ("False", "Pending", 1), "Reconciling": ("True", "Pending", 1)}
    assert "--no-serve" in saved.status.message and saved.status.endpoint is None

    assert main([str(path), "--runs-dir", str(runs.root), "--no-serve"]) == c.EXIT_OK  # same spec: same generation
    assert runs.load(("team", "ModelDeployment", "travel"))[0].status.observed_generation == 1

    path.write_text(json.dumps(deployment(2)))  # a spec edit, as `kubectl apply` of an edited file would be
    assert main([str(path), "--runs-dir", str(runs.root), "--no-serve"]) == c.EXIT_OK
    saved, _ = runs.load(("team", "ModelDeployment", "travel"))
    assert saved.metadata.generation == 2 and saved.status.observed_generation == 2
    assert {gen for _, _, gen in conditions(saved.status).values()} == {2}


def test_a_job_whose_source_checkpoint_is_missing_fails_stalled_with_the_reason(tmp_path, capsys):
    runs = RunsDir(tmp_path / "runs")
    trained_job(runs)
    (tmp_path / "train.jsonl").write_text((json.dumps(CHAT) + "\n") * 12)
    path = tmp_path / "job.yaml"
    job = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "travel-v2", "namespace": "team"},
        "spec": {
            "baseModel": {"fromJob": {"name": "travel", "checkpoint": "checkpoint-999"}},
            "dataset": {"train": {"uri": "train.jsonl"}},
        },
    }
    path.write_text(json.dumps(job))

    assert main([str(path), "--runs-dir", str(runs.root), "--no-serve"]) == c.EXIT_FAILED

    assert "FineTuneJob 'travel' has no checkpoint 'checkpoint-999'" in " ".join(capsys.readouterr().out.split())
    saved, _ = runs.load(("team", "FineTuneJob", "travel-v2"))
    assert saved.status.phase == "Failed" and saved.status.observed_generation == 1
    assert saved.status.completion_time is not None
    assert conditions(saved.status) == {
        "Ready": ("False", "SourceJobFailed", 1),
        "Stalled": ("True", "SourceJobFailed", 1),
        "Failed": ("True", "SourceJobFailed", 1),
    }
