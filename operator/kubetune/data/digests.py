"""64-bit digests of lines and texts, for duplicate detection: a log of a file's digests (repeats found once, at
the end) and a compact set (distinct values counted as they come).

The digests are Python's own `hash()` of the bytes or text: SipHash-1-3 with a key drawn per process (64 bits
on 64-bit builds), computed in C without allocating; a million 850-byte lines take 0.16 s where blake2b took 1.5 s.
Two different lines share a digest with a chance of about n^2 / 2^65 (3e-8 for a million lines), as with
blake2b's 8 bytes. The digests never leave the process (the key differs between runs), so nothing depends on
their values.

A file's duplicates (RepeatLog) are only reported once the file is read, so its digests are appended as they
come, a run of lines at a time by C loops (`array.extend`): 8 bytes an example, plus 16 bytes for each run of
consecutive lines (one per blank or invalid line between examples). The repeats are found at the end by numpy:
the digests sorted a sixteenth at a time (~2.5 bytes an example more, for a moment), then the first few repeats
looked up in file order. A hash table filled line by line in the interpreter cost ~1 us a line, a fifth of
`kubetune validate`'s time (benchmarks/README.md); a Python `set` of int digests would cost 60-90 bytes a line.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from itertools import compress
from typing import Any

_MASK64 = (1 << 64) - 1
_MAX_LINE = 0xFFFFFFFF  # DigestSet keeps line numbers in 32 bits (later lines are recorded as this)
_BLOCK = 1 << 16  # RepeatLog.repeats goes through the digests this many at a time: its temporaries stay small
_BUCKETS = 16  # ... and sorts them a sixteenth at a time


def text_digest(text: str) -> int:
    """A 64-bit digest of some text, as an unsigned number (never 0, which marks a free slot of DigestSet)."""
    return (hash(text) & _MASK64) or 1


class RepeatLog:
    """The digests of a file's examples in file order, with where each run of consecutive lines starts; `repeats`
    finds the examples that repeat an earlier one."""

    def __init__(self) -> None:
        self._digests = array("q")  # hash() of each example's line (signed 64-bit)
        self._run_starts = array("q")  # the index in _digests where a run of consecutive lines starts ...
        self._run_lines = array("q")  # ... and that example's line
        self._next_line = 0  # the line that would continue the last run
        # the last look: ((examples, shown), count, the first `shown` repeats)
        self._found: tuple[tuple[int, int], int, list[tuple[int, int]]] | None = None

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, line: int, data: bytes) -> None:
        """An example read from `line` whose text (as read) is `data`."""
        self._new_lines(line, 1)
        self._digests.append(hash(data))

    def add_run(self, first_line: int, items: list[bytes]) -> None:
        """`add` for the examples of consecutive lines, the first on `first_line`."""
        self._new_lines(first_line, len(items))
        self._digests.extend(map(hash, items))

    def repeats(self, shown: int) -> tuple[int, list[tuple[int, int]]]:
        """How many examples repeat an earlier one, and the first `shown` of them in line order as
        (line, line first seen on)."""
        if self._found is None or self._found[0] != (len(self._digests), shown):
            count, first = self._find(shown) if self._digests else (0, [])
            self._found = ((len(self._digests), shown), count, first)
        return self._found[1], self._found[2]

    def _new_lines(self, first_line: int, count: int) -> None:
        if first_line != self._next_line:
            self._run_starts.append(len(self._digests))
            self._run_lines.append(first_line)
        self._next_line = first_line + count

    def _line(self, index: int) -> int:
        run = bisect_right(self._run_starts, index) - 1
        return self._run_lines[run] + index - self._run_starts[run]

    def _find(self, shown: int) -> tuple[int, list[tuple[int, int]]]:
        import numpy as np  # here, not at the top: `kubetune --help` and files without examples do not load it

        keys = np.frombuffer(self._digests, dtype=np.int64)
        repeated, count = _repeated_digests(np, keys)
        if not count:
            return 0, []
        # the first repeats in file order, a block at a time, until `shown` are found
        first_at = np.full(len(repeated), len(keys), dtype=np.int64)  # where each repeated digest is first seen
        found: list[tuple[int, int]] = []
        for start in range(0, len(keys), _BLOCK):
            block = keys[start : start + _BLOCK]
            which = np.minimum(np.searchsorted(repeated, block), len(repeated) - 1)
            at = np.flatnonzero(repeated[which] == block)
            which, at = which[at], at + start
            firsts, first_index = np.unique(which, return_index=True)  # the index of each one's first occurrence
            first_at[firsts] = np.minimum(first_at[firsts], at[first_index])
            later = np.flatnonzero(first_at[which] < at)[: shown - len(found)]
            found += [(self._line(int(at[i])), self._line(int(first_at[which[i]]))) for i in later]
            if len(found) >= shown:
                break
        return count, found


def _repeated_digests(np: Any, keys: Any) -> tuple[Any, int]:
    """The digests in `keys` seen more than once (sorted) and how many keys repeat an earlier one; sorted a
    sixteenth at a time (by their low bits), so that the temporaries take ~2.5 bytes a key, not 9."""
    low = np.empty(len(keys), dtype=np.uint8)
    for start in range(0, len(keys), _BLOCK):
        np.bitwise_and(keys[start : start + _BLOCK], _BUCKETS - 1, out=low[start : start + _BLOCK], casting="unsafe")
    repeated, count = [], 0
    for bucket in range(_BUCKETS):
        part = keys[low == bucket]
        part.sort()
        same = part[1:] == part[:-1]
        count += int(np.count_nonzero(same))
        repeated.append(np.unique(part[1:][same]))
    return np.sort(np.concatenate(repeated)), count


class DigestSet:
    """Digests -> first line number, in two flat arrays with linear probing."""

    def __init__(self, capacity: int = 1024) -> None:
        size = 1 << max(capacity - 1, 1).bit_length()
        self._keys = array("Q", [0]) * size
        self._lines = array("I", [0]) * size
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, key: int, line: int) -> int | None:
        """Insert `key` seen on `line`; returns the line it was first seen on when it is already present."""
        keys, mask = self._keys, self._mask
        i = key & mask
        found = keys[i]
        while found:
            if found == key:
                return self._lines[i]
            i = (i + 1) & mask
            found = keys[i]
        keys[i] = key
        self._lines[i] = line if line < _MAX_LINE else _MAX_LINE
        self._count += 1
        if self._count * 10 > mask * 7:
            self._grow()
        return None

    def _grow(self) -> None:
        old_keys, old_lines = self._keys, self._lines
        size = (self._mask + 1) * 2
        self._keys = array("Q", [0]) * size
        self._lines = array("I", [0]) * size
        self._mask = size - 1
        keys, lines, mask = self._keys, self._lines, self._mask
        for key, line in zip(compress(old_keys, old_keys), compress(old_lines, old_keys), strict=True):
            i = key & mask
            while keys[i]:
                i = (i + 1) & mask
            keys[i] = key
            lines[i] = line
