"""Which checkpoints are complete, kept and best; kubetune.json written atomically."""

import json
from pathlib import Path

from kubetune.api.checkpoints import complete_checkpoints, latest_complete
from kubetune_trainer.checkpoints import discard_incomplete, prune, write_json_atomic


def _ckpt(root: Path, step: int, eval_loss: float | None = None, complete: bool = True) -> Path:
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x")
    if complete:
        metrics = {"train_loss": 1.0 / step}
        if eval_loss is not None:
            metrics["eval_loss"] = eval_loss
        write_json_atomic(d / "kubetune.json", {"step": step, "metrics": metrics})
    return d


def test_a_checkpoint_without_kubetune_json_is_never_resumed_from(tmp_path):
    _ckpt(tmp_path, 10)
    _ckpt(tmp_path, 20)
    _ckpt(tmp_path, 30, complete=False)  # the pod died while saving
    assert latest_complete(tmp_path).name == "checkpoint-20"
    assert discard_incomplete(tmp_path) == ["checkpoint-30"]
    assert not (tmp_path / "checkpoint-30").exists()
    assert [c.step for c in complete_checkpoints(tmp_path)] == [10, 20]


def test_a_truncated_kubetune_json_counts_as_incomplete(tmp_path):
    d = _ckpt(tmp_path, 10, complete=False)
    (d / "kubetune.json").write_text('{"step": 1')
    assert latest_complete(tmp_path) is None


def test_keeps_the_best_k_by_metric_plus_the_latest(tmp_path):
    for step, loss in [(10, 0.9), (20, 0.5), (30, 0.7), (40, 0.6), (50, 0.8)]:
        _ckpt(tmp_path, step, eval_loss=loss)
    kept, best = prune(tmp_path, keep=2, metric="eval_loss", mode="min")
    assert [c.name for c in kept] == ["checkpoint-20", "checkpoint-40", "checkpoint-50"]
    assert best == "checkpoint-20"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-20", "checkpoint-40", "checkpoint-50"]


def test_mode_max_and_camel_case_metric_names(tmp_path):
    for step, acc in [(10, 0.2), (20, 0.9), (30, 0.5)]:
        d = _ckpt(tmp_path, step)
        write_json_atomic(d / "kubetune.json", {"step": step, "metrics": {"eval_accuracy": acc}})
    kept, best = prune(tmp_path, keep=1, metric="evalAccuracy", mode="max")
    assert best == "checkpoint-20"
    assert [c.name for c in kept] == ["checkpoint-20", "checkpoint-30"]


def test_without_the_metric_the_latest_are_kept(tmp_path):
    for step in (10, 20, 30):
        _ckpt(tmp_path, step)  # no eval_loss: no validation data
    kept, best = prune(tmp_path, keep=2, metric="eval_loss", mode="min")
    assert [c.name for c in kept] == ["checkpoint-20", "checkpoint-30"]
    assert best == "checkpoint-30"


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_json_atomic(tmp_path / "kubetune.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["kubetune.json"]
    assert json.loads((tmp_path / "kubetune.json").read_text()) == {"a": 1}
