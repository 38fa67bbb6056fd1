"""`kubetune sweep`'s local loop and its sweep-file checks, without training: the trial runner is replaced by
one that reports a made-up eval_loss, so what is tested is the study, the grid and the pre-check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from rich.console import Console

from kubetune import constants as c
from kubetune.api.sweep import SweepError, load_sweep
from kubetune.builders.katib import katib_objects, to_yaml
from kubetune.cli import main as kubetune_main
from kubetune.local.state import RunsDir
from kubetune.local.sweep import LocalSweep, TrialResult, _grid

JOB = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "tiny-sft"},
    "spec": {
        "method": "sft",
        "baseModel": {"uri": "pvc://models/tiny"},
        "dataset": {"train": {"uri": "pvc://d/train.jsonl"}, "validation": {"uri": "pvc://d/valid.jsonl"}},
        "hyperparameters": {"learningRate": 1.0e-3, "lrScheduler": "cosine"},
    },
}


def _sweep_file(tmp_path: Path, parameters: list[dict[str, Any]], algorithm: str = "grid", trials: int = 3) -> Path:
    doc = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneSweep",
        "metadata": {"name": "s"},
        "spec": {
            "template": JOB,
            "objective": {"type": "minimize", "objectiveMetricName": "eval_loss"},
            "algorithm": {"algorithmName": algorithm, "randomState": 0},
            "parameters": parameters,
            "maxTrialCount": trials,
        },
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


SCHEDULER = {
    "name": "scheduler",
    "path": "spec.hyperparameters.lrScheduler",
    "parameterType": "categorical",
    "feasibleSpace": {"list": ["cosine", "linear"]},
}


class FakeTrials(LocalSweep):
    """Each trial 'finishes' at once with eval_loss = its number + 1; no process is started."""

    def run_trial(self, number: int, values: dict[str, Any], trial: Any) -> TrialResult:
        (self.folder / f"{self.sweep.metadata.name}-{number}.yaml").write_text("{}\n")
        return TrialResult(number, f"s-{number}", values, "COMPLETE", objective=float(number + 1))


def test_a_grid_smaller_than_max_trial_count_ends_when_exhausted(tmp_path):
    sweep = load_sweep(_sweep_file(tmp_path, [SCHEDULER], trials=3))
    runs = RunsDir(tmp_path / "runs")
    loop = FakeTrials(sweep, tmp_path, runs, Console(width=120), optuna)
    assert loop.run() == c.EXIT_OK
    trials = json.loads((runs.root / "sweeps" / "s" / "trials.json").read_text())["trials"]
    assert sorted(t["values"]["scheduler"] for t in trials) == ["cosine", "linear"]
    assert (runs.root / "sweeps" / "s" / "best.yaml").exists()


def test_every_categorical_value_is_admitted_before_anything_runs(tmp_path):
    bogus = {**SCHEDULER, "feasibleSpace": {"list": ["cosine", "bogus"]}}
    with pytest.raises(SweepError) as err:
        load_sweep(_sweep_file(tmp_path, [bogus]))
    text = "\n".join(err.value.errors)
    assert "spec.parameters[0] (scheduler)" in text and "'bogus'" in text and "lrScheduler" in text


def test_a_max_the_finetunejob_refuses_is_named(tmp_path):
    lr = {
        "name": "lr",
        "path": "spec.hyperparameters.learningRate",
        "parameterType": "double",
        "feasibleSpace": {"min": 1.0e-5, "max": 50.0, "step": 1.0},
    }
    with pytest.raises(SweepError, match=r"spec\.parameters\[0\] \(lr\) value 50\.0"):
        load_sweep(_sweep_file(tmp_path, [lr], algorithm="random"))


def test_an_int_parameter_refuses_fractional_bounds(tmp_path):
    rank = {"name": "rank", "path": "spec.adapter.r", "parameterType": "int", "feasibleSpace": {"min": 1.5, "max": 8}}
    with pytest.raises(SweepError, match=r"whole numbers: min \(1\.5\)"):
        load_sweep(_sweep_file(tmp_path, [rank], algorithm="random"))


def test_grid_over_a_double_needs_a_step_and_both_engines_use_it(tmp_path):
    lr = {
        "name": "lr",
        "path": "spec.hyperparameters.learningRate",
        "parameterType": "double",
        "feasibleSpace": {"min": 1.0e-4, "max": 1.0e-3, "distribution": "logUniform"},
    }
    with pytest.raises(SweepError, match=r"feasibleSpace\.step: algorithm grid needs a step"):
        load_sweep(_sweep_file(tmp_path, [lr]))
    lr["feasibleSpace"]["step"] = 3.0e-4
    sweep = load_sweep(_sweep_file(tmp_path, [lr]))
    assert _grid(sweep.spec.parameters)["lr"] == pytest.approx([1.0e-4, 4.0e-4, 7.0e-4, 1.0e-3])
    space = katib_objects(sweep)[1]["spec"]["parameters"][0]["feasibleSpace"]
    assert float(space["step"]) == 3.0e-4


def test_katib_output_to_stdout_with_dash_ends_with_a_newline(tmp_path, monkeypatch, capsys):
    path = _sweep_file(tmp_path, [SCHEDULER])
    monkeypatch.chdir(tmp_path)
    assert kubetune_main(["sweep", str(path), "--katib", "-o", "-"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "-").exists()
    assert out.endswith("\n") and [d["kind"] for d in yaml.safe_load_all(out)] == ["ConfigMap", "Experiment"]
    assert to_yaml(katib_objects(load_sweep(path))).endswith("\n")


def test_a_template_value_outside_the_space_is_one_line_of_ours(tmp_path, recwarn):
    lr = {
        "name": "lr",
        "path": "spec.hyperparameters.learningRate",
        "parameterType": "double",
        "feasibleSpace": {"min": 1.0e-5, "max": 1.0e-4},
    }
    sweep = load_sweep(_sweep_file(tmp_path, [lr], algorithm="random", trials=1))
    console = Console(width=200, record=True)
    FakeTrials(sweep, tmp_path, RunsDir(tmp_path / "runs"), console, optuna).run()
    assert "the template's lr (0.001, at spec.hyperparameters.learningRate) is outside" in console.export_text()
    assert not [w for w in recwarn if "Fixed parameter" in str(w.message)]
