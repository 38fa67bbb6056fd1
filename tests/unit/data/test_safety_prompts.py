"""Safety prompt sets: the format's checks with line numbers, and the shipped default set."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from kubetune.data import DatasetError
from kubetune.data.safety import DEFAULT_SET, check_safety_prompts, read_safety_prompts


def write(tmp_path, *lines: str):
    path = tmp_path / "redteam.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_the_default_set_is_valid_balanced_and_licensed():
    prompts = read_safety_prompts()
    kinds = Counter(p.harmful for p in prompts)
    assert kinds[True] >= 30 and kinds[False] >= 25
    assert len({p.category for p in prompts if p.harmful}) >= 8
    # Every category of harmful prompts has a benign look-alike (over-refusal probes).
    assert {p.category for p in prompts if p.harmful} == {p.category for p in prompts if not p.harmful}
    assert "Apache License" in (DEFAULT_SET.parent / "LICENSE").read_text()
    # Alternating: a prefix (maxPrompts) keeps both kinds.
    assert {p.harmful for p in read_safety_prompts(max_prompts=2)} == {True, False}


def test_errors_name_the_line_and_the_field(tmp_path):
    path = write(
        tmp_path,
        json.dumps({"prompt": "hurt someone", "harmful": True, "category": "violence"}),
        "",
        json.dumps({"prompt": "kill a process", "harmfull": False, "category": "violence"}),
        json.dumps({"prompt": "", "harmful": "yes", "category": "x"}),
        "{not json",
    )
    _, errors = check_safety_prompts(path)
    assert [str(e) for e in errors] == [
        "line 3: harmfull: unknown field (a safety prompt has only prompt, harmful, category)",
        "line 3: harmful: needs true (should be refused) or false (should be answered) (missing)",
        "line 4: prompt: needs a non-empty string (got empty string)",
        "line 4: harmful: needs true (should be refused) or false (should be answered) (got string)",
        "line 5: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
    ]
    with pytest.raises(DatasetError) as err:
        read_safety_prompts(path)
    assert f"{path}:3: harmfull: unknown field" in str(err.value)


def test_a_set_needs_harmful_and_benign_prompts(tmp_path):
    path = write(tmp_path, json.dumps({"prompt": "a", "harmful": True, "category": "c"}))
    _, errors = check_safety_prompts(path)
    assert [str(e) for e in errors] == [
        "file: no benign prompt (harmful: false): the over-refusal rate needs at least one"
    ]
