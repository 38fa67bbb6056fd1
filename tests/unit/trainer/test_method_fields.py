"""Method fields do what they say: RFT rewards per checkpoint select the best; distillation's temperature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trainer_helpers import FIXTURES, TINY_MODEL_DATA, events, logged_losses, make_config

from kubetune_trainer.train import EXIT_OK, run

pytestmark = pytest.mark.slow

GRADERS = [
    {"type": "exact_match", "field": "answer", "weight": 1.0},
    {"type": "regex", "name": "starts_with_show", "pattern": "^SHOW", "weight": 0.5},
    {"type": "string_similarity", "field": "answer", "weight": 0.5},
]
GRADER_KEYS = {"rewards/exact_match", "rewards/starts_with_show", "rewards/string_similarity"}


def test_rft_records_rewards_per_checkpoint_and_selects_the_best_by_them(tmp_path, tiny_model):
    from kubetune.api import FineTuneJob
    from kubetune.local.summary import rewards_table

    cfg = make_config(
        tmp_path,
        tiny_model,
        FIXTURES / "reinforcement.jsonl",
        method="rft",
        rft={"graders": GRADERS, "numGenerations": 2, "maxCompletionLength": 8, "temperature": 1.0},
        hyperparameters={"batchSize": 2, "maxSteps": 6},
        checkpoints={"every": 2, "keep": 5, "selectBy": {"metric": "reward", "mode": "max"}},
    )
    assert run(cfg) == EXIT_OK
    out = Path(cfg.output_dir)
    history = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]

    # kubetune.json: the mean reward and each grader's, as GRPO logged them up to that step
    for step in (2, 4, 6):
        metrics = json.loads((out / f"checkpoint-{step}" / "kubetune.json").read_text())["metrics"]
        logged = [e for e in history if "reward" in e and e["step"] <= step][-1]
        assert metrics["reward"] == pytest.approx(logged["reward"])
        for key in GRADER_KEYS:
            assert metrics[key] == pytest.approx(logged[f"{key}/mean"])

    # status.checkpoints (through the progress reporter) carries them, and the best is the highest reward
    last = [e for e in events(tmp_path) if e["event"] == "checkpoints"][-1]
    entries = {c["name"]: c for c in last["checkpoints"]}
    assert {"checkpoint-2", "checkpoint-4", "checkpoint-6", "final"} <= set(entries)
    for entry in entries.values():
        assert {"reward", *GRADER_KEYS} <= set(entry["metrics"])
    by_reward = sorted(entries.values(), key=lambda c: (c["metrics"]["reward"], c["step"], c["name"] != "final"))
    assert last["bestCheckpoint"] == by_reward[-1]["name"]
    finished = [e for e in events(tmp_path) if e["event"] == "finished"][-1]
    assert finished["output"]["checkpoint"] == last["bestCheckpoint"]
    assert finished["metrics"]["reward"] == pytest.approx(entries["final"]["metrics"]["reward"])

    # the `kubetune run` summary lists every checkpoint's rewards, the best starred
    job = FineTuneJob.model_validate(
        {
            "metadata": {"name": "codes"},
            "spec": cfg.spec.to_k8s(),
            "status": {"checkpoints": last["checkpoints"], "bestCheckpoint": last["bestCheckpoint"]},
        }
    )
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(rewards_table(job))
    text = console.export_text()
    assert f"{last['bestCheckpoint']} *" in text
    assert "starts_with_show" in text and "string_similarity" in text
    assert f"{entries['checkpoint-4']['metrics']['reward']:.3f}" in text


def _distill(tmp_path: Path, tiny_model: Path, teacher: Path, temperature: float) -> list[float]:
    cfg = make_config(
        tmp_path,
        tiny_model,
        FIXTURES / "prompt_completion.jsonl",
        method="distillation",
        distillation={"teacher": {"uri": str(teacher)}, "lmbda": 0.0, "beta": 0.5, "temperature": temperature},
        adapter={"type": "none"},
        hyperparameters={"maxSteps": 2},
        checkpoints={"every": 2},
    )
    assert run(cfg) == EXIT_OK
    return logged_losses(Path(cfg.output_dir) / "checkpoint-2")


def test_distillation_temperature_is_the_softmax_temperature_of_the_loss(tmp_path, tiny_model):
    """Same student, teacher, data and seed: only the temperature differs, and so does the loss.

    At temperature 10 both distributions flatten towards uniform, so their divergence shrinks."""
    from kubetune_trainer.tiny import init_tiny

    teacher = init_tiny(tmp_path / "teacher", TINY_MODEL_DATA, size="nano", vocab_size=512, seed=7)
    at_1 = _distill(tmp_path / "t1", tiny_model, teacher, 1.0)
    at_01 = _distill(tmp_path / "t01", tiny_model, teacher, 0.1)
    at_10 = _distill(tmp_path / "t10", tiny_model, teacher, 10.0)
    assert at_1[0] != at_01[0]
    assert at_10[0] < at_1[0]
