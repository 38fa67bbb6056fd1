"""Validate a JSONL dataset in one streaming pass, and read it as TRL records.

Memory does not grow with the file: each line is parsed, checked, measured and dropped; duplicates are
found through 8-byte digests (see digests.py) and statistics are running counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from os import PathLike
from pathlib import Path
from typing import Any

from kubetune.data.errors import DatasetError, Issues, LineError, type_name
from kubetune.data.fastpath import plain_chat, plain_chats
from kubetune.data.formats import (
    AUTO,
    CHAT,
    FORMATS,
    PREFERENCE,
    PROMPT_COMPLETION,
    REINFORCEMENT,
    TEXT,
    TEXT_KEYS,
    check_record,
    detect_record_format,
    family,
    is_conversational,
    record_text,
    unknown_format_message,
)
from kubetune.data.jsonl import iter_jsonl, iter_line_chunks, parse_line
from kubetune.data.report import ValidationReport
from kubetune.data.stats import Collector, Tally, length_problem
from kubetune.objectstore import is_s3

MIN_EXAMPLES = 10
MAX_ERRORS = 200
WITH_TOOLS = (CHAT, PROMPT_COMPLETION, PREFERENCE)  # formats whose records may carry `tools`
LONG_EXAMPLE_CHARS = 16_000  # ~4,000 tokens: twice the default maxSeqLength of 2048
_PLAIN_CHAT_FORMATS = (None, CHAT)  # files where a plain chat line may take the fast path (None: not decided yet)


class LineChecker:
    """Checks the lines of one file in order: decides the format (auto), keeps one style per file."""

    def __init__(self, fmt: str = AUTO, prompts_only: bool = False) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
        self.format: str | None = None if fmt == AUTO else fmt
        self.prompts_only = prompts_only  # lines may stop before the answer (see formats.check_record)
        self.decided_by: int | None = None
        self._conversational: bool | None = None
        self._style_line = 0
        self._reference_keys: frozenset[str] | None = None
        self._reference_line = 0

    def check(self, line_no: int, obj: Any) -> tuple[dict[str, Any] | None, Issues]:
        """The TRL record of a parsed line (None when it has errors) and what the check found."""
        issues = Issues()
        if not isinstance(obj, dict):
            issues.error(None, f"expected a JSON object, got {type_name(obj)}")
            return None, issues
        detected = detect_record_format(obj, self.prompts_only)
        if self.format is None:
            if detected is None:
                issues.error(None, unknown_format_message(obj))
                return None, issues
            self.format, self.decided_by = detected, line_no
        elif detected is not None and family(detected) != family(self.format):
            how = f"decided by line {self.decided_by}" if self.decided_by else "as given"
            issues.error(None, f"looks like {detected}, but the file is {self.format} ({how})")
            return None, issues
        record = check_record(obj, self.format, issues, self.prompts_only)
        if record is not None and self.format not in (CHAT, TEXT):
            record = self._check_style(line_no, record, issues)
        if record is not None and self.format == REINFORCEMENT:
            record = self._check_reference_fields(line_no, record, issues)
        return record, issues

    def takes_plain_chat(self, line_no: int) -> bool:
        """Whether a plain chat line (kubetune.data.fastpath) is valid here as it stands: in a chat file, or as
        the line that decides an `auto` file (it is chat). Other files check it in detail (and refuse it)."""
        if self.format is None:
            self.format, self.decided_by = CHAT, line_no
            return True
        return self.format == CHAT

    def _check_reference_fields(self, line_no: int, record: dict[str, Any], issues: Issues) -> dict[str, Any] | None:
        """Every reinforcement line carries the same reference fields: the dataset is a table."""
        keys = frozenset(record) - {"prompt"}
        if self._reference_keys is None:
            self._reference_keys, self._reference_line = keys, line_no
            return record
        if keys == self._reference_keys:
            return record
        missing = ", ".join(sorted(self._reference_keys - keys))
        extra = ", ".join(sorted(keys - self._reference_keys))
        what = "; ".join(x for x in (missing and f"missing {missing}", extra and f"extra {extra}") if x)
        issues.error(
            None, f"reference fields differ from line {self._reference_line} ({what}); every line needs the same"
        )
        return None

    def _check_style(self, line_no: int, record: dict[str, Any], issues: Issues) -> dict[str, Any] | None:
        """TRL reads a whole file as conversational or as standard: one file, one style."""
        conversational = is_conversational(record)
        if self._conversational is None:
            self._conversational, self._style_line = conversational, line_no
            return record
        if conversational == self._conversational:
            return record
        here, there = ("lists of messages", "strings") if conversational else ("strings", "lists of messages")
        key = TEXT_KEYS[self.format or CHAT][0]
        issues.error(key, f"{here} here, but line {self._style_line} uses {there}; use one style in a file")
        return None


def _file_problem(path: Path) -> str | None:
    if not path.exists():
        return "file not found"
    if path.is_dir():
        return "is a directory; expected a JSONL file"
    if path.stat().st_size == 0:
        return "the file is empty"
    return None


def validate_file(
    path: str | PathLike[str],
    format: str = AUTO,
    min_examples: int = MIN_EXAMPLES,
    max_examples: int | None = None,
    max_errors: int = MAX_ERRORS,
    long_example_chars: int = LONG_EXAMPLE_CHARS,
    count_tokens: Callable[[str], int] | None = None,
    prompts_only: bool = False,
    max_seq_length: int | None = None,
) -> ValidationReport:
    """Check every line of a JSONL file against `format` (or the format its lines share, for `auto`).

    Collects all errors (the first `max_errors` in full, then a count), warnings, statistics and a token
    total: counted with `count_tokens` when given, else estimated as characters / 4. With `max_examples`
    reading stops after that many valid examples, as training would. With `prompts_only` (see
    kubetune.data.methods.data_needs) chat and prompt-completion lines may stop before the answer. With
    `max_seq_length` (spec.hyperparameters.maxSeqLength), examples longer than it are a warning (with counts),
    and a prompt that fills it in every example an error: nothing would be left to train on.
    """
    report = ValidationReport(source=str(path))
    file: str | Path = str(path) if is_s3(path) else Path(path)  # s3:// objects stream (kubetune.objectstore)
    if format not in FORMATS:
        problem: str | None = f"unknown format {format!r} (expected one of {', '.join(FORMATS)})"
    else:
        problem = None if isinstance(file, str) else _file_problem(file)
    if problem:
        report.errors.append(LineError(0, problem))
        return report

    checker = LineChecker(format, prompts_only)
    run = _Run(report, checker, max_errors, lambda: Collector(checker.format or CHAT, count_tokens, long_example_chars))
    run.max_seq_length = max_seq_length
    stopped_at = None
    unreadable = False

    try:
        for first, lines in iter_line_chunks(file):
            raws = list(map(bytes.strip, lines))
            examples = run.collector.examples if run.collector else 0
            # The common case, a run of plain chat lines (no blank one), is checked by the decoder alone
            # (kubetune.data.fastpath) and counted in one loop; any other run goes line by line.
            whole = (
                checker.format in _PLAIN_CHAT_FORMATS
                and all(raws)
                and (max_examples is None or examples + len(raws) <= max_examples)
            )
            chats = plain_chats(raws) if whole else None
            if chats is not None and checker.takes_plain_chat(first):
                run.collect().add_plain_chats(first, raws, chats)
                report.lines += len(raws)
                continue
            for offset, raw in enumerate(raws):
                if not raw:
                    continue
                if max_examples is not None and run.collector is not None and run.collector.examples >= max_examples:
                    stopped_at = first + offset
                    break
                run.check_line(first + offset, raw, lines[offset])
            if stopped_at is not None:
                break
    except OSError as err:
        run.add(LineError(0, f"cannot read the file: {err}"))
        unreadable = True

    report.format = checker.format or "unknown"
    report.decided_by = checker.decided_by
    report.tokens_counted = count_tokens is not None
    if not unreadable:  # a file that could not be read is one error, not also "empty" or "too few examples"
        _sum_up(report, run.collector, run.tallies, min_examples, max_examples)
    if stopped_at is not None:
        report.warnings.append(
            f"only the first {max_examples:,} examples are used (maxExamples); "
            f"the lines from {stopped_at} on were not read"
        )
    return report


class _Run:
    """The state of one validate_file pass: the report so far, the statistics, the per-line check."""

    def __init__(
        self, report: ValidationReport, checker: LineChecker, max_errors: int, new_collector: Callable[[], Collector]
    ) -> None:
        self.report, self.checker, self.max_errors = report, checker, max_errors
        self.new_collector = new_collector
        self.max_seq_length: int | None = None
        self.collector: Collector | None = None
        self.tallies: dict[str, Tally] = {}

    def add(self, error: LineError) -> None:
        if len(self.report.errors) < self.max_errors:
            self.report.errors.append(error)
        else:
            self.report.omit(error)

    def collect(self) -> Collector:
        if self.collector is None:
            self.collector = self.new_collector()
            self.collector.max_seq_length = self.max_seq_length
        return self.collector

    def check_line(self, line_no: int, raw: bytes, line: bytes) -> None:
        """One line on its own: the fast path when it is a plain chat line, else every check in detail."""
        self.report.lines += 1
        checker = self.checker
        chat = plain_chat(raw) if checker.format in _PLAIN_CHAT_FORMATS else None
        if chat is not None and checker.takes_plain_chat(line_no):
            self.collect().add_plain_chats(line_no, [raw], chat)
            return
        item = parse_line(line.rstrip(), line_no)
        if isinstance(item, LineError):
            self.add(item)
            return
        record, issues = checker.check(line_no, item)
        for field, message in issues.errors:
            self.add(LineError(line_no, message, field))
        if record is None or checker.format is None:
            return
        for kind in issues.warnings:
            self.tallies.setdefault(kind, Tally()).add(line_no)
        self.collect().add(line_no, raw, item, record, record_text(record, checker.format))


def _sum_up(
    report: ValidationReport,
    collector: Collector | None,
    tallies: dict[str, Tally],
    min_examples: int,
    max_examples: int | None,
) -> None:
    """The findings about the file as a whole, once every line is read."""
    if report.lines == 0:
        report.errors.append(LineError(0, "the file is empty (only blank lines)"))
    examples = collector.examples if collector else 0
    report.examples = examples
    needed = min_examples if max_examples is None else min(min_examples, max_examples)
    if report.lines and examples < needed:
        report.errors.append(LineError(0, f"only {examples} valid example(s); at least {needed} are needed"))
    for kind, tally in tallies.items():
        lines = ", ".join(str(n) for n in tally.lines) + (", ..." if tally.count > len(tally.lines) else "")
        report.warnings.append(f"{tally.count} line(s): {kind} (lines {lines})")
    if collector is not None:
        too_long = length_problem(collector)
        if too_long:
            report.errors.append(LineError(0, too_long))
        report.warnings += collector.warnings()
        report.stats = collector.stats()
        report.tokens = collector.tokens.total


def iter_trl_records(
    path: str | PathLike[str], fmt: str = AUTO, max_examples: int | None = None, prompts_only: bool = False
) -> Iterator[dict[str, Any]]:
    """The file's examples as TRL records, streamed (for `datasets.Dataset.from_generator`).

    Raises DatasetError at the first invalid line: validate the file first (validate_file) to see them all.
    Unlike to_trl_record, formats that may carry `tools` always have the key (None when a line has none):
    a dataset needs the same columns in every row.
    """
    checker = LineChecker(fmt, prompts_only)
    if max_examples is not None and max_examples <= 0:
        return
    # every pass of the loop yields a record or raises, so `produced` counts the records yielded
    for produced, (line_no, item) in enumerate(iter_jsonl(path), 1):
        if isinstance(item, LineError):
            raise DatasetError(item.render(str(path)))
        record, issues = checker.check(line_no, item)
        if record is None:
            found = "; ".join(LineError(line_no, m, f).render(str(path)) for f, m in issues.errors)
            raise DatasetError(f"{found} (kubetune validate lists every problem in the file)")
        if checker.format in WITH_TOOLS:
            record.setdefault("tools", None)
        yield record
        if max_examples is not None and produced >= max_examples:
            return
