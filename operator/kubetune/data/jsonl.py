"""Streaming JSON Lines reader: one parsed object (or the reason it failed) per non-blank line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from os import PathLike
from typing import Any

from kubetune.data.errors import LineError, type_name

BOM = b"\xef\xbb\xbf"


def parse_line(raw: bytes, line_no: int) -> Any | LineError:
    """Decode and parse one line; a LineError says what is wrong and where (column)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return LineError(
            line_no, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); save the file as UTF-8"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        hint = ""
        if line_no == 1 and text.lstrip().startswith("[") and err.msg.startswith("Expecting"):
            hint = "; the file looks like one JSON array, but JSONL needs one JSON object per line"
        return LineError(line_no, f"invalid JSON: {err.msg} (column {err.colno}){hint}")
    except RecursionError:
        return LineError(line_no, "invalid JSON: nested too deeply")
    except ValueError as err:  # e.g. integers too long to convert
        return LineError(line_no, f"invalid JSON: {err}")


def iter_jsonl(path: str | PathLike[str]) -> Iterator[tuple[int, Any | LineError]]:
    """Yield (line number, object or LineError) for each non-blank line, reading one line at a time.

    Line numbers are 1-based and count blank lines, so they match what an editor shows. A byte-order
    mark on the first line is ignored. Only `\\n` ends a line (a `\\r` before it is whitespace).
    """
    for line_no, _raw, item in iter_raw_jsonl(path):
        yield line_no, item


def iter_raw_jsonl(path: str | PathLike[str]) -> Iterator[tuple[int, bytes, Any | LineError]]:
    """Like iter_jsonl, with each line's stripped bytes too (for exact-duplicate digests)."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            stripped = raw.strip()
            if not stripped:
                continue
            yield line_no, stripped, parse_line(raw.rstrip(), line_no)


def object_error(line_no: int, value: Any) -> LineError | None:
    """A LineError when a parsed line is not a JSON object (every format needs one)."""
    if isinstance(value, dict):
        return None
    return LineError(line_no, f"expected a JSON object, got {type_name(value)}")
