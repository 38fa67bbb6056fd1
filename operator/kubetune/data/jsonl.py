"""Streaming JSON Lines reader: one parsed object (or the reason it failed) per non-blank line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import islice
from os import PathLike
from typing import Any

from kubetune.data.errors import LineError
from kubetune.objectstore import open_lines

BOM = b"\xef\xbb\xbf"
CHUNK_BYTES = 64 * 1024  # lines are read in runs of about this size (iter_line_chunks): memory per run is bounded
# A \uD800-\uDFFF escape: json.loads joins a valid pair into one character and leaves a lone one as it is.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (JSON has no NaN or Infinity; write a number or null)")


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    """The field path of the first string (value or key) holding a lone UTF-16 surrogate; None when none does."""
    if isinstance(value, str):
        return path or "(the line)" if _SURROGATE.search(value) else None
    if isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    elif isinstance(value, dict):
        for key in value:
            if _SURROGATE.search(key):
                return f"{path}.{key!r}" if path else repr(key)
        items = ((f"{path}.{k}" if path else k, v) for k, v in value.items())
    else:
        return None
    for sub, v in items:
        found = _lone_surrogate(v, sub)
        if found:
            return found
    return None


def parse_line(raw: bytes, line_no: int) -> Any | LineError:
    """Decode and parse one line; a LineError says what is wrong and where (column)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return LineError(
            line_no, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); save the file as UTF-8"
        )
    try:
        value = json.loads(text, parse_constant=_not_json_constant)
    except json.JSONDecodeError as err:
        hint = ""
        if line_no == 1 and text.lstrip().startswith("[") and err.msg.startswith("Expecting"):
            hint = "; the file looks like one JSON array, but JSONL needs one JSON object per line"
        return LineError(line_no, f"invalid JSON: {err.msg} (column {err.colno}){hint}")
    except RecursionError:
        return LineError(line_no, "invalid JSON: nested too deeply")
    except ValueError as err:  # NaN/Infinity, integers too long to convert
        return LineError(line_no, f"invalid JSON: {err}")
    if _SURROGATE_ESCAPE.search(text):
        try:
            where = _lone_surrogate(value)
        except RecursionError:
            where = "(the line)"
        if where:
            return LineError(
                line_no,
                "a \\uD800-\\uDFFF escape that is not part of a surrogate pair is not text (no UTF-8 encoding); "
                "fix the escape or the tool that wrote it",
                where,
            )
    return value


def iter_jsonl(path: str | PathLike[str]) -> Iterator[tuple[int, Any | LineError]]:
    """Yield (line number, object or LineError) for each non-blank line, reading one line at a time.

    Line numbers are 1-based and count blank lines, so they match what an editor shows. A byte-order
    mark on the first line is ignored. Only `\\n` ends a line (a `\\r` before it is whitespace).
    """
    for line_no, _raw, item in iter_raw_jsonl(path):
        yield line_no, item


def iter_raw_jsonl(path: str | PathLike[str]) -> Iterator[tuple[int, bytes, Any | LineError]]:
    """Like iter_jsonl, with each line's stripped bytes too (for exact-duplicate digests)."""
    for line_no, stripped, raw in iter_lines(path):
        yield line_no, stripped, parse_line(raw.rstrip(), line_no)


def iter_line_chunks(path: str | PathLike[str], size: int = CHUNK_BYTES) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the first line, the lines as read) for consecutive runs of about `size` bytes of lines,
    blank ones included (so the n-th line of a run is line first + n); a byte-order mark on line 1 is removed."""
    with open_lines(path) as f:  # a local file, or an s3:// object streamed line by line
        if hasattr(f, "readlines"):
            chunks = iter(lambda: f.readlines(size), [])
        else:
            it = iter(f)
            chunks = iter(lambda: list(islice(it, size // 256 or 1)), [])
        first = 1
        for lines in chunks:
            if first == 1 and lines[0].startswith(BOM):
                lines[0] = lines[0][len(BOM) :]
            yield first, lines
            first += len(lines)


def iter_lines(path: str | PathLike[str]) -> Iterator[tuple[int, bytes, bytes]]:
    """(line number, stripped bytes, bytes as read) of each non-blank line, unparsed (parse with parse_line
    on the rstripped bytes, so that columns count from the line's start). Numbering as iter_jsonl's."""
    with open_lines(path) as f:  # a local file, or an s3:// object streamed line by line
        for line_no, raw in enumerate(f, 1):
            if line_no == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            stripped = raw.strip()
            if stripped:
                yield line_no, stripped, raw
