"""The fast path of validation (kubetune.data.fastpath) reports exactly what the detailed checks report."""

from __future__ import annotations

import functools
import json
from pathlib import Path

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
