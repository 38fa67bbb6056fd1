"""The trainer's termination message: why it failed, in one short line, without secrets."""

from __future__ import annotations

import errno
import json

import pytest
from trainer_helpers import make_config, write_jsonl

from kubetune import constants as c
from kubetune_trainer import cli, termination
from kubetune_trainer.inputs import DataValidationError
from kubetune_trainer.sources import ModelSourceError


@pytest.fixture
def log(tmp_path, monkeypatch):
    path = tmp_path / "termination-log"
    monkeypatch.setenv(c.ENV_TERMINATION_LOG, str(path))
    return path


@pytest.mark.parametrize(
    ("err", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/mnt/kubetune/output/checkpoint-4"), "out of disk"),
        (RuntimeError("basic_ios::clear: iostream error"), "out of disk"),  # torch.save on a full disk
        (RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed"), "out of disk"),
        (MemoryError(), "out of memory"),
        (ModelSourceError("model URI 'pvc://models/x': nothing at /mnt/pvc/models/x"), "model source error"),
        (DataValidationError("train.jsonl:7: messages: expected a list"), "data error"),
        (ValueError("something else"), "error"),
    ],
)
def test_each_failure_has_its_reason(err, reason):
    assert termination.describe(err)[0] == reason


def test_a_torch_out_of_memory_error_is_out_of_memory():
    import torch

    reason, detail = termination.describe(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert reason == "out of memory" and "batchSize" in detail


def test_a_full_disk_behind_another_error_is_still_out_of_disk():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("saving the checkpoint failed") from inner
    except RuntimeError as err:
        assert termination.describe(err)[0] == "out of disk"


def test_the_message_is_one_line_at_most_4_kib_and_without_secrets(log, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnopqrstuvwxyz")
    monkeypatch.setenv("KUBETUNE_ENDPOINT_API_KEY", "very-secret-key-123")
    err = ModelSourceError(
        "download failed for hf_abcdefghijklmnopqrstuvwxyz with header Authorization: Bearer very-secret-key-123\n"
        + "x" * 10_000
    )
    message = termination.record_failure(err)
    assert message == log.read_text()
    assert message.startswith("model source error: download failed for *** ")
    assert "hf_abc" not in message and "very-secret" not in message and "\n" not in message
    assert len(message.encode()) <= 4096


def test_nothing_is_written_outside_a_pod(tmp_path, monkeypatch):
    monkeypatch.delenv(c.ENV_TERMINATION_LOG, raising=False)
    monkeypatch.setattr(c, "TERMINATION_LOG_PATH", str(tmp_path / "absent" / "termination-log"))
    assert termination.record_failure(MemoryError()) is None
    assert not (tmp_path / "absent").exists()


def test_train_with_invalid_data_says_data_error_and_the_line(tmp_path, log):
    train = write_jsonl(tmp_path / "train.jsonl", [{"messages": [{"role": "user", "content": "q"}]}] * 12)
    cfg_path = tmp_path / "run-config.json"
    cfg_path.write_text(make_config(tmp_path, tmp_path / "no-model", train).dump())
    assert cli.main(["train", "--config", str(cfg_path)]) == c.EXIT_DATA_VALIDATION_FAILED
    message = log.read_text()
    assert message.startswith("data error: ") and "train.jsonl:1: messages" in message


def test_train_with_a_missing_model_says_model_source_error(tmp_path, log):
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(12)
    ]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg_path = tmp_path / "run-config.json"
    cfg_path.write_text(make_config(tmp_path, "pvc://models/missing", train).dump())
    doc = json.loads(cfg_path.read_text())
    doc["storage"] = {"pvcRoot": str(tmp_path / "pvc"), "baseDir": str(tmp_path)}
    cfg_path.write_text(json.dumps(doc))
    with pytest.raises(ModelSourceError):
        cli.main(["train", "--config", str(cfg_path)])
    assert log.read_text().startswith("model source error: model URI 'pvc://models/missing': nothing at")
