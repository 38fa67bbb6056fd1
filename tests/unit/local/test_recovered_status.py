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
