"""`kubetune sweep` on this machine: an Optuna study whose trials are `kubetune run`s of a tiny FineTuneJob.

The template's learning rate is deliberately bad (1e-7: the model barely moves); the search must find a
better one, the median pruner must stop at least one trial early (SIGTERM, which `kubetune run` handles as
Ctrl-C: the job left Suspended), also when the sweep runs with SIGINT ignored, and the best trial is an ordinary FineTuneJob of the runs folder, with the Katib-readable eval_loss lines in its log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart"
BAD_DEFAULT = 1.0e-7
# Katib's default StdOut filter (pkg/metricscollector/v1beta1/common: DefaultFilter).
KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")


def _sweep(tmp_path: Path) -> Path:
    folder = tmp_path / "sweep"
    (folder / "data").mkdir(parents=True)
    for split, n in (("train", 64), ("validation", 16)):
        lines = (QUICKSTART / "data" / f"{split}.jsonl").read_text().splitlines(keepends=True)[:n]
        (folder / "data" / f"{split}.jsonl").write_text("".join(lines))
    from kubetune_trainer.tiny import init_tiny

    init_tiny(tmp_path / "runs" / "pvc" / "models" / "tiny", [folder / "data" / "train.jsonl"], size="nano")
    job = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "tiny-sft"},
        "spec": {
            "method": "sft",
            "baseModel": {"uri": "pvc://models/tiny"},
            "dataset": {
                "train": {"uri": "data/train.jsonl"},
                "validation": {"uri": "data/validation.jsonl"},
                "format": "chat",
            },
            "adapter": {"type": "none"},
            "hyperparameters": {
                "maxSteps": 8,  # four evaluations: a trial pruned after one or two is visibly shorter
                "batchSize": 8,
                "learningRate": BAD_DEFAULT,
                "lrScheduler": "constant",
                "warmupRatio": 0,
                "maxSeqLength": 128,
                "packing": False,
                "seed": 42,
            },
            "checkpoints": {"every": 2, "unit": "steps", "keep": 1, "selectBy": {"metric": "eval_loss", "mode": "min"}},
            "resources": {"gpus": 0, "cpu": "2", "memory": "4Gi"},
        },
    }
    sweep = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneSweep",
        "metadata": {"name": "lr"},
        "spec": {
            "template": job,
            "objective": {"type": "minimize", "objectiveMetricName": "eval_loss"},
            # randomState 13 draws 3.0e-3 (learns: the best) then 1.2e-5 (barely moves: pruned at its first evaluation,
            # which is above the mean of the first two). Three trials are the fewest that show both.
            "algorithm": {"algorithmName": "random", "randomState": 13},
            "earlyStopping": {"algorithmName": "medianstop", "minTrialsRequired": 2, "startStep": 1},
            "parameters": [
                {
                    "name": "learningRate",
                    "path": "spec.hyperparameters.learningRate",
                    "parameterType": "double",
                    "feasibleSpace": {"min": 1.0e-6, "max": 3.0e-2, "distribution": "logUniform"},
                }
            ],
            "maxTrialCount": 3,
        },
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


@pytest.mark.slow
def test_sweep_beats_a_bad_default_learning_rate_and_prunes_a_trial(tmp_path):
    path = _sweep(tmp_path)
    runs = tmp_path / "runs"
    # Started as a script's background job is (`kubetune sweep ... &`): SIGINT ignored, which its trials inherit
    # (an ignored signal stays ignored across exec).
    sweep = [sys.executable, "-m", "kubetune.cli", "sweep", str(path), "--runs-dir", str(runs)]
    ignoring_sigint = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"
    )
    done = subprocess.run(
        [sys.executable, "-c", ignoring_sigint, *sweep], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((runs / "sweeps" / "lr" / "trials.json").read_text())
    trials = {t["name"]: t for t in summary["trials"]}
    default = trials["lr-0"]
    assert default["values"] == {"learningRate": BAD_DEFAULT} and default["state"] == "COMPLETE"
    best = trials[summary["best"]]
    assert best["values"]["learningRate"] != BAD_DEFAULT and best["objective"] < default["objective"] - 0.1

    pruned = [t for t in trials.values() if t["state"] == "PRUNED"]
    assert pruned, done.stdout
    for t in pruned:
        status = json.loads((runs / "default" / "finetunejobs" / t["name"] / "resource.json").read_text())["status"]
        assert status["phase"] == "Suspended"  # stopped the way Ctrl-C stops a run: resumable, not failed
        # Not asserted: that it ran fewer evaluations. A tiny trial's steps take milliseconds, so the SIGTERM can
        # land after its last evaluation (seen in CI-like runs); PRUNED and Suspended above are what pruning is.
    assert "PRUNED" in done.stdout and f"best {best['name']}" in done.stdout

    # The best trial is a FineTuneJob like any other: its manifest, its finished status, its checkpoint.
    manifest = yaml.safe_load((runs / "sweeps" / "lr" / "best.yaml").read_text())
    assert manifest["metadata"]["name"] == best["name"]
    assert manifest["spec"]["hyperparameters"]["learningRate"] == best["values"]["learningRate"]
    job_dir = runs / "default" / "finetunejobs" / best["name"]
    status = json.loads((job_dir / "resource.json").read_text())["status"]
    assert status["phase"] == "Succeeded" and status["bestCheckpoint"] == best["bestCheckpoint"]
    # What Katib's StdOut collector would read from the trainer on a cluster: one eval_loss per evaluation.
    logged = [
        float(m.group(2))
        for m in KATIB_FILTER.finditer((job_dir / "train.log").read_text())
        if m.group(1) == "eval_loss"
    ]
    assert [round(v, 4) for v in logged[: len(best["evaluations"])]] == [round(v, 4) for _, v in best["evaluations"]]
