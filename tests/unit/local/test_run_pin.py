"""`kubetune run` with a ModelDeployment pinned to a checkpoint its FineTuneJob does not have: the run fails
(exit 1) naming the pin and the checkpoints there are, and the deployment's saved state is Failed."""

from __future__ import annotations

import json

import pytest

from kubetune.api import FineTuneJob, ModelDeployment
from kubetune.constants import EXIT_FAILED
from kubetune.local.cli import main
from kubetune.local.state import RunsDir

CLAIM = "pvc://travel-data/output"
KEY = ("team", "ModelDeployment", "travel")


def trained_job(runs: RunsDir) -> None:
    """The FineTuneJob `travel` as an earlier `kubetune run` left it: succeeded, three checkpoints."""
    job = FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "travel", "namespace": "team"},
            "spec": {"baseModel": {"uri": "pvc://models/tiny"}, "dataset": {"train": {"uri": "train.jsonl"}}},
            "status": {
                "phase": "Succeeded",
                "checkpoints": [
                    {"name": name, "uri": f"{CLAIM}/{name}"} for name in ("checkpoint-3", "checkpoint-6", "final")
                ],
                "bestCheckpoint": "checkpoint-6",
            },
        }
    )
    runs.save(job, "earlier")


def deployment(pin: str) -> dict:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "travel", "namespace": "team"},
        "spec": {"model": {"fineTuneJob": {"name": "travel", "checkpoint": "best"}}, "promotion": {"pin": pin}},
    }


@pytest.mark.parametrize("served_before", [None, "checkpoint-6"], ids=["first-run", "serving-before"])
def test_a_pin_to_a_missing_checkpoint_fails_the_run_and_names_what_exists(tmp_path, capsys, served_before):
    runs = RunsDir(tmp_path / "runs")
    trained_job(runs)
    if served_before:  # an earlier run served the best checkpoint; the pin is then set to one that is not there
        earlier = ModelDeployment.model_validate(
            {
                **deployment(""),
                "status": {
                    "phase": "Ready",
                    "servedCheckpoint": served_before,
                    "servedUri": f"{CLAIM}/{served_before}",
                },
            }
        )
        runs.save(earlier, "earlier")
    path = tmp_path / "deploy.yaml"
    path.write_text(json.dumps(deployment("checkpoint-999")))

    rc = main([str(path), "--runs-dir", str(runs.root), "--no-serve"])

    out = capsys.readouterr().out
    assert rc == EXIT_FAILED
    flat = " ".join(out.split())  # the console wraps long lines
    assert "spec.promotion.pin 'checkpoint-999' is not a checkpoint of FineTuneJob 'travel'" in flat
    assert "it has: checkpoint-3, checkpoint-6, final" in flat
    saved, _ = runs.load(KEY)
    assert saved.status.phase == "Failed"
    conditions = {cd.type: cd for cd in saved.status.conditions}
    assert conditions["Stalled"].reason == "PinnedCheckpointNotFound"
    assert conditions["Ready"].status == "False"
