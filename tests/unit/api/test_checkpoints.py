"""The checkpoint layout and selectBy ranking that the trainer and `kubetune run` share (kubetune.api.checkpoints)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune.api.checkpoints import (
    best,
    checkpoints_on_disk,
    complete_checkpoints,
    final_checkpoint,
    incomplete_checkpoints,
    latest_complete,
    metric_value,
    rank,
)


def _write(root: Path, name: str, meta: dict | str | None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x")
    if meta is not None:
        (d / "kubetune.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return d


def test_only_checkpoints_with_a_readable_kubetune_json_are_complete(tmp_path):
    _write(tmp_path, "checkpoint-10", {"step": 10})
    _write(tmp_path, "checkpoint-100", {"step": 100})  # ordered by step, not by name
    _write(tmp_path, "checkpoint-150", None)  # the pod died while saving
    _write(tmp_path, "checkpoint-200", '{"step": 2')  # kubetune.json cut short
    _write(tmp_path, "checkpoint-300", "[]")  # not an object
    _write(tmp_path, "checkpoint-latest", {"step": 1})  # not checkpoint-N
    (tmp_path / "checkpoint-400").write_text("a file, not a folder")
    assert [cp.name for cp in complete_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-100"]
    assert [p.name for p in incomplete_checkpoints(tmp_path)] == ["checkpoint-150", "checkpoint-200", "checkpoint-300"]
    assert latest_complete(tmp_path).name == "checkpoint-100"
    assert latest_complete(tmp_path / "missing") is None


def test_final_comes_last_with_the_step_it_recorded(tmp_path):
    _write(tmp_path, "final", {"step": 20, "metrics": {"eval_loss": 0.4}})
    _write(tmp_path, "checkpoint-20", {"step": 20})
    _write(tmp_path, "checkpoint-10", {"step": 10})
    on_disk = checkpoints_on_disk(tmp_path)
    assert [(cp.name, cp.step) for cp in on_disk] == [("checkpoint-10", 10), ("checkpoint-20", 20), ("final", 20)]
    assert final_checkpoint(tmp_path).metrics == {"eval_loss": 0.4}


def test_a_final_without_its_kubetune_json_is_not_a_finished_run(tmp_path):
    _write(tmp_path, "final", None)
    assert final_checkpoint(tmp_path) is None
    assert checkpoints_on_disk(tmp_path) == []


@pytest.mark.parametrize(
    ("select_by", "recorded", "value"),
    [
        ("eval_loss", {"eval_loss": 0.5}, 0.5),
        ("evalLoss", {"eval_loss": 0.5}, 0.5),
        ("loss", {"eval_loss": 0.5, "train_loss": 0.9}, 0.5),
        ("trainLoss", {"eval_loss": 0.5, "train_loss": 0.9}, 0.9),
        ("evalAccuracy", {"eval_accuracy": 0.8}, 0.8),
        ("accuracy", {"eval_accuracy": 0.8}, 0.8),
        ("reward", {"reward": 1.5, "rewards/exact": 1.0}, 1.5),
        ("rewards/exact", {"reward": 1.5, "rewards/exact": 1.0}, 1.0),
        ("rewards/jsonValid", {"rewards/jsonValid": 0.25}, 0.25),  # a grader's own name, as written
        ("eval_loss", {"train_loss": 0.9}, None),  # no validation data: not recorded
        ("eval_loss", {"eval_loss": "n/a"}, None),  # not a number
        ("eval_loss", {"eval_loss": True}, None),
    ],
)
def test_a_select_by_name_finds_the_recorded_metric(select_by, recorded, value):
    assert metric_value(recorded, select_by) == value


def test_ranking_by_min_and_max_and_ties_go_to_the_later_step(tmp_path):
    for step, loss, acc in [(10, 0.9, 0.2), (20, 0.5, 0.9), (30, 0.5, 0.5), (40, 0.7, 0.9)]:
        _write(tmp_path, f"checkpoint-{step}", {"step": step, "metrics": {"eval_loss": loss, "eval_accuracy": acc}})
    _write(tmp_path, "checkpoint-50", {"step": 50, "metrics": {"train_loss": 0.1}})  # an off-schedule save
    on_disk = checkpoints_on_disk(tmp_path)
    assert [cp.step for cp in rank(on_disk, "evalLoss", "min")] == [30, 20, 40, 10]
    assert best(on_disk, "accuracy", "max").name == "checkpoint-40"
    assert best(on_disk, "reward", "max") is None


def test_importing_it_loads_no_training_stack():
    """The operator image has no torch: the module must import with the standard library and kubetune only."""
    code = (
        "import sys; import kubetune.api.checkpoints; "
        "heavy = {'torch', 'transformers', 'trl', 'peft', 'datasets', 'accelerate', 'kubetune_trainer'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
