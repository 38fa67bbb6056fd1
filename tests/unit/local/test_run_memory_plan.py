"""`kubetune run` says each FineTuneJob's memory plan before training and refuses a GPU run that cannot fit,
as `kubetune validate` does, reading the base model's config.json where the run reads the model (pvc://)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kubetune import constants as c
from kubetune.local import plan, preflight
from kubetune.local.cli import main as run_main
from kubetune.local.state import RunsDir

CONFIGS = Path(__file__).resolve().parents[2] / "fixtures" / "model-configs"


def job(tmp_path: Path, config: str, resources: str, adapter: str = "lora") -> Path:
    model = tmp_path / "runs" / "pvc" / "models" / "base"
    model.mkdir(parents=True)
    shutil.copy(CONFIGS / config / "config.json", model / "config.json")
    chat = {"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello"}]}
    (tmp_path / "train.jsonl").write_text((json.dumps(chat) + "\n") * 12)
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: big}\nspec:\n"
        "  baseModel: {uri: pvc://models/base}\n  dataset: {train: {uri: train.jsonl}}\n"
        f"  adapter: {{type: {adapter}}}\n  resources: {resources}\n"
    )
    return path


def test_run_refuses_a_gpu_run_that_cannot_fit_before_starting_anything(tmp_path, capsys):
    path = job(tmp_path, "qwen2.5-32b", "{gpus: 8, sharding: {strategy: none}}", adapter="none")
    rc = run_main([str(path), "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == c.EXIT_FAILED, out
    assert "spec.resources: the run does not fit" in out and "GiB per GPU" in out, out
    assert "a layout that fits: resources.sharding: fsdp" in out and "nothing was started" in out, out
    assert not (tmp_path / "runs" / "default").exists()  # no job folder, no run config: nothing started


def test_run_notes_the_plan_of_each_job_with_gpu_hours_from_the_data(tmp_path):
    path = job(tmp_path, "qwen2.5-0.5b", "{gpus: 1}")
    found = preflight.check(plan.load(path), RunsDir(tmp_path / "runs"))
    assert found.errors == []
    notes = [n for n in found.notes if "memory plan:" in n]
    assert len(notes) == 1, found.notes
    assert (
        notes[0].startswith("FineTuneJob default/big: memory plan: ") and "per GPU of 80.0 GiB (fits; lora" in notes[0]
    )
    assert "GPU-hours" in notes[0], notes[0]
