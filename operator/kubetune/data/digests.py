"""64-bit digests of lines and texts, for duplicate detection: a log of a file's digests (repeats found once, at
the end) and a compact set (distinct values counted as they come).

The digests are Python's own `hash()` of the bytes or text: SipHash-1-3 with a key drawn per process (64 bits
on 64-bit builds), computed in C without allocating; a million 850-byte lines take 0.16 s where blake2b took 1.5 s.
Two different lines share a digest with a chance of about n^2 / 2^65 (3e-8 for a million lines), as with
blake2b's 8 bytes. The digests never leave the process (the key differs between runs), so nothing depends on
their values.

A file's duplicates (RepeatLog) are only reported once the file is read, so its digests are appended as they
come, a run of lines at a time by C loops (`array.extend`), 12 bytes a line with the line number, and the
repeats are found at the end by numpy (a sort, then a look-up of the repeated digests: about 20 bytes a line
more for a moment). A hash table filled line by line in the interpreter cost ~1 us a line, a fifth of
`kubetune validate`'s time (benchmarks/README.md); a Python `set` of int digests would cost 60-90 bytes a line.
"""

from __future__ import annotations

from array import array
from itertools import compress, repeat

_MASK64 = (1 << 64) - 1
_MAX_LINE = 0xFFFFFFFF  # line numbers are kept in 32 bits (later lines are recorded as this)
_BLOCK = 1 << 16  # RepeatLog.repeats looks digests up this many at a time: its temporaries stay small


def text_digest(text: str) -> int:
    """A 64-bit digest of some text, as an unsigned number (never 0, which marks a free slot of DigestSet)."""
    return (hash(text) & _MASK64) or 1


class RepeatLog:
    """The digests of a file's examples with their line numbers, in file order; `repeats` finds the lines that
    repeat an earlier one."""

    def __init__(self) -> None:
        self._digests = array("q")  # hash() of each example's line: signed 64-bit
        self._lines = array("I")
        self._found: tuple[int, int, list[tuple[int, int]]] | None = None  # (examples, count, shown) of the last look

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, line: int, data: bytes) -> None:
        """An example read from `line` whose text (as read) is `data`."""
        self._digests.append(hash(data))
        self._lines.append(min(line, _MAX_LINE))

    def add_run(self, first_line: int, items: list[bytes]) -> None:
        """`add` for the examples of consecutive lines, the first on `first_line`."""
        self._digests.extend(map(hash, items))
        end = first_line + len(items)
        self._lines.extend(
            range(first_line, end) if end <= _MAX_LINE else map(min, range(first_line, end), repeat(_MAX_LINE))
        )

    def repeats(self, shown: int) -> tuple[int, list[tuple[int, int]]]:
        """How many examples repeat an earlier one, and the first `shown` of them in line order as
        (line, line first seen on)."""
        if self._found is None or self._found[0] != len(self._digests):
            count, first = _find_repeats(self._digests, self._lines, shown) if self._digests else (0, [])
            self._found = (len(self._digests), count, first)
        return self._found[1], self._found[2][:shown]


def _find_repeats(digests: array[int], lines: array[int], shown: int) -> tuple[int, list[tuple[int, int]]]:
    import numpy as np  # here, not at the top: `kubetune --help` and files without examples do not load it

    keys = np.frombuffer(digests, dtype=np.int64)
    ordered = np.sort(keys)
    same = ordered[1:] == ordered[:-1]
    count = int(np.count_nonzero(same))
    if not count:
        return 0, []
    repeated = np.unique(ordered[1:][same])  # the digests seen more than once
    del ordered, same
    # where those digests are, in file order, a block at a time (each a few hundred KiB of temporaries)
    places = []
    for start in range(0, len(keys), _BLOCK):
        block = keys[start : start + _BLOCK]
        found = repeated[np.minimum(np.searchsorted(repeated, block), len(repeated) - 1)] == block
        places.append(np.flatnonzero(found) + start)
    where = np.concatenate(places)
    # first[i]: where the digest at where[i] is first seen (np.unique's indices are those of first occurrences)
    _, first_index, inverse = np.unique(keys[where], return_index=True, return_inverse=True)
    first = where[first_index[inverse]]
    later = np.flatnonzero(first != where)[:shown]
    line = np.frombuffer(lines, dtype=np.uint32)
    return count, list(zip(line[where[later]].tolist(), line[first[later]].tolist(), strict=True))


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
