"""Rejections: every problem is reported with its line number, field path and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.data import LineError, ValidationReport, data_status, validate_file

U = {"role": "user", "content": "Hi"}
A = {"role": "assistant", "content": "Hello"}


def errors_of(report: ValidationReport) -> list[tuple[int, str | None, str]]:
    return [(e.line, e.field, e.message) for e in report.errors]


def only_error(report: ValidationReport, line: int) -> LineError:
    found = [e for e in report.errors if e.line == line]
    assert len(found) == 1, report.render()
    return found[0]


def test_broken_sample_file_reports_every_line(fixtures_dir: Path) -> None:
    report = validate_file(fixtures_dir / "broken_chat.jsonl")
    assert not report.ok and report.format == "chat" and report.examples == 4
    assert [e.line for e in report.errors] == [2, 3, 4, 5, 6, 7, 10, 0]
    rendered = report.render().splitlines()
    source = str(fixtures_dir / "broken_chat.jsonl")
    assert f"{source}:3: messages[1].role: unknown role 'bot' (expected system, user, assistant, tool)" in rendered
    assert f"{source}:6: looks like preference, but the file is chat (decided by line 1)" in rendered
    assert f"{source}: only 4 valid example(s); at least 10 are needed" in rendered
    assert any("line 12 repeats line 1" in w for w in report.warnings)


def test_bad_json_names_the_column(write_jsonl, chat_rows) -> None:
    rows = chat_rows(10)
    rows.insert(4, '{"messages": [{"role": "user", "content": "Hi"},]}')
    error = only_error(validate_file(write_jsonl(rows)), 5)
    assert error.message.startswith("invalid JSON: Expecting value (column 49)")
    assert error.field is None


def test_a_json_array_file_gets_a_hint(write_jsonl, chat_line) -> None:
    report = validate_file(write_jsonl(["[", json.dumps(chat_line()) + ",", "]"]))
    assert "JSONL needs one JSON object per line" in only_error(report, 1).message


def test_invalid_utf8(tmp_path: Path, chat_rows) -> None:
    path = tmp_path / "latin1.jsonl"
    lines = [json.dumps(r).encode() for r in chat_rows(10)]
    lines[2] = '{"text": "caf\u00e9"}'.encode("latin-1")
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert "not valid UTF-8" in only_error(validate_file(path), 3).message


def test_non_object_and_unrecognised_lines(write_jsonl, chat_rows) -> None:
    rows = [*chat_rows(10), "42", {"question": "?", "answer": "!"}]
    report = validate_file(write_jsonl(rows))
    assert only_error(report, 11).message == "expected a JSON object, got number"
    # a line matching no format, in a chat file, is checked as chat: the missing key is named
    assert (only_error(report, 12).field, only_error(report, 12).message) == (
        "messages",
        "missing required key 'messages'",
    )


def test_first_line_that_matches_no_format(write_jsonl, chat_rows) -> None:
    report = validate_file(write_jsonl([{"question": "?"}, *chat_rows(10)]))
    assert "cannot tell the format from the keys (question)" in only_error(report, 1).message
    assert report.format == "chat" and report.decided_by == 2 and report.examples == 10


@pytest.mark.parametrize(
    ("message_list", "field", "message"),
    [
        (
            [U, {"role": "bot", "content": "x"}],
            "messages[1].role",
            "unknown role 'bot' (expected system, user, assistant, tool)",
        ),
        ([{"content": "x"}, A], "messages[0].role", "missing role (expected system, user, assistant, tool)"),
        ([{"role": "user", "content": ""}, A], "messages[0].content", "empty content"),
        (
            [U, {"role": "assistant", "content": " \n"}],
            "messages[1].content",
            "empty content (an assistant turn needs text or tool_calls)",
        ),
        ([{"role": "user"}, A], "messages[0].content", "missing content"),
        ([{"role": "user", "content": None}, A], "messages[0].content", "content is null"),
        (
            [{"role": "user", "content": 5}, A],
            "messages[0].content",
            "expected a string or a list of text parts, got number",
        ),
        ([U, A, U], "messages[2].role", "the last message must be the assistant's answer to learn (found 'user')"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, A],
            "messages[0].content[0].type",
            "content part type 'image_url' is not supported (text only)",
        ),
        (
            [U, {"role": "tool", "content": "{}"}, A],
            "messages[1]",
            "a tool message must follow an assistant message with tool_calls",
        ),
        ([U, {"role": "user", "content": "x", "tool_calls": []}, A], None, None),  # empty tool_calls: fine
        ([U, {"role": "assistant", "content": "x", "weight": 2}], "messages[1].weight", "weight must be 0 or 1, got 2"),
        ("hello", "messages", "expected a list of messages, got string"),
        ([], "messages", "no messages"),
        ([U, "hello"], "messages[1]", "expected a message object {role, content}, got string"),
    ],
)
def test_chat_line_errors(write_jsonl, chat_rows, message_list, field, message) -> None:
    rows = chat_rows(10)
    rows.insert(6, {"messages": message_list})
    report = validate_file(write_jsonl(rows))
    if message is None:
        assert report.ok, report.render()
        return
    error = only_error(report, 7)
    assert (error.field, error.message) == (field, message)
    assert report.examples == 10


def test_tool_calls(write_jsonl, chat_rows) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    good = {
        "messages": [
            U,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            A,
        ]
    }
    no_id = {"messages": [U, {"role": "assistant", "tool_calls": [call]}, {"role": "tool", "content": "sunny"}, A]}
    bad_args = {
        "messages": [U, {"role": "assistant", "tool_calls": [dict(call, function={"name": "w", "arguments": "{city"})]}]
    }
    on_user = {"messages": [dict(U, tool_calls=[call]), A]}
    report = validate_file(write_jsonl([*chat_rows(10), good, no_id, bad_args, on_user]))
    assert [e.line for e in report.errors] == [13, 14]
    assert only_error(report, 13).field == "messages[1].tool_calls[0].function.arguments"
    assert only_error(report, 13).message.startswith("not valid JSON")
    assert only_error(report, 14).message == "only assistant messages can have tool_calls (role is 'user')"
    assert report.warnings[0] == (
        "1 line(s): tool message without tool_call_id although the assistant's tool calls have ids (lines 12)"
    )
    assert report.stats["tool_calls"] == 2


def test_formats_mixed_in_one_file(write_jsonl, chat_rows) -> None:
    rows = [*chat_rows(12), {"prompt": "a", "completion": "b"}, {"text": "plain"}]
    rows.insert(3, {"prompt": "x", "chosen": "y", "rejected": "z"})
    report = validate_file(write_jsonl(rows))
    assert errors_of(report) == [
        (4, None, "looks like preference, but the file is chat (decided by line 1)"),
        (14, None, "looks like prompt-completion, but the file is chat (decided by line 1)"),
        (15, None, "looks like text, but the file is chat (decided by line 1)"),
    ]
    assert report.examples == 12


def test_explicit_format_checks_every_line_against_it(write_jsonl, chat_rows) -> None:
    report = validate_file(write_jsonl([{"text": "hello"}, *chat_rows(10)]), format="text")
    assert report.format == "text" and report.examples == 1
    assert only_error(report, 2).message == "looks like chat, but the file is text (as given)"
    assert len(report.errors) == 11  # 10 mismatches and the minimum


def test_chat_line_in_a_reinforcement_file_gets_the_precise_error(write_jsonl) -> None:
    rows = [{"messages": [U], "answer": str(i)} for i in range(10)]
    rows.insert(2, {"messages": [U, A], "answer": "x"})
    error = only_error(validate_file(write_jsonl(rows)), 3)
    assert error.field == "messages[1].role"
    assert error.message.startswith("a reinforcement prompt ends with the user's turn")


def test_reinforcement_needs_a_reference_field(write_jsonl) -> None:
    rows = [{"messages": [U], "answer": str(i)} for i in range(10)] + [{"messages": [U]}]
    error = only_error(validate_file(write_jsonl(rows), format="reinforcement"), 11)
    assert error.message.startswith("no reference field for the graders")


def test_reinforcement_lines_share_their_reference_fields(write_jsonl) -> None:
    rows = [{"messages": [U], "answer": str(i)} for i in range(10)]
    rows[4] = {"messages": [U], "answer": "4", "meta": {"id": 4}}
    rows[6] = {"messages": [U], "solution": "6"}
    report = validate_file(write_jsonl(rows))
    assert errors_of(report) == [
        (5, None, "reference fields differ from line 1 (extra meta); every line needs the same"),
        (7, None, "reference fields differ from line 1 (missing answer; extra solution); every line needs the same"),
        (0, None, "only 8 valid example(s); at least 10 are needed"),
    ]


def test_prompt_completion_errors(write_jsonl) -> None:
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(10)]
    rows += [
        {"prompt": "q", "completion": ""},
        {"prompt": 3, "completion": "a"},
        {"completion": "a"},
        {"prompt": [U], "completion": [A]},  # conversational after standard lines
        {"prompt": [{"role": "system", "content": "s"}], "completion": [A]},
    ]
    report = validate_file(write_jsonl(rows), format="prompt-completion")
    assert errors_of(report) == [
        (11, "completion", "empty text"),
        (12, "prompt", "expected a string or a list of messages, got number"),
        (13, "prompt", "missing required key 'prompt'"),
        (14, "prompt", "lists of messages here, but line 1 uses strings; use one style in a file"),
        (15, "prompt[0].role", "the prompt ends with a system message; add the user's turn"),
        (15, "prompt", "the prompt has no user turn"),
    ]


def test_preference_errors(write_jsonl) -> None:
    no = {"role": "assistant", "content": "No."}
    rows = [{"input": {"messages": [U]}, "preferred_output": [A], "non_preferred_output": [no]} for _ in range(10)]
    rows[1] = {"input": {"messages": [U]}, "preferred_output": [U], "non_preferred_output": [no]}
    rows[2] = {"input": {"messages": [U]}, "preferred_output": [A]}
    rows[3] = {"chosen": [U, A], "rejected": [{"role": "user", "content": "Other"}, no]}
    rows[4] = {"input": {"messages": [U]}, "preferred_output": [A], "non_preferred_output": [A]}
    report = validate_file(write_jsonl(rows))
    assert errors_of(report)[:3] == [
        (2, "preferred_output[0].role", "expected role 'assistant' here, got 'user'"),
        (3, "non_preferred_output", "missing required key 'non_preferred_output'"),
        (4, "chosen", errors_of(report)[2][2]),
    ]
    assert "share no beginning" in errors_of(report)[2][2]
    assert any("identical" in w and w.startswith("1 line(s)") and w.endswith("(lines 5)") for w in report.warnings), (
        report.warnings
    )


def test_minimum_number_of_examples(write_jsonl, chat_rows) -> None:
    report = validate_file(write_jsonl(chat_rows(9)))
    assert errors_of(report) == [(0, None, "only 9 valid example(s); at least 10 are needed")]
    assert validate_file(write_jsonl(chat_rows(9)), min_examples=5).ok
    assert validate_file(write_jsonl(chat_rows(10))).ok


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "file not found"), (b"", "the file is empty"), (b"\n  \n\n", "the file is empty (only blank lines)")],
)
def test_missing_and_empty_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "train.jsonl"
    if content is not None:
        path.write_bytes(content)
    report = validate_file(path)
    assert errors_of(report) == [(0, None, message)]
    assert report.render().startswith(f"{path}: 1 error(s)")
    assert f"{path}: {message}" in report.render()


def test_unknown_format_name(write_jsonl, chat_rows) -> None:
    report = validate_file(write_jsonl(chat_rows(10)), format="sharegpt")
    assert "unknown format 'sharegpt'" in report.errors[0].message


def test_errors_beyond_max_errors_are_counted(write_jsonl, chat_rows) -> None:
    rows = [*chat_rows(10), *(["{bad"] * 30)]
    report = validate_file(write_jsonl(rows), max_errors=5)
    assert len(report.errors) == 5 and report.errors_omitted == 25 and report.error_count == 30
    assert [e.line for e in report.errors] == [11, 12, 13, 14, 15]
    path = report.source
    assert report.render().splitlines()[1:] == [
        f"{path}:11: invalid JSON: Expecting property name enclosed in double quotes (column 2) "
        "(30 lines: 11, 12, 13, 14, 15, ...)"
    ]


def test_duplicates_long_examples_and_system_prompt_warnings(write_jsonl, chat_rows, chat_line) -> None:
    rows = chat_rows(10)
    rows += [chat_line(2), chat_line(2), {"messages": [U, {"role": "assistant", "content": "x" * 500}]}]
    report = validate_file(write_jsonl(rows), long_example_chars=400)
    assert report.ok
    assert report.warnings == [
        "2 duplicate example(s) (line 11 repeats line 3, line 12 repeats line 3)",
        "1 example(s) longer than 400 characters (lines 13; longest: line 13, 503 characters); "
        "they may be cut at hyperparameters.maxSeqLength",
        "12 of 13 examples have a system prompt: use it in all or none, "
        "or the model learns to behave differently without it",
    ]
    assert report.stats["duplicates"] == 2 and report.stats["long_examples"] == 1


def test_max_examples_stops_reading(write_jsonl, chat_rows) -> None:
    rows = [*chat_rows(10), "{never read"]
    report = validate_file(write_jsonl(rows), max_examples=5)
    assert report.ok and report.examples == 5
    assert report.warnings == ["only the first 5 examples are used (maxExamples); the lines from 6 on were not read"]


def test_status_for_the_finetunejob(write_jsonl, chat_rows, fixtures_dir: Path) -> None:
    train = validate_file(write_jsonl(chat_rows(30), "train.jsonl"))
    valid = validate_file(write_jsonl(chat_rows(12), "valid.jsonl"))
    status = data_status(train, valid)
    assert status == {
        "format": "chat",
        "trainExamples": 30,
        "trainTokens": train.tokens,
        "validationExamples": 12,
        "warnings": [],
        "errors": [],
    }
    assert train.to_status()["trainExamples"] == 30 and "validationExamples" not in train.to_status()

    text = validate_file(fixtures_dir / "text.jsonl")
    assert "use one format for both" in data_status(train, text)["errors"][0]

    broken = validate_file(write_jsonl([*chat_rows(10), *(["{bad"] * 30)], "bad.jsonl"))
    errors = data_status(broken, valid)["errors"]
    assert len(errors) == 1  # 30 lines with the same error: said once
    assert errors[0].endswith(
        "bad.jsonl:11: invalid JSON: Expecting property name enclosed in double quotes (column 2) "
        "(30 lines: 11, 12, 13, 14, 15, ...)"
    )


def _many_errors(chat_rows) -> list:
    """10 valid lines, 401 lines with one error, 3 with another, and 2 broken lines."""
    one = {"messages": [U]}  # no answer to learn
    other = {"messages": [U, {"role": "assistant", "content": 5}]}
    return [*chat_rows(10), *([one] * 401), *([other] * 3), "{bad", "[1"]


def test_an_error_on_many_lines_is_said_once_with_its_count_and_first_lines(write_jsonl, chat_rows) -> None:
    report = validate_file(write_jsonl(_many_errors(chat_rows)))
    path = report.source
    assert report.error_count == 406  # beyond max_errors (200) too
    assert report.render().splitlines() == [
        f"{path}: 406 error(s) (chat, decided by line 1; 10 valid examples)",
        f"{path}:11: messages[0].role: the last message must be the assistant's answer to learn (found 'user') "
        "(401 lines: 11, 12, 13, 14, 15, ...)",
        f"{path}:412: messages[1].content: expected a string or a list of text parts, got number "
        "(3 lines: 412, 413, 414)",
        f"{path}:415: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:416: invalid JSON: Expecting ',' delimiter (column 3)",
    ]
    status = data_status(report)
    assert len(status["errors"]) == 4 and "(401 lines: 11, 12, 13, 14, 15, ...)" in status["errors"][0]


def test_status_keeps_the_first_distinct_errors_and_counts_the_rest(write_jsonl, chat_rows) -> None:
    rows = [*chat_rows(10), *(f'{{"a": {" " * i}}}' for i in range(30)), *([{"messages": [U]}] * 50)]
    status = data_status(validate_file(write_jsonl(rows)))
    assert len(status["errors"]) == 21  # 20 distinct errors, then the count of the other 60
    assert status["errors"][-1] == "... and 60 more error(s)"


def test_kubetune_validate_header_and_summary_count_the_same_errors(write_jsonl, chat_rows, capsys) -> None:
    from kubetune.cli import main

    path = write_jsonl(_many_errors(chat_rows))
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: 406 error(s)")
    assert out[-1] == "1 file(s), 0 resource(s), 1 dataset(s): 406 error(s)"
    assert len(out) < 10  # one line per distinct error, not 406


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(write_jsonl, chat_rows, constant) -> None:
    rows = chat_rows(10)
    rows[3] = '{"prompt": "Hi", "completion": "Hello", "score": ' + constant + "}"
    error = only_error(validate_file(write_jsonl(rows)), 4)
    assert error.message.startswith(f"invalid JSON: {constant} is not a JSON value"), error.message


def test_a_lone_surrogate_escape_is_refused_with_line_and_field(write_jsonl, chat_rows) -> None:
    rows = chat_rows(11)
    rows[2] = '{"messages": [{"role": "user", "content": "Hi \\ud800"}, {"role": "assistant", "content": "Hello"}]}'
    rows[5] = '{"messages": [{"role": "user", "content": "ok \\ud83d\\ude00"}, {"role": "assistant", "content": "A"}]}'
    report = validate_file(write_jsonl(rows))
    error = only_error(report, 3)
    assert error.field == "messages[0].content" and "surrogate" in error.message, error
    assert [e.line for e in report.errors] == [3]  # a valid pair (an emoji) is text
