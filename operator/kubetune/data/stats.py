"""Per-file statistics gathered while streaming: counters and running maxima only, never the rows."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import compress, repeat
from operator import add, eq, floordiv, gt, sub
from typing import Any

from kubetune.data.digests import DigestSet, RepeatLog, text_digest
from kubetune.data.fastpath import PlainChats
from kubetune.data.formats import (
    CHAT,
    PREFERENCE,
    PROMPT_COMPLETION,
    REINFORCEMENT,
    is_conversational,
    preference_form,
    reference_fields,
)
from kubetune.data.messages import messages_text

CHARS_PER_TOKEN = 4  # the token estimate without a tokenizer: ~4 characters a token (English text, BPE vocabularies)
MAX_DISTINCT_SYSTEM_PROMPTS = 10_000
MAX_REFERENCE_FIELD_NAMES = 50
KNOWN_SYSTEM_PROMPTS = 64  # system prompts remembered as text (the usual file has a handful), to skip their digest
LINES_SHOWN = 5


def estimate_tokens(text: str) -> int:
    """Tokens of `text` without a tokenizer: characters / 4, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class Summary:
    """Total, mean and maximum of one measure, with the line of the maximum."""

    __slots__ = ("count", "max", "max_line", "total")

    def __init__(self) -> None:
        self.count = self.total = self.max = self.max_line = 0

    def add(self, value: int, line: int) -> None:
        self.count += 1
        self.total += value
        if value > self.max:
            self.max, self.max_line = value, line

    def add_run(self, values: list[int], first_line: int) -> None:
        """`add` for the values of consecutive lines, the first on `first_line`."""
        self.count += len(values)
        self.total += sum(values)
        top = max(values)
        if top > self.max:
            self.max, self.max_line = top, first_line + values.index(top)

    def as_dict(self) -> dict[str, Any]:
        avg = round(self.total / self.count, 1) if self.count else 0
        return {"total": self.total, "avg": avg, "max": self.max, "max_line": self.max_line}


class Tally:
    """How often something happened, and the first few lines where it did."""

    __slots__ = ("count", "lines")

    def __init__(self) -> None:
        self.count = 0
        self.lines: list[Any] = []

    def add(self, where: Any) -> None:
        self.count += 1
        if len(self.lines) < LINES_SHOWN:
            self.lines.append(where)

    @classmethod
    def of(cls, count: int, lines: list[Any]) -> Tally:
        """A tally already counted: `count` in all, `lines` the first of them."""
        tally = cls()
        tally.count, tally.lines = count, lines[:LINES_SHOWN]
        return tally


