"""A compact set of 64-bit digests (with the line each was first seen on), for duplicate detection.

A Python `set` of int digests costs 60-90 bytes an entry; this open-addressing table costs 12 bytes a
slot and is kept at most 70% full: 17-34 bytes an entry, about 50 for a moment while it grows. A
million-line file's duplicate check fits in a few tens of MB.
"""

from __future__ import annotations

import hashlib
from array import array


def bytes_digest(data: bytes) -> int:
    """A 64-bit digest of some bytes (never 0, which marks a free slot)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") or 1


def text_digest(text: str) -> int:
    return bytes_digest(text.encode("utf-8", "surrogatepass"))


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
        while keys[i]:
            if keys[i] == key:
                return self._lines[i]
            i = (i + 1) & mask
        keys[i] = key
        self._lines[i] = min(line, 0xFFFFFFFF)
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
        for key, line in zip(old_keys, old_lines, strict=True):
            if key:
                i = key & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = key
                lines[i] = line
