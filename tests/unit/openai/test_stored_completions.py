"""Stored completions: kept only when asked, listed by metadata, pruned, and exported as a chat training file
that `kubetune validate` accepts and `kubetune run` trains on (distillation without the teacher's endpoint)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.openai.stored import CompletionStore, training_lines

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def completion(answer: str) -> dict:
    return {
        "id": None,
        "object": "chat.completion",
        "model": "teacher",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
    }


def ask(kept: CompletionStore, question: str, answer: str, *, when: dt.datetime = NOW, **request) -> dict | None:
    body = {"model": "teacher", "messages": [{"role": "user", "content": question}], **request}
    return kept.store("team-a", body, completion(answer), now=when)


def test_only_requests_that_ask_are_stored_and_they_filter_by_metadata(tmp_path: Path) -> None:
    store = CompletionStore(tmp_path, enabled=True)
    assert ask(store, "q0", "a0") is None  # no store: true
    assert ask(store, "q1", "a1", store=True, metadata={"app": "web"})
    assert ask(store, "q2", "a2", store=True, metadata={"app": "mobile"})
    assert [r["request"]["messages"][0]["content"] for r in store.select("team-a", {"app": "web"})] == ["q1"]
    assert len(store.select("team-a")) == 2 and store.select("team-b") == []
    off = CompletionStore(tmp_path / "off")
    assert ask(off, "q", "a", store=True) is None and not (tmp_path / "off").exists()


def test_retention_and_size_limit(tmp_path: Path) -> None:
    store = CompletionStore(tmp_path, enabled=True, retention_days=7)
    ask(store, "old", "a", store=True, when=NOW - dt.timedelta(days=8))
    ask(store, "new", "a", store=True)
    assert [r["request"]["messages"][0]["content"] for r in store.select("team-a")] == ["new"]
    small = CompletionStore(tmp_path / "small", enabled=True, max_bytes=600)
    stored = [ask(small, f"q{i}", "a" * 50, store=True) for i in range(5)]
    assert stored[0] is not None and stored[-1] is None
    assert small.used_bytes("team-a") <= 600


@pytest.mark.slow
def test_exported_completions_validate_and_train_with_kubetune_run(tmp_path: Path) -> None:
    store = CompletionStore(tmp_path / "storage", enabled=True)
    for i in range(16):
        ask(store, f"What is {i} plus {i}?", f"{i + i}", store=True, metadata={"task": "sums"})
    ask(store, "unrelated", "skip me", store=True, metadata={"task": "other"})
    folder = tmp_path / "job"
    (folder / "data").mkdir(parents=True)
    lines = training_lines(store.select("team-a", {"task": "sums"}))
    assert len(lines) == 16 and json.loads(lines[0])["messages"][-1] == {"role": "assistant", "content": "0"}
    (folder / "data" / "train.jsonl").write_text("".join(lines))

    validated = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "validate", str(folder / "data" / "train.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "chat" in validated.stdout and "16 examples" in validated.stdout

    from kubetune_trainer.tiny import init_tiny

    runs = tmp_path / "runs"
    init_tiny(
        runs / "namespaces" / "team-a" / "pvc" / "models" / "student", [folder / "data" / "train.jsonl"], size="nano"
    )
    job = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "sums-distilled", "namespace": "team-a"},
        "spec": {
            "method": "sft",  # the teacher's stored answers are the targets: no teacher endpoint needed
            "baseModel": {"uri": "pvc://models/student"},
            "dataset": {"train": {"uri": "data/train.jsonl"}, "format": "chat"},
            "adapter": {"type": "none"},
            "hyperparameters": {"maxSteps": 4, "batchSize": 4, "maxSeqLength": 64, "packing": False},
            "checkpoints": {"every": 2, "keep": 2},
            "resources": {"gpus": 0},
        },
    }
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    run = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "run", str(folder), "--runs-dir", str(runs), "--no-serve"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Succeeded" in run.stdout, run.stdout[-3000:]
