"""Property: for generated and mutated JSONL datasets, validation never raises, never hangs (each case has
a deadline), and every refusal names a line (or, for the file as a whole, says what the file lacks)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from kubetune.data import FORMATS, iter_trl_records, validate_file
from kubetune.data.errors import DatasetError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"
BASE_LINES = [line for p in sorted(FIXTURES.glob("*.jsonl")) for line in p.read_text().splitlines()[:20] if line]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
    | st.sampled_from(["user", "assistant", "system", "tool", "messages", "prompt", "completion"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["messages", "role", "content", "prompt", "completion", "chosen", "rejected", "text",
                         "input", "preferred_output", "non_preferred_output", "tools", "answer", "tool_calls",
                         "name", "x"]) | st.text(max_size=6), kids, max_size=5),
    max_leaves=16,
)  # fmt: skip


@st.composite
def mutated_line(draw: st.DrawFn) -> str:
    """A valid fixture line, mutated as JSON (a value replaced) or as bytes (cut, a byte flipped)."""
    line = draw(st.sampled_from(BASE_LINES))
    how = draw(st.sampled_from(["keep", "json", "cut", "byte", "nest", "value"]))
    if how == "json":
        try:
            obj = json.loads(line)
        except ValueError:  # the fixtures hold broken lines on purpose
            return line
        if isinstance(obj, dict) and obj:
            obj[draw(st.sampled_from(sorted(obj)))] = draw(json_values)
        return json.dumps(obj)
    if how == "cut":
        return line[: draw(st.integers(0, len(line)))]
    if how == "byte":
        i = draw(st.integers(0, len(line) - 1))
        return line[:i] + draw(st.sampled_from(["\\", '"', "{", "\x00", "\udcff", "é"])) + line[i + 1 :]
    if how == "nest":
        depth = draw(st.integers(1, 5000))
        return '{"messages": ' + "[" * depth + "]" * depth + "}"
    if how == "value":
        return json.dumps(draw(json_values))
    return line


FILE_LEVEL = ("the file is empty", "only ", "file not found", "cannot read the file")


@given(
    st.lists(mutated_line(), min_size=0, max_size=25),
    st.sampled_from(FORMATS),
    st.booleans(),
    st.one_of(st.none(), st.integers(1, 30)),
)
def test_validation_never_raises_and_every_error_names_a_line(tmp_path_factory, lines, fmt, prompts_only, max_examples):
    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape"))
    report = validate_file(path, format=fmt, prompts_only=prompts_only, max_examples=max_examples)
    for error in report.errors:
        assert error.message
        assert error.line >= 1 or error.message.startswith(FILE_LEVEL), error
    for text in report.rendered_errors():
        assert text.startswith(str(path)), text
    if report.ok:
        # what validation accepts, the trainer can read: every record, no exception
        records = list(iter_trl_records(path, report.format, max_examples=max_examples, prompts_only=prompts_only))
        assert len(records) == report.examples
    else:
        try:
            list(iter_trl_records(path, fmt, max_examples=max_examples, prompts_only=prompts_only))
        except DatasetError as err:
            assert str(path) in str(err)


def test_a_shuffled_fixture_mix_is_refused_line_by_line(tmp_path):
    lines = BASE_LINES[:]
    random.Random(0).shuffle(lines)
    path = tmp_path / "mix.jsonl"
    path.write_text("\n".join(lines))
    report = validate_file(path)
    assert not report.ok and all(e.line >= 1 for e in report.errors if not e.message.startswith(FILE_LEVEL))
