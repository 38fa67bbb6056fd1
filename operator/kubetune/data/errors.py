"""The problems a dataset check finds: one per line and field, rendered as `file:line: field: message`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LineError:
    """One problem on one line. `line` is 1-based; 0 means the file as a whole (not found, too few examples)."""

    line: int
    message: str
    field: str | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class DatasetError(ValueError):
    """A dataset that cannot be read as the trainer needs it; the message names file:line and field."""


class Issues:
    """What checking one record found: errors (field, message) and warnings (kind)."""

    __slots__ = ("errors", "warnings")

    def __init__(self) -> None:
        self.errors: list[tuple[str | None, str]] = []
        self.warnings: list[str] = []

    def error(self, field: str | None, message: str) -> None:
        self.errors.append((field, message))

    def warn(self, kind: str) -> None:
        self.warnings.append(kind)


def type_name(value: object) -> str:
    """The JSON name of a value's type, for messages like 'expected a string, got array'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
