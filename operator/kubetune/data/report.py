"""The outcome of validating one file, for people (render) and for FineTuneJob status.data (data_status)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kubetune.data.errors import LineError

STATUS_ERRORS = 20  # rendered error lines kept in status.data.errors
STATUS_TEXT_LIMIT = 400  # characters per status line (status objects must stay small)
GROUP_LINES = 5  # line numbers named for an error that many lines share
MAX_OMITTED_GROUPS = 200  # distinct errors beyond max_errors that are still grouped (the rest only counted)


@dataclass
class ErrorGroup:
    """One error (same field, same message) and the lines that carry it: said once, with the count."""

    field: str | None
    message: str
    count: int = 0
    lines: list[int] = dataclasses.field(default_factory=list)  # the first GROUP_LINES of them (`field` is taken above)

    def add(self, line: int, count: int = 1) -> None:
        self.count += count
        if len(self.lines) < GROUP_LINES:
            self.lines.append(line)

    def render(self, source: str) -> str:
        """`file:line: field: message`, and for an error on several lines `(N lines: a, b, c, ...)`."""
        first = LineError(self.lines[0] if self.lines else 0, self.message, self.field).render(source)
        if self.count == 1:
            return first
        more = ", ..." if self.count > len(self.lines) else ""
        return f"{first} ({self.count:,} lines: {', '.join(map(str, self.lines))}{more})"


@dataclass
class ValidationReport:
    """What validate_file found. `ok` is False when any error was found."""

    source: str
    format: str = "unknown"
    examples: int = 0
    errors: list[LineError] = field(default_factory=list)
    errors_omitted: int = 0  # errors found beyond max_errors
    omitted_groups: dict[tuple[str | None, str], ErrorGroup] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0
    tokens_counted: bool = False  # False: `tokens` is the estimate characters / 4
    lines: int = 0  # non-blank lines read
    decided_by: int | None = None  # the line that decided the format (auto) or None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def error_count(self) -> int:
        return len(self.errors) + self.errors_omitted

    def omit(self, error: LineError) -> None:
        """Count an error found beyond max_errors; it still joins the group of an equal error."""
        self.errors_omitted += 1
        key = (error.field, error.message)
        group = self.omitted_groups.get(key)
        if group is None:
            if len(self.omitted_groups) >= MAX_OMITTED_GROUPS:
                return  # counted, not grouped: memory stays bounded whatever the file holds
            group = self.omitted_groups[key] = ErrorGroup(error.field, error.message)
        group.add(error.line)

    def error_groups(self) -> list[ErrorGroup]:
        """The errors with equal field and message merged, in the order they were first found."""
        groups: dict[tuple[str | None, str], ErrorGroup] = {}
        for e in self.errors:
            groups.setdefault((e.field, e.message), ErrorGroup(e.field, e.message)).add(e.line)
        for key, omitted in self.omitted_groups.items():
            group = groups.setdefault(key, ErrorGroup(omitted.field, omitted.message))
            group.count += omitted.count
            group.lines = sorted({*group.lines, *omitted.lines})[:GROUP_LINES]
        return list(groups.values())

    def counted_errors(self, limit: int | None = None) -> list[tuple[str, int]]:
        """(line of text, how many errors it stands for): one per distinct error (`file:line: field: message`,
        with the count and first lines when several lines carry it), the first `limit` of them, plus
        '... and N more error(s)'. The counts add up to error_count, so a summary can agree with the header."""
        groups = self.error_groups()
        shown = groups if limit is None else groups[:limit]
        out = [(g.render(self.source), g.count) for g in shown]
        more = self.error_count - sum(g.count for g in shown)
        if more > 0:
            out.append((f"... and {more:,} more error(s)", more))
        return out

    def rendered_errors(self, limit: int | None = None) -> list[str]:
        """The lines of counted_errors()."""
        return [text for text, _ in self.counted_errors(limit)]

    def summary(self) -> str:
        """One line: the verdict, format, examples and tokens."""
        tokens = f"{self.tokens:,} tokens" + ("" if self.tokens_counted else " (estimated)")
        fmt = self.format + (f", decided by line {self.decided_by}" if self.decided_by else "")
        if self.ok:
            return f"{self.source}: OK: {fmt}, {self.examples:,} examples, {tokens}"
        return f"{self.source}: {self.error_count} error(s) ({fmt}; {self.examples:,} valid examples)"

    def render(self) -> str:
        """The human report: verdict, every error with its line, warnings and the main statistics."""
        lines = [self.summary()]
        lines += self.rendered_errors()
        lines += [f"{self.source}: warning: {w}" for w in self.warnings]
        if self.ok and self.stats:
            lines += [f"  {s}" for s in describe_stats(self.stats)]
        return "\n".join(lines) + "\n"

    def to_status(self) -> dict[str, Any]:
        """status.data of a FineTuneJob trained on this file alone (camelCase)."""
        return data_status(self, None)


def describe_stats(stats: dict[str, Any]) -> list[str]:
    """A few readable lines of statistics."""
    out = []
    chars = stats.get("chars")
    if chars:
        out.append(f"characters per example: avg {chars['avg']:,}, max {chars['max']:,} (line {chars['max_line']})")
    msgs = stats.get("messages")
    if msgs:
        what = "messages" if stats.get("format") == "chat" else "prompt messages"
        out.append(
            f"{what} per example: avg {msgs['avg']}, max {msgs['max']}; "
            f"{stats['system_prompts']:,} with a system prompt ({stats['distinct_system_prompts']:,} distinct); "
            f"{stats['tool_calls']:,} tool calls"
        )
    if "forms" in stats:
        out.append("forms: " + ", ".join(f"{k} {v:,}" for k, v in sorted(stats["forms"].items())))
    if stats.get("reference_fields"):
        out.append("reference fields: " + ", ".join(f"{k} ({v:,})" for k, v in stats["reference_fields"].items()))
    return out


def _clip(text: str) -> str:
    return text if len(text) <= STATUS_TEXT_LIMIT else text[: STATUS_TEXT_LIMIT - 3] + "..."


def data_status(train: ValidationReport, validation: ValidationReport | None = None) -> dict[str, Any]:
    """FineTuneJob status.data from the train (and validation) reports.

    A validation file in another format than the train file is an error: one trainer reads both.
    """
    out: dict[str, Any] = {"format": train.format, "trainExamples": train.examples, "trainTokens": train.tokens}
    reports = [train] if validation is None else [train, validation]
    warnings = list(train.warnings)
    errors = [(g.render(r.source), g.count) for r in reports for g in r.error_groups()]
    total = sum(r.error_count for r in reports)
    if validation is not None:
        out["validationExamples"] = validation.examples
        warnings += [f"validation: {w}" for w in validation.warnings]
        if train.ok and validation.ok and validation.format != train.format:
            errors.append(
                (
                    f"{validation.source}: the validation data is {validation.format} but the training data is "
                    f"{train.format}; use one format for both",
                    1,
                )
            )
            total += 1
    kept = errors[:STATUS_ERRORS]
    shown = [_clip(text) for text, _ in kept]
    more = total - sum(count for _, count in kept)
    if more > 0:
        shown.append(f"... and {more:,} more error(s)")
    out["warnings"] = [_clip(w) for w in warnings]
    out["errors"] = shown
    return out
