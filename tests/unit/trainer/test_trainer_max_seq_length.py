"""spec.hyperparameters.maxSeqLength against the data, counted with the model's tokenizer before TRL sees it:
a prompt that fills it in every example is a data error in kubetune's words (TRL would drop every example and
crash with num_samples=0); examples that are merely cut are counted in a warning."""

from __future__ import annotations

import logging

import pytest
from trainer_helpers import events, make_config, write_jsonl

from kubetune import constants as c
from kubetune_trainer import cli

pytestmark = pytest.mark.slow

LONG = "please plan a long trip through the mountains and the lakes with many stops " * 3
ROWS = {
    "prompt-completion": [{"prompt": f"{i} {LONG}", "completion": " yes"} for i in range(12)],
    "chat": [
        {"messages": [{"role": "user", "content": f"{i} {LONG}"}, {"role": "assistant", "content": "yes"}]}
        for i in range(12)
    ],
}


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_prompts_that_fill_max_seq_length_everywhere_are_a_data_error_naming_the_field(
    fmt, tiny_model, tmp_path, monkeypatch, capsys
):
    train = write_jsonl(tmp_path / "train.jsonl", ROWS[fmt])
    cfg = make_config(tmp_path, tiny_model, train, hyperparameters={"maxSeqLength": 16})
    (tmp_path / "run.json").write_text(cfg.dump())
    monkeypatch.setenv(c.ENV_TERMINATION_LOG, str(tmp_path / "termination-log"))

    assert cli.main(["train", "--config", str(tmp_path / "run.json")]) == c.EXIT_DATA_VALIDATION_FAILED
    err = capsys.readouterr().err
    assert "Traceback" not in err and "num_samples" not in err
    said = "spec.hyperparameters.maxSeqLength (16 tokens) is too short for the training data"
    assert said in err and "every one of its 12 examples" in err
    assert (tmp_path / "termination-log").read_text().startswith(f"data error: {said}")
    failed = [e for e in events(tmp_path) if e["event"] == "data_failed"]
    assert failed and said in failed[0]["data"]["errors"][0]  # status.data.errors
    assert not (tmp_path / "output" / "final").exists()


def test_examples_longer_than_max_seq_length_are_counted_and_trained_on_cut(tiny_model, tmp_path, caplog):
    from kubetune_trainer.train import EXIT_OK, run

    rows = [{"prompt": f"{i} plan a trip", "completion": " to the lakes"} for i in range(9)]
    rows += [{"prompt": f"{i} plan a trip", "completion": " " + LONG} for i in range(3)]  # the answer is cut
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = make_config(tmp_path, tiny_model, train, hyperparameters={"maxSeqLength": 32, "maxSteps": 2})
    with caplog.at_level(logging.WARNING, logger="kubetune_trainer.seqlength"):
        assert run(cfg) == EXIT_OK
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "kubetune_trainer.seqlength"]
    assert warning.startswith("3 of 12 training examples are longer than spec.hyperparameters.maxSeqLength (32")
    assert "examples 10, 11, 12" in warning and "no answer" not in warning
