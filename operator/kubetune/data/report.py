"""The outcome of validating one file, for people (render) and for FineTuneJob status.data (data_status)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune.data.errors import LineError

STATUS_ERRORS = 20  # rendered error lines kept in status.data.errors
STATUS_TEXT_LIMIT = 400  # characters per status line (status objects must stay small)


@dataclass
class ValidationReport:
    """What validate_file found. `ok` is False when any error was found."""

    source: str
    format: str = "unknown"
    examples: int = 0
    errors: list[LineError] = field(default_factory=list)
    errors_omitted: int = 0  # errors found beyond max_errors
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

    def rendered_errors(self, limit: int | None = None) -> list[str]:
        """`file:line: field: message` lines, the first `limit` of them plus '... and N more'."""
        shown = self.errors if limit is None else self.errors[:limit]
        out = [e.render(self.source) for e in shown]
        more = self.error_count - len(shown)
        if more > 0:
            out.append(f"... and {more} more error(s)")
        return out

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
    errors = [e.render(r.source) for r in reports for e in r.errors]
    total = sum(r.error_count for r in reports)
    if validation is not None:
        out["validationExamples"] = validation.examples
        warnings += [f"validation: {w}" for w in validation.warnings]
        if train.ok and validation.ok and validation.format != train.format:
            errors.append(
                f"{validation.source}: the validation data is {validation.format} but the training data is "
                f"{train.format}; use one format for both"
            )
            total += 1
    shown = [_clip(e) for e in errors[:STATUS_ERRORS]]
    if total > len(shown):
        shown.append(f"... and {total - len(shown)} more error(s)")
    out["warnings"] = [_clip(w) for w in warnings]
    out["errors"] = shown
    return out
