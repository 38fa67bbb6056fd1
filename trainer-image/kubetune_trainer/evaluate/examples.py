"""Evaluation examples (prompt messages + reference) from datasets, and few-shot prompts.

Records come from `kubetune.data.iter_trl_records` (TRL-shaped dicts): chat records end with the
reference assistant turn; prompt-completion records carry it in `completion`; preference records
use `chosen`. The baseline's few-shot examples are prior user/assistant turns placed before the
question, drawn deterministically from the training data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Message = dict[str, str]
FEW_SHOT_SEED = 42


@dataclass
class Example:
    messages: list[Message]  # the prompt: everything before the reference answer
    reference: str
    record: dict[str, Any] = field(default_factory=dict, repr=False)


class DatasetError(ValueError):
    """A dataset that cannot be evaluated; the message names the file, line or field."""


def _as_messages(value: Any) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        return [{"role": m["role"], "content": _text(m.get("content", ""))} for m in value]
    raise DatasetError(f"expected a string or a list of messages, got {type(value).__name__}")


def _text(value: Any) -> str:
    """Message content as text: a string, or the text parts of a multi-part content list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    if isinstance(value, dict) and "content" in value:
        return _text(value["content"])
    return "" if value is None else str(value)


def _answer_text(value: Any) -> str:
    """A completion: a string or a list of (assistant) messages."""
    if isinstance(value, list):
        return "".join(_text(m.get("content", "")) for m in value if isinstance(m, dict))
    return _text(value)


def example_from_record(record: dict[str, Any], reference_field: str | None = None, where: str = "") -> Example:
    """One TRL-shaped record -> an Example; `where` (file:line) goes into error messages."""
    if "messages" in record:
        messages = _as_messages(record["messages"])
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None and not reference_field:
            raise DatasetError(f"{where}: a chat example needs an assistant turn to serve as the reference")
        prompt = messages[:last] if last is not None else messages
        reference = messages[last]["content"] if last is not None else ""
    elif "prompt" in record and ("completion" in record or "chosen" in record):
        prompt = _as_messages(record["prompt"])
        reference = _answer_text(record.get("completion", record.get("chosen")))
    else:
        raise DatasetError(
            f"{where}: evaluation needs references; use chat (messages) or prompt-completion records "
            f"(found fields {sorted(record)})"
        )
    if reference_field:
        if reference_field not in record:
            raise DatasetError(f"{where}: spec.dataset.referenceField {reference_field!r} is not in the record")
        reference = _answer_text(record[reference_field])
    if not any(m["role"] != "system" for m in prompt):
        raise DatasetError(f"{where}: the example has no prompt before its reference answer")
    return Example(messages=prompt, reference=reference, record=record)


def iter_records(path: Path, fmt: str = "auto") -> Iterator[dict[str, Any]]:
    """TRL-shaped records of a dataset file, through kubetune.data (the one place data rules live)."""
    try:
        from kubetune.data import iter_trl_records
    except ImportError:  # kubetune.data not installed in this image: JSON lines, records as they are
        iter_trl_records = None
    if iter_trl_records is not None:
        yield from iter_trl_records(path, fmt)
        return
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as e:
                    raise DatasetError(f"{path}:{n}: not valid JSON ({e})") from e


def load_examples(
    path: Path, fmt: str = "auto", *, max_examples: int | None = None, reference_field: str | None = None
) -> list[Example]:
    if not path.is_file():
        raise DatasetError(f"dataset {path} does not exist")
    out: list[Example] = []
    for n, record in enumerate(iter_records(path, fmt), 1):
        out.append(example_from_record(record, reference_field, where=f"{path}:{n}"))
        if max_examples and len(out) >= max_examples:
            break
    if not out:
        raise DatasetError(f"dataset {path} has no examples")
    return out


def draw_few_shot(
    pool: list[Example], k: int, *, exclude: list[Example] = (), seed: int = FEW_SHOT_SEED
) -> list[Example]:
    """k examples from `pool`, the same ones on every run; never one whose prompt is being evaluated."""
    if k <= 0:
        return []
    excluded = {_key(e.messages) for e in exclude}
    candidates = [e for e in pool if _key(e.messages) not in excluded]
    return random.Random(seed).sample(candidates, min(k, len(candidates)))


def _key(messages: list[Message]) -> str:
    return json.dumps(messages, sort_keys=True)


def with_few_shot(example: Example, shots: list[Example], system_prompt: str | None = None) -> list[Message]:
    """The prompt of `example` with `shots` as earlier user/assistant turns (after any system turn)."""
    system = [m for m in example.messages if m["role"] == "system"]
    if system_prompt:
        system = [{"role": "system", "content": "\n\n".join([system_prompt, *(m["content"] for m in system)])}]
    turns: list[Message] = []
    for shot in shots:
        turns += [m for m in shot.messages if m["role"] != "system"]
        turns.append({"role": "assistant", "content": shot.reference})
    return [*system, *turns, *(m for m in example.messages if m["role"] != "system")]
