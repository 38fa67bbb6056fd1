"""RFT and distillation train on conversations: with string prompts, validate and run say (one line) that the
prompts go through the chat template, where the data is checked."""

from __future__ import annotations

import json
from pathlib import Path

from kubetune import cli
from kubetune.local import plan, preflight
from kubetune.local.state import RunsDir

ROWS = [{"prompt": f"Capital of country {i}?", "completion": f"City {i}"} for i in range(12)]
NOTE = "spec.method rft trains on conversations: string prompts are sent as one user message through the model's chat template"


def job(tmp_path: Path, method: str) -> Path:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    extra = "  rft: {graders: [{type: exact_match, field: completion}]}\n" if method == "rft" else ""
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\nspec:\n"
        f"  method: {method}\n  baseModel: {{uri: hf://a/b}}\n  dataset: {{train: {{uri: train.jsonl}}}}\n" + extra
    )
    return path


def test_validate_and_run_note_that_rft_string_prompts_use_the_chat_template(tmp_path, capsys):
    path = job(tmp_path, "rft")
    assert cli.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count(NOTE) == 1, out
    notes = preflight.check(plan.load(path), RunsDir(tmp_path / "runs")).notes
    assert sum(NOTE in n for n in notes) == 1, notes


def test_sft_string_prompts_get_no_such_note(tmp_path, capsys):
    assert cli.main(["validate", str(job(tmp_path, "sft"))]) == 0
    assert "chat template" not in capsys.readouterr().out