class Collector:
    """Accumulates the statistics of the valid examples of one file."""

    def __init__(self, fmt: str, count_tokens: Callable[[str], int] | None, long_example_chars: int) -> None:
        self.fmt = fmt
        self.count_tokens = count_tokens
        self.long_example_chars = long_example_chars
        self.examples = 0
        self.chars = Summary()
        self.tokens = Summary()
        self.long = Tally()
        self._seen = RepeatLog()  # every example's line, for `duplicates`
        self.conversational = 0
        # messages-based formats
        self.messages = Summary()
        self.assistant_turns = 0
        self.multi_turn = 0
        self.with_system = 0
        self._system_prompts = DigestSet(64)
        self._known_systems: set[str] = set()  # a few prompts already in _system_prompts: no digest needed again
        self.tool_calls = 0
        self.tool_messages = 0
        self.with_tools = 0
        # prompt-completion / preference
        self.prompt_chars = Summary()
        self.answer_chars = Summary()
        self.forms: dict[str, int] = {}
        # reinforcement
        self.reference_fields: dict[str, int] = {}
        # against hyperparameters.maxSeqLength (set by the caller): examples cut, and those with no answer left
        self.max_seq_length: int | None = None
        self.over_length = Tally()
        self.prompt_fills = 0  # examples whose prompt alone is maxSeqLength tokens or more

    def add(self, line: int, raw: bytes, obj: dict[str, Any], record: dict[str, Any], text: str) -> None:
        """Count one valid example; `raw` is its line as read (exact duplicates are equal lines)."""
        self.examples += 1
        self.chars.add(len(text), line)
        tokens = self.count_tokens(text) if self.count_tokens else estimate_tokens(text)
        self.tokens.add(tokens, line)
        if self.max_seq_length is not None and tokens > self.max_seq_length:
            self.over_length.add(line)
            prompt = _prompt_text(record, self.fmt)
            if prompt is not None:
                count = self.count_tokens(prompt) if self.count_tokens else estimate_tokens(prompt)
                self.prompt_fills += count >= self.max_seq_length
        if len(text) > self.long_example_chars:
            self.long.add(line)
        self._seen.add(line, raw)
        if is_conversational(record):
            self.conversational += 1
        if "tools" in record:
            self.with_tools += 1
        messages = record.get("messages") or (record.get("prompt") if isinstance(record.get("prompt"), list) else None)
        if messages is not None:
            self._add_messages(messages, line)
        if self.fmt in (PROMPT_COMPLETION, PREFERENCE):
            self._add_pair(obj, record, line)
        if self.fmt == REINFORCEMENT:
            for name in reference_fields(obj):
                if name in self.reference_fields or len(self.reference_fields) < MAX_REFERENCE_FIELD_NAMES:
                    self.reference_fields[name] = self.reference_fields.get(name, 0) + 1

    @property
    def duplicates(self) -> Tally:
        """The examples whose line (as read) repeats an earlier example's: lines are (line, first line)."""
        return Tally.of(*self._seen.repeats(LINES_SHOWN))

    def add_plain_chats(self, first_line: int, raws: list[bytes], chats: PlainChats) -> None:
        """Count consecutive plain chat lines (kubetune.data.fastpath), the first on `first_line`, `raws` their
        stripped bytes, as `add` counts their records, a column at a time (C loops: this is most of the time
        `kubetune validate` takes). Every content is non-blank and each line ends with the assistant's turn, so
        a line's text is its contents joined by newlines and its prompt all but the last turn: neither is built
        unless a tokenizer or maxSeqLength needs it."""
        lines = len(chats)
        sizes = chats.sizes
        chars = list(map(add, chats.per_line_sums(list(map(len, chats.contents))), map(sub, sizes, repeat(1))))
        if self.count_tokens:
            tokens = [self.count_tokens("\n".join(chats.line(i)[1])) for i in range(lines)]
        else:  # estimate_tokens from the length: ceil(chars / CHARS_PER_TOKEN)
            tokens = list(map(floordiv, map(add, chars, repeat(CHARS_PER_TOKEN - 1)), repeat(CHARS_PER_TOKEN)))
        self.examples += lines
        self.conversational += lines
        self.chars.add_run(chars, first_line)
        self.tokens.add_run(tokens, first_line)
        self.messages.add_run(sizes, first_line)
        if self.max_seq_length is not None and max(tokens) > self.max_seq_length:
            for i, count in enumerate(tokens):
                if count > self.max_seq_length:
                    self.over_length.add(first_line + i)
                    prompt = "\n".join(chats.line(i)[1][:-1])
                    prompt_tokens = self.count_tokens(prompt) if self.count_tokens else estimate_tokens(prompt)
                    self.prompt_fills += prompt_tokens >= self.max_seq_length
        if max(chars) > self.long_example_chars:
            for i, count in enumerate(chars):
                if count > self.long_example_chars:
                    self.long.add(first_line + i)
        self._seen.add_run(first_line, raws)
        assistants = chats.per_line_sums(list(map(eq, chats.roles, repeat("assistant"))))
        self.assistant_turns += sum(assistants)
        self.multi_turn += sum(map(gt, assistants, repeat(1)))
        with_system = sum(map(bool, chats.per_line_sums(list(map(eq, chats.roles, repeat("system"))))))
        if with_system:
            self.with_system += with_system
            self._add_system_prompts(chats, with_system, first_line)

    def _add_system_prompts(self, chats: PlainChats, with_system: int, line: int) -> None:
        """The first system prompt of each line that has one, into the distinct system prompts."""
        starts = chats.starts()
        first_is_system = list(map(eq, map(chats.roles.__getitem__, starts), repeat("system")))
        prompts = set(compress(map(chats.contents.__getitem__, starts), first_is_system))
        if sum(first_is_system) < with_system:  # some line's system prompt is not its first turn
            for i in range(len(chats)):
                roles, contents = chats.line(i)
                if roles[0] != "system" and "system" in roles:
                    prompts.add(contents[roles.index("system")])
        for system in prompts - self._known_systems:
            if len(self._system_prompts) >= MAX_DISTINCT_SYSTEM_PROMPTS:
                break
            self._system_prompts.add(text_digest(system), line)
            if len(self._known_systems) < KNOWN_SYSTEM_PROMPTS:
                self._known_systems.add(system)

    def _add_messages(self, messages: list[dict[str, Any]], line: int) -> None:
        self.messages.add(len(messages), line)
        assistants = tools = calls = 0
        system = None
        for m in messages:
            role = m["role"]
            if role == "assistant":
                assistants += 1
                if "tool_calls" in m:
                    calls += len(m["tool_calls"])
            elif role == "tool":
                tools += 1
            elif role == "system" and system is None:
                system = m["content"]
        self.assistant_turns += assistants
        self.multi_turn += assistants > 1
        self.tool_calls += calls
        self.tool_messages += tools
        if system is not None:
            self.with_system += 1
            if len(self._system_prompts) < MAX_DISTINCT_SYSTEM_PROMPTS:
                self._system_prompts.add(text_digest(system), line)

    def _add_pair(self, obj: dict[str, Any], record: dict[str, Any], line: int) -> None:
        def size(value: Any) -> int:
            return len(value) if isinstance(value, str) else len(messages_text(value))

        self.prompt_chars.add(size(record["prompt"]), line)
        answer = record.get("completion") if self.fmt == PROMPT_COMPLETION else record["chosen"]
        if answer is not None:  # a prompt alone (endpoint distillation: the teacher writes the answer)
            self.answer_chars.add(size(answer), line)
        if self.fmt == PREFERENCE:
            form = preference_form(obj)
            self.forms[form] = self.forms.get(form, 0) + 1

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.fmt,
            "examples": self.examples,
            "chars": self.chars.as_dict(),
            "tokens": {**self.tokens.as_dict(), "counted": self.count_tokens is not None},
            "duplicates": self.duplicates.count,
            "long_examples": self.long.count,
        }
        if self.fmt != "text":
            out["conversational"] = self.conversational
        if self.messages.count:
            out["messages"] = self.messages.as_dict()
            out["assistant_turns"] = self.assistant_turns
            out["multi_turn_examples"] = self.multi_turn
            out["system_prompts"] = self.with_system
            out["distinct_system_prompts"] = len(self._system_prompts)
            out["tool_calls"] = self.tool_calls
            out["tool_messages"] = self.tool_messages
            out["examples_with_tools"] = self.with_tools
        if self.fmt in (PROMPT_COMPLETION, PREFERENCE):
            out["prompt_chars"] = self.prompt_chars.as_dict()
            out["completion_chars" if self.fmt == PROMPT_COMPLETION else "chosen_chars"] = self.answer_chars.as_dict()
        if self.fmt == PREFERENCE:
            out["forms"] = dict(self.forms)
        if self.fmt == REINFORCEMENT:
            out["reference_fields"] = dict(self.reference_fields)
        return out

    def warnings(self) -> list[str]:
        """Findings about the file as a whole that do not stop training."""
        out = []
        duplicates = self.duplicates
        if duplicates.count:
            shown = ", ".join(f"line {a} repeats line {b}" for a, b in duplicates.lines)
            more = ", ..." if duplicates.count > len(duplicates.lines) else ""
            out.append(f"{duplicates.count} duplicate example(s) ({shown}{more})")
        if self.long.count:
            out.append(
                f"{self.long.count} example(s) longer than {self.long_example_chars:,} characters "
                f"(lines {_lines(self.long)}; longest: line {self.chars.max_line}, {self.chars.max:,} characters); "
                "they may be cut at hyperparameters.maxSeqLength"
            )
        if self.over_length.count:
            how = "counted" if self.count_tokens else f"estimated at {CHARS_PER_TOKEN} characters a token"
            out.append(
                f"{self.over_length.count} of {self.examples} example(s) are longer than "
                f"spec.hyperparameters.maxSeqLength ({self.max_seq_length:,} tokens, {how}; lines "
                f"{_lines(self.over_length)}): training cuts them"
            )
        if self.fmt == CHAT and 0 < self.with_system < self.examples:
            out.append(
                f"{self.with_system} of {self.examples} examples have a system prompt: use it in all or none, "
                "or the model learns to behave differently without it"
            )
        return out


def length_problem(collector: Collector) -> str | None:
    """Why nothing would be trained on: every example's prompt fills maxSeqLength, so the completion (what the
    loss is computed on) is cut away everywhere and TRL drops every example. None otherwise."""
    if not collector.examples or collector.prompt_fills < collector.examples:
        return None
    how = "counted" if collector.count_tokens else f"an estimate: {CHARS_PER_TOKEN} characters a token"
    return (
        f"the prompt of every example is at least spec.hyperparameters.maxSeqLength ({collector.max_seq_length:,}) "
        f"tokens long ({how}): no answer token is left to train on; raise maxSeqLength or shorten the prompts"
    )


def _prompt_text(record: dict[str, Any], fmt: str) -> str | None:
    """The part of an example the loss is not computed on (its prompt); None for plain text (all of it counts)."""
    if fmt == CHAT:
        messages = record.get("messages") or []
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        return messages_text(messages[:last]) if last is not None else None
    prompt = record.get("prompt")
    if prompt is None:
        return None
    return prompt if isinstance(prompt, str) else messages_text(prompt)


def _lines(tally: Tally) -> str:
    shown = ", ".join(str(x) for x in tally.lines)
    return shown + (", ..." if tally.count > len(tally.lines) else "")
