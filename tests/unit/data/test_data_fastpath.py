"""The fast path of validation (kubetune.data.fastpath) reports exactly what the detailed checks report."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import kubetune.data.validate as validate_module
from kubetune.data import validate_file


def _chat(*turns: tuple[str, str]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns]}, ensure_ascii=False)


PLAIN = [
    _chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!")),
    _chat(("user", "Two plus two?"), ("assistant", "Four."), ("user", "And three?"), ("assistant", "Five... no, six.")),
    _chat(("system", "Be kind."), ("user", "x" * 300), ("assistant", "y" * 900)),
    _chat(("user", "Zürich → 東京 😀"), ("assistant", "Ja.")),
    _chat(("user", "where?"), ("system", "Late system prompt."), ("assistant", "Here.")),
]
# Lines the fast path must leave to the detailed checks (each is refused or differs in what it reports).
OTHER = [
    '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "lone surrogate"}]}',
    '{"messages": [{"role": "user", "content": NaN}, {"role": "assistant", "content": "x"}]}',
    '{"messages": [{"role": "user", "content": "\\u00a0\\u3000"}, {"role": "assistant", "content": "blank"}]}',
    '{"messages": [{"role": "user", "content": "a", "content": " "}, {"role": "assistant", "content": "dup key"}]}',
    '{"messages": [{"role": "user", "content": " ", "content": "b"}, {"role": "assistant", "content": "dup key"}]}',
    '{"messages": [{"role": "developer", "content": "d"}, {"role": "user", "content": "u"}, '
    '{"role": "assistant", "content": "a"}]}',
    '{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a", "weight": 0}]}',
    '{"messages": [{"role": "user", "content": "only a question"}]}',
    '{"messages": []}',
    '{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}], "tools": []}',
    '{"messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}, '
    '{"role": "assistant", "content": "a"}]}',
    "not json",
    '[{"role": "user"}]',
]


def _file(tmp_path: Path, lines: list[str], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def _report(path: Path, fast: bool, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> dict:
    taken = []
    with monkeypatch.context() as m:
        # runs of ~2 KB, so that this small file has several, some of plain lines only (taken whole)
        m.setattr(validate_module, "iter_line_chunks", functools.partial(validate_module.iter_line_chunks, size=2048))
        if fast:  # count the lines the fast path takes: the comparison means nothing if it takes none
            for name in ("plain_chats", "plain_chat"):
                real = getattr(validate_module, name)
                m.setattr(validate_module, name, lambda x, real=real: taken.append(real(x)) or taken[-1])
        else:
            m.setattr(validate_module, "plain_chats", lambda lines: None)
            m.setattr(validate_module, "plain_chat", lambda raw: None)
        report = validate_file(path, **kwargs)
    if fast and kwargs.get("format") != "reinforcement":
        assert sum(len(run) for run in taken if run) >= 40
    return {**vars(report), "rendered": report.render()}  # every field, and what `kubetune validate` prints


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"format": "chat"},
        {"max_seq_length": 60, "long_example_chars": 500},
        {"count_tokens": lambda text: len(text.split())},
        {"max_examples": 45},
        {"prompts_only": True},
        {"format": "reinforcement"},
    ],
    ids=["auto", "chat", "max-seq-length", "tokenizer", "max-examples", "prompts-only", "other-format"],
)
def test_fast_and_detailed_checks_report_the_same(tmp_path: Path, monkeypatch, kwargs) -> None:
    # plain runs (taken whole), a blank line, every kind of other line, repeats of earlier lines
    lines = PLAIN * 8 + [""] + OTHER + PLAIN + [PLAIN[0], "  " + PLAIN[1]] + OTHER[::-1] + PLAIN * 3
    path = _file(tmp_path, lines)
    fast = _report(path, True, monkeypatch, **kwargs)
    detailed = _report(path, False, monkeypatch, **kwargs)
    assert fast == detailed
    assert fast["errors"]  # the other lines are still reported, line by line


def test_a_large_plain_file_is_counted_as_the_detailed_checks_count_it(tmp_path: Path, monkeypatch) -> None:
    # runs of many lines (several read chunks): duplicates across chunks, maxima and their lines
    lines = [
        _chat(("system", f"S{i % 3}"), ("user", f"q{i} " * (i % 17 + 1)), ("assistant", "a" * (i % 101 + 1)))
        for i in range(3000)
    ]
    lines += lines[:50]
    path = _file(tmp_path, lines)
    fast = _report(path, True, monkeypatch, max_seq_length=40)
    assert fast == _report(path, False, monkeypatch, max_seq_length=40)
    assert fast["stats"]["duplicates"] == 50 and fast["stats"]["distinct_system_prompts"] == 3


def _detailed(i: int) -> str:
    """A valid chat line the fast path leaves to the detailed checks (a per-message `weight`)."""
    return json.dumps(
        {"messages": [{"role": "user", "content": f"d{i}"}, {"role": "assistant", "content": "a", "weight": 1}]}
    )


def test_duplicates_across_chunks_and_both_paths_are_counted_and_shown_in_line_order(
    tmp_path: Path, monkeypatch
) -> None:
    plain = [_chat(("user", f"question {i}"), ("assistant", f"answer {i}")) for i in range(400)]
    detailed = [_detailed(i) for i in range(40)]
    lines = plain[:300]  # runs taken whole by the fast path
    for i in range(40):  # a region read line by line: detailed lines between plain ones, repeats of both kinds
        lines += [detailed[i], plain[300 + i], plain[(i * 37) % 300], ""]
    lines += detailed[::-1] + plain[300:] + plain[:300:7]  # repeats in whole runs, of lines from both paths
    path = _file(tmp_path, lines)
    first: dict[str, int] = {}
    expected = []  # (line, first line) of every repeat, in line order, from the file itself
    for number, line in enumerate(lines, 1):
        if line:
            if line in first:
                expected.append((number, first[line]))
            else:
                first[line] = number
    assert len(expected) > 100

    fast = _report(path, True, monkeypatch)
    assert fast == _report(path, False, monkeypatch)
    assert not fast["errors"] and fast["stats"]["duplicates"] == len(expected)
    shown = ", ".join(f"line {a} repeats line {b}" for a, b in expected[:5])
    assert f"{len(expected)} duplicate example(s) ({shown}, ...)" in fast["warnings"]


def test_plain_chat_lines_take_no_interpreted_work_per_line(tmp_path: Path) -> None:
    """What makes `kubetune validate` as fast as a bare json.loads loop (benchmarks/validate_speed.py): on a
    file of plain chat lines the interpreter works per read chunk, and every per-line step (decoding, counts,
    duplicate digests) is a C loop. Counted in trace events, a stand-in for timing that a loaded machine cannot
    upset: 5,000 more lines (about 10 chunks) may cost a few hundred events, not several per line."""
    small, large = (
        _file(tmp_path, [_chat(("user", f"q{i}"), ("assistant", f"a{i}")) for i in range(rows)], name)
        for rows, name in ((5_000, "small.jsonl"), (10_000, "large.jsonl"))
    )
    validate_file(small)  # imports and first-use work out of the count

    def events(path: Path) -> int:
        count = 0

        def tracer(frame: FrameType, event: str, arg: Any) -> Any:
            nonlocal count
            count += 1
            return tracer

        previous = sys.gettrace()
        sys.settrace(tracer)
        try:
            report = validate_file(path)
        finally:
            sys.settrace(previous)
        assert report.ok and report.stats["duplicates"] == 0
        return count

    per_line = (events(large) - events(small)) / 5_000
    assert per_line < 1, per_line
