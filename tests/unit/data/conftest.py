"""Helpers for the kubetune.data tests: write JSONL files and valid example lines of every format."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"


def chat_line(i: int = 0) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": f"Answer {i}."},
        ]
    }


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """write_jsonl(rows, name=...) -> path; a row that is a str is written as it is (broken lines)."""

    def write(rows: list[Any], name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
        return path

    return write


@pytest.fixture(name="chat_line")
def chat_line_fixture() -> Callable[[int], dict[str, Any]]:
    """chat_line(i): one valid chat line, distinct for each i."""
    return chat_line


@pytest.fixture
def chat_rows() -> Callable[[int], list[dict[str, Any]]]:
    """n distinct valid chat lines."""
    return lambda n: [chat_line(i) for i in range(n)]
