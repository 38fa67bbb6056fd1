"""Examples longer than spec.hyperparameters.maxSeqLength: validate and run warn with counts, and refuse when the
prompt of every example fills it (TRL would drop every example and crash with num_samples=0)."""

from __future__ import annotations

import json
from pathlib import Path

from kubetune import cli
from kubetune.local import plan, preflight
from kubetune.local.state import RunsDir


def job(tmp_path: Path, rows: list[dict], max_seq_length: int) -> Path:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\nspec:\n"
        "  baseModel: {uri: hf://a/b}\n  dataset: {train: {uri: train.jsonl}}\n"
        f"  hyperparameters: {{maxSeqLength: {max_seq_length}}}\n"
    )
    return path


def pair(prompt_chars: int, completion_chars: int, i: int) -> dict:
    return {"prompt": f"{i} " + "p" * prompt_chars, "completion": "c" * completion_chars}


def test_every_prompt_filling_max_seq_length_is_refused_by_validate_and_run(tmp_path, capsys):
    path = job(tmp_path, [pair(400, 40, i) for i in range(12)], max_seq_length=64)  # ~100 prompt tokens each
    assert cli.main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "the prompt of every example is at least spec.hyperparameters.maxSeqLength (64) tokens" in out, out
    assert "an estimate" in out
    errors = preflight.check(plan.load(path), RunsDir(tmp_path / "runs")).errors
    assert len(errors) == 1 and "no answer token is left to train on" in errors[0], errors


def test_some_examples_over_max_seq_length_is_a_warning_with_counts(tmp_path, capsys):
    rows = [pair(400, 40, i) for i in range(3)] + [pair(20, 20, i) for i in range(9)]
    path = job(tmp_path, rows, max_seq_length=64)
    assert cli.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "3 of 12 example(s) are longer than spec.hyperparameters.maxSeqLength (64 tokens, estimated" in out, out
    findings = preflight.check(plan.load(path), RunsDir(tmp_path / "runs"))
    assert findings.errors == [] and any("3 of 12 example(s) are longer" in n for n in findings.notes)
