"""A job whose saved state was lost while its output was kept: `kubetune run` reads the status back from the
checkpoints on disk and picks the best one as the trainer does (kubetune.api.checkpoints)."""

from __future__ import annotations

import json

import pytest

from kubetune.api import FineTuneJob
from kubetune.local.checkpoints import recovered_status


def _job(metric: str, mode: str) -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "travel", "namespace": "team"},
            "spec": {
                "baseModel": {"uri": "pvc://models/tiny"},
                "dataset": {"train": {"uri": "train.jsonl"}},
                "checkpoints": {"selectBy": {"metric": metric, "mode": mode}},
            },
        }
    )


@pytest.mark.parametrize(
    ("metric", "mode", "expected"),
    [
        ("eval_loss", "min", "checkpoint-20"),
        ("evalLoss", "min", "checkpoint-20"),  # the camelCase a manifest may use: the same metric
        ("loss", "min", "checkpoint-20"),
        ("reward", "max", "checkpoint-10"),
        ("rewards/exact", "max", "final"),
    ],
)
def test_best_checkpoint_on_disk_follows_select_by(tmp_path, metric, mode, expected):
    recorded = {
        "checkpoint-10": {"step": 10, "metrics": {"eval_loss": 0.9, "reward": 2.0, "rewards/exact": 0.1}},
        "checkpoint-20": {"step": 20, "metrics": {"eval_loss": 0.4, "reward": 1.0, "rewards/exact": 0.2}},
        "final": {"step": 30, "metrics": {"eval_loss": 0.6, "reward": 1.5, "rewards/exact": 0.3}},
    }
    for name, meta in recorded.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "kubetune.json").write_text(json.dumps(meta))
    status = recovered_status(_job(metric, mode), tmp_path)
    assert status["bestCheckpoint"] == expected
    assert [e["name"] for e in status["checkpoints"]] == ["checkpoint-10", "checkpoint-20", "final"]
    assert status["progress"]["step"] == 30 and status["metrics"] == {"evalLoss": 0.6}


def _on_disk(folder, steps_losses: dict[str, float]) -> None:
    for name, loss in steps_losses.items():
        step = 12 if name == "final" else int(name.split("-")[1])
        (folder / name).mkdir()
        (folder / name / "kubetune.json").write_text(json.dumps({"step": step, "metrics": {"eval_loss": loss}}))


STALE = {  # what an interrupted run recorded: checkpoint-3 since deleted by retention, its best checkpoint-6
    "checkpoints": [
        {"name": "checkpoint-3", "step": 3, "uri": "pvc://x/checkpoint-3"},
        {"name": "checkpoint-6", "step": 6, "uri": "pvc://x/checkpoint-6"},
    ],
    "bestCheckpoint": "checkpoint-3",
    "progress": {"step": 6, "totalSteps": 12, "percent": 50},
    "metrics": {"evalLoss": 0.9},
}


def test_collecting_a_finished_output_rereads_checkpoints_best_and_progress_from_disk(tmp_path):
    from kubetune.local.checkpoints import result_status

    _on_disk(tmp_path, {"checkpoint-6": 0.9, "checkpoint-9": 0.5, "checkpoint-12": 0.7, "final": 0.7})
    status = result_status(_job("eval_loss", "min"), STALE, tmp_path, collecting=True)
    assert [e["name"] for e in status["checkpoints"]] == ["checkpoint-6", "checkpoint-9", "checkpoint-12", "final"]
    assert status["bestCheckpoint"] == "checkpoint-9"
    assert status["progress"]["step"] == 12 and status["metrics"] == {"evalLoss": 0.7}


def test_a_finished_run_never_keeps_a_checkpoint_that_is_no_longer_on_disk(tmp_path):
    from kubetune.local.checkpoints import result_status

    _on_disk(tmp_path, {"checkpoint-6": 0.9, "final": 0.8})
    status = result_status(_job("eval_loss", "min"), STALE, tmp_path, collecting=False)
    assert [e["name"] for e in status["checkpoints"]] == ["checkpoint-6", "final"]
    assert status["checkpoints"][0]["uri"].endswith("checkpoint-6")
    assert status["bestCheckpoint"] == "final"
