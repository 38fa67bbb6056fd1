"""Format detection (auto) and the sample files: every accepted format validates and is recognised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.data import FORMATS, detect_record_format, validate_file

USER = {"role": "user", "content": "Hi"}
ASSISTANT = {"role": "assistant", "content": "Hello"}


def test_format_names_match_the_api() -> None:
    from kubetune.api.finetunejob import DatasetFormat

    assert set(FORMATS) == set(DatasetFormat.__args__)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ({"messages": [USER, ASSISTANT]}, "chat"),
        ({"messages": [USER, ASSISTANT], "tools": []}, "chat"),
        ({"messages": [USER, ASSISTANT], "answer": "x"}, "chat"),  # ends with the answer: chat, extra keys ignored
        ({"messages": [USER], "answer": "42"}, "reinforcement"),
        ({"messages": [USER]}, "chat"),  # no reference field: a chat line missing its answer
        ({"prompt": [USER], "ground_truth": "42"}, "reinforcement"),
        ({"prompt": "2+2=", "completion": "4"}, "prompt-completion"),
        ({"prompt": "The sky is", "chosen": " blue", "rejected": " green"}, "preference"),
        ({"chosen": [USER, ASSISTANT], "rejected": [USER, ASSISTANT]}, "preference"),
        ({"input": {"messages": [USER]}, "preferred_output": [ASSISTANT], "non_preferred_output": []}, "preference"),
        ({"text": "Once upon a time"}, "text"),
        ({"prompt": "alone"}, None),
        ({"question": "?", "answer": "!"}, None),
        ([1, 2], None),
    ],
)
def test_detect_record_format(line: object, expected: str | None) -> None:
    assert detect_record_format(line) == expected


@pytest.mark.parametrize(
    ("name", "fmt", "examples"),
    [
        ("chat_tools.jsonl", "chat", 12),
        ("prompt_completion.jsonl", "prompt-completion", 12),
        ("preference_openai.jsonl", "preference", 12),
        ("preference_trl.jsonl", "preference", 12),
        ("text.jsonl", "text", 12),
        ("reinforcement.jsonl", "reinforcement", 12),
    ],
)
def test_sample_files_are_valid_and_detected(fixtures_dir: Path, name: str, fmt: str, examples: int) -> None:
    report = validate_file(fixtures_dir / name)
    assert report.ok, report.render()
    assert (report.format, report.examples, report.decided_by) == (fmt, examples, 1)
    assert report.tokens > 0 and not report.tokens_counted
    assert report.warnings == []
    # the same file validates when its format is given explicitly
    explicit = validate_file(fixtures_dir / name, format=fmt)
    assert explicit.ok and explicit.examples == examples and explicit.decided_by is None


def test_chat_statistics(fixtures_dir: Path) -> None:
    stats = validate_file(fixtures_dir / "chat_tools.jsonl").stats
    assert stats["format"] == "chat"
    assert stats["tool_calls"] == 4 and stats["tool_messages"] == 4 and stats["examples_with_tools"] == 4
    assert stats["system_prompts"] == 12 and stats["distinct_system_prompts"] == 1
    assert stats["messages"]["max"] == 5 and stats["multi_turn_examples"] == 4
    assert stats["duplicates"] == 0 and stats["chars"]["max"] >= stats["chars"]["avg"] > 0


def test_preference_forms_are_counted(fixtures_dir: Path) -> None:
    assert validate_file(fixtures_dir / "preference_trl.jsonl").stats["forms"] == {"trl": 6, "trl-implicit-prompt": 6}
    assert validate_file(fixtures_dir / "preference_openai.jsonl").stats["forms"] == {"openai": 12}


def test_reinforcement_reference_fields(fixtures_dir: Path) -> None:
    assert validate_file(fixtures_dir / "reinforcement.jsonl").stats["reference_fields"] == {"answer": 12}


def test_openai_and_trl_preference_forms_mix_in_one_file(write_jsonl) -> None:
    def user(i: int) -> list[dict]:
        return [{"role": "user", "content": f"Question {i}?"}]

    no = [{"role": "assistant", "content": "No."}]
    openai = [
        {"input": {"messages": user(i)}, "preferred_output": [ASSISTANT], "non_preferred_output": no} for i in range(5)
    ]
    trl = [{"prompt": user(i), "chosen": [ASSISTANT], "rejected": no} for i in range(5, 10)]
    rows = openai + trl
    report = validate_file(write_jsonl(rows))
    assert report.ok and report.format == "preference" and report.stats["forms"] == {"openai": 5, "trl": 5}


def test_token_counter_is_used_when_given(fixtures_dir: Path) -> None:
    report = validate_file(fixtures_dir / "text.jsonl", count_tokens=lambda s: len(s.split()))
    lines = (fixtures_dir / "text.jsonl").read_text().splitlines()
    words = sum(len(json.loads(line)["text"].split()) for line in lines)
    assert report.tokens_counted and report.stats["tokens"]["counted"]
    assert report.tokens == words
