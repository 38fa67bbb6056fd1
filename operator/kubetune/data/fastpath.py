"""The fast path of validation: the common chat line, decoded and checked in C by msgspec.

A line of exactly this shape is valid chat data with nothing to warn about, so the decoder and two cheap
checks here are all the checking it needs:

    {"messages": [{"role": "system" | "user" | "assistant", "content": "<text with a non-space>"}, ...]}

with at least one message, and (checked here) the assistant's answer last and no blank content. msgspec
refuses everything else: other keys or roles, `tools`, tool calls, content parts, invalid JSON, NaN/Infinity
and lone surrogate escapes (it refuses those; json.loads would accept them). A refused line goes through
the detailed checker (kubetune.data.formats via jsonl.parse_line), so what is reported about a bad line,
and where, is exactly what it was. Duplicate keys are no exception: msgspec keeps the last value, as
json.loads does, and checks every value, so a line passes only if json.loads's reading of it would too.

"Blank" is decided by `str.strip()`, as in kubetune.data.messages (a msgspec `pattern` constraint would do it
in C too, but runs a regex per string: it doubled the decoding time).
"""

from __future__ import annotations

from itertools import accumulate, chain, repeat
from operator import attrgetter, eq, sub
from typing import Annotated, Literal

import msgspec


class Turn(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: Literal["system", "user", "assistant"]
    content: str  # non-blank: checked by plain_chat


class ChatLine(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    messages: Annotated[list[Turn], msgspec.Meta(min_length=1)]


_decode = msgspec.json.Decoder(ChatLine).decode
_REFUSED = (msgspec.DecodeError, msgspec.ValidationError)
_content = attrgetter("content")
_role = attrgetter("role")
_messages = attrgetter("messages")


class PlainChats:
    """A run of plain chat lines, column-wise: the turns of all lines one after the other (roles, contents)
    and where each line's turns end, so that statistics can be computed by C loops (map, accumulate)."""

    __slots__ = ("contents", "ends", "roles", "sizes")

    def __init__(self, sizes: list[int], roles: list[str], contents: list[str]) -> None:
        self.sizes = sizes  # the number of turns of each line
        self.ends = list(accumulate(sizes))  # each line's turns are [end - size, end) of roles and contents
        self.roles = roles
        self.contents = contents

    def __len__(self) -> int:
        return len(self.sizes)

    def starts(self) -> list[int]:
        return list(map(sub, self.ends, self.sizes))

    def per_line_sums(self, values: list[int]) -> list[int]:
        """The sum of `values` (one per turn) over each line's turns."""
        prefix = [0, *accumulate(values)]
        return list(map(sub, map(prefix.__getitem__, self.ends), map(prefix.__getitem__, self.starts())))

    def line(self, i: int) -> tuple[list[str], list[str]]:
        """The roles and contents of the i-th line."""
        end = self.ends[i]
        start = end - self.sizes[i]
        return self.roles[start:end], self.contents[start:end]


def plain_chats(lines: list[bytes]) -> PlainChats | None:
    """`lines` (stripped, none blank) as PlainChats when every one is a plain chat line; None as soon as one is
    not (each line then needs to be looked at alone)."""
    try:
        turns_per_line = list(map(_messages, map(_decode, lines)))
    except _REFUSED:
        return None
    turns = list(chain.from_iterable(turns_per_line))
    chats = PlainChats(list(map(len, turns_per_line)), list(map(_role, turns)), list(map(_content, turns)))
    last_roles = map(chats.roles.__getitem__, map(sub, chats.ends, repeat(1)))
    if not all(map(str.strip, chats.contents)) or not all(map(eq, last_roles, repeat("assistant"))):
        return None  # a blank content (strip() is "" for blank text), or a line not ending with the answer
    return chats


def plain_chat(raw: bytes) -> PlainChats | None:
    """One plain chat line as PlainChats; None when it needs the detailed checker."""
    return plain_chats([raw])
