"""Whole runs: bad data stops everything, a killed run resumes, continual training, a finished run is kept."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
from pathlib import Path

import pytest
from trainer_helpers import (
    FIXTURES,
    RESUME_ROWS,
    epochs_config,
    events,
    final_steps,
    make_config,
    quickstart_rows,
    trainer_command,
    trainer_env,
    write_config,
)

from kubetune_trainer.train import EXIT_DATA, EXIT_OK, run

pytestmark = pytest.mark.slow


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bad_data_stops_the_run_before_training_and_overwrites_nothing(tmp_path, tiny_model, capsys):
    cfg = make_config(tmp_path, tiny_model, FIXTURES / "broken_chat.jsonl")
    out = Path(cfg.output_dir)
    earlier = out / "checkpoint-4"  # what an earlier attempt left behind
    earlier.mkdir(parents=True)
    (earlier / "kubetune.json").write_text('{"step": 4}')
    before = _snapshot(out)

    assert run(cfg) == EXIT_DATA
    report = (out / "data-validation.txt").read_text()
    assert "broken_chat.jsonl:2:" in report  # line-numbered
    assert "broken_chat.jsonl:3:" in report
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if k != "data-validation.txt"} == before
    assert "data validation failed" in capsys.readouterr().err
    kinds = [e["event"] for e in events(tmp_path)]
    assert kinds == ["data_failed"]  # no progress: nothing was trained
    assert events(tmp_path)[0]["data"]["errors"]


def test_data_in_the_wrong_format_for_the_method_is_a_data_error(tmp_path, tiny_model):
    cfg = make_config(tmp_path, tiny_model, FIXTURES / "prompt_completion.jsonl", method="dpo")
    assert run(cfg) == EXIT_DATA
    report = (Path(cfg.output_dir) / "data-validation.txt").read_text()
    assert "spec.method dpo" in report and "preference" in report
    assert not list(Path(cfg.output_dir).glob("checkpoint-*"))


def test_a_killed_run_resumes_from_its_last_complete_checkpoint(tmp_path, tiny_model, uninterrupted_steps, caplog):
    """SIGKILL mid-run, a half-written checkpoint left behind; the restart ends with the same steps."""
    env = trainer_env()
    d = tmp_path / "killed"
    cfg = epochs_config(d, tiny_model, quickstart_rows(RESUME_ROWS))
    out = Path(cfg.output_dir)
    cmd = trainer_command(write_config(d, cfg))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint-4" / "kubetune.json").exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "final").exists()
    done = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "kubetune.json").exists())
    # the pod died while writing the next checkpoint: weights there, no kubetune.json
    half = out / f"checkpoint-{done[-1] + 4}"
    half.mkdir(exist_ok=True)
    (half / "model.safetensors").write_bytes(b"truncated")

    # The restart runs in this process: a fresh run that has only what the killed one left on disk, as a
    # restarted pod has (a second interpreter would import the training stack again, seconds on 2 cores).
    caplog.set_level(logging.INFO, logger="kubetune_trainer")
    assert run(cfg) == EXIT_OK
    assert f"resuming from {out / f'checkpoint-{done[-1]}'}" in caplog.text
    assert f"discarding incomplete checkpoint {half}" in caplog.text
    assert final_steps(out) == uninterrupted_steps
    state = json.loads((out / "final" / "kubetune.json").read_text())
    assert state["epoch"] == pytest.approx(2.0)


def test_a_finished_run_is_not_repeated(tmp_path, tiny_model):
    cfg = make_config(tmp_path, tiny_model, FIXTURES / "prompt_completion.jsonl", hyperparameters={"maxSteps": 4})
    assert run(cfg) == EXIT_OK
    final = Path(cfg.output_dir) / "final"
    before = _snapshot(final)
    assert run(cfg) == EXIT_OK
    assert _snapshot(final) == before


def test_continual_fine_tuning_from_an_adapter_checkpoint(tmp_path, tiny_model):
    first = make_config(tmp_path / "v1", tiny_model, FIXTURES / "prompt_completion.jsonl")
    assert run(first) == EXIT_OK
    ckpt = Path(first.output_dir) / "checkpoint-8"
    second = make_config(tmp_path / "v2", ckpt, FIXTURES / "prompt_completion.jsonl")
    assert run(second) == EXIT_OK
    meta = json.loads((Path(second.output_dir) / "final" / "kubetune.json").read_text())
    assert meta["started_from"] == str(ckpt)
    assert meta["base_model"] == str(tiny_model)  # still one adapter over the original base
    assert (Path(second.output_dir) / "final" / "adapter_config.json").exists()


def test_checkpoints_every_epoch(tmp_path, tiny_model):
    cfg = make_config(
        tmp_path,
        tiny_model,
        FIXTURES / "prompt_completion.jsonl",
        checkpoints={"every": 1, "unit": "epochs", "keep": 5},
        hyperparameters={"maxSteps": None, "epochs": 2, "batchSize": 6},
    )
    assert run(cfg) == EXIT_OK
    metas = [json.loads(p.read_text()) for p in sorted(Path(cfg.output_dir).glob("checkpoint-*/kubetune.json"))]
    assert [round(m["epoch"]) for m in metas] == [1, 2]


def test_checkpoints_every_epoch_are_evaluated_and_ranked(tmp_path, tiny_model):
    """unit: epochs with validation data: each epoch checkpoint carries its eval_loss, so selectBy can rank them."""
    cfg = make_config(
        tmp_path,
        tiny_model,
        FIXTURES / "prompt_completion.jsonl",
        validation=FIXTURES / "prompt_completion.jsonl",
        checkpoints={"every": 1, "unit": "epochs", "keep": 5},
        hyperparameters={"maxSteps": None, "epochs": 2, "batchSize": 6},
    )
    assert run(cfg) == EXIT_OK
    metas = [json.loads(p.read_text()) for p in sorted(Path(cfg.output_dir).glob("checkpoint-*/kubetune.json"))]
    assert len(metas) == 2
    assert all("eval_loss" in m["eval_metrics"] for m in metas), [m["eval_metrics"] for m in metas]
