"""Evaluation examples (prompt messages + reference) from datasets, and few-shot prompts.

Records come from `kubetune.data.iter_trl_records` (TRL-shaped dicts): chat records end with the
reference assistant turn; prompt-completion records carry it in `completion`; preference records
use `chosen`; reinforcement records carry it in a reference field (`spec.dataset.referenceField`,
or their only reference field). The baseline's few-shot examples are prior user/assistant turns
placed before the question, drawn deterministically from the training data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.data import DatasetError, iter_trl_records
from kubetune.objectstore import is_s3

__all__ = ["DatasetError", "Example", "draw_few_shot", "example_from_record", "load_examples", "with_few_shot"]

Message = dict[str, str]
FEW_SHOT_SEED = 42
_PROMPT_KEYS = frozenset({"messages", "prompt", "tools", "parallel_tool_calls"})


@dataclass
class Example:
    messages: list[Message]  # the prompt: everything before the reference answer
    reference: str
    record: dict[str, Any] = field(default_factory=dict, repr=False)


def _text(value: Any) -> str:
    """Message content as text: a string, or the text parts of a multi-part content list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    if isinstance(value, dict) and "content" in value:
        return _text(value["content"])
    return "" if value is None else str(value)


def _as_messages(value: Any) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        return [{"role": m["role"], "content": _text(m.get("content", ""))} for m in value]
    raise DatasetError(f"expected a string or a list of messages, got {type(value).__name__}")


def _answer_text(value: Any) -> str:
    """A completion: a string, a list of (assistant) messages, or a JSON value (reference fields)."""
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        return "".join(_text(m.get("content", "")) for m in value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return _text(value)


def example_from_record(record: dict[str, Any], reference_field: str | None = None, where: str = "") -> Example:
    """One TRL-shaped record -> an Example; `where` (file:line) goes into error messages."""
    reference: str | None = None
    if "messages" in record:
        messages = _as_messages(record["messages"])
        if messages and messages[-1]["role"] == "assistant":
            prompt, reference = messages[:-1], messages[-1]["content"]
        else:
            prompt = messages
    elif "prompt" in record:
        prompt = _as_messages(record["prompt"])
        if "completion" in record:
            reference = _answer_text(record["completion"])
        elif "chosen" in record:
            reference = _answer_text(record["chosen"])
    else:
        raise DatasetError(
            f"{where}: evaluation needs prompts with references: use chat, prompt-completion, preference or "
            f"reinforcement records (found fields {sorted(record)})"
        )
    if reference_field:
        if record.get(reference_field) is None:
            raise DatasetError(f"{where}: spec.dataset.referenceField {reference_field!r} is not in the record")
        reference = _answer_text(record[reference_field])
    elif reference is None:
        candidates = sorted(k for k in record if k not in _PROMPT_KEYS and record[k] is not None)
        if len(candidates) != 1:
            raise DatasetError(
                f"{where}: no reference answer (a last assistant turn or a completion); set "
                f"spec.dataset.referenceField to the field that holds it (fields: {candidates})"
            )
        reference = _answer_text(record[candidates[0]])
    if not any(m["role"] != "system" for m in prompt):
        raise DatasetError(f"{where}: the example has no prompt before its reference answer")
    return Example(messages=prompt, reference=reference, record=record)


def load_examples(
    path: Path | str, fmt: str = "auto", *, max_examples: int | None = None, reference_field: str | None = None
) -> list[Example]:
    """The examples of a dataset file, or of an s3:// object read as a stream (kubetune.objectstore);
    kubetune.data validates each line and names file:line (or s3://BUCKET/KEY:line) on errors."""
    if not is_s3(path) and not Path(path).is_file():
        raise DatasetError(f"dataset {path} does not exist")
    out = [
        example_from_record(record, reference_field, where=f"{path}:{n}")
        for n, record in enumerate(iter_trl_records(path, fmt, max_examples=max_examples), 1)
    ]
    if not out:
        raise DatasetError(f"dataset {path} has no examples")
    return out


def draw_few_shot(
    pool: Sequence[Example], k: int, *, exclude: Sequence[Example] = (), seed: int = FEW_SHOT_SEED
) -> list[Example]:
    """k examples from `pool`, the same ones on every run; never one whose prompt is being evaluated."""
    if k <= 0:
        return []
    excluded = {_key(e.messages) for e in exclude}
    candidates = [e for e in pool if _key(e.messages) not in excluded]
    return random.Random(seed).sample(candidates, min(k, len(candidates)))


def _key(messages: list[Message]) -> str:
    return json.dumps(messages, sort_keys=True)


def with_few_shot(example: Example, shots: Sequence[Example], system_prompt: str | None = None) -> list[Message]:
    """The prompt of `example` with `shots` as earlier user/assistant turns (after any system turn)."""
    system = [m for m in example.messages if m["role"] == "system"]
    if system_prompt:
        system = [{"role": "system", "content": "\n\n".join([system_prompt, *(m["content"] for m in system)])}]
    turns: list[Message] = []
    for shot in shots:
        turns += [m for m in shot.messages if m["role"] != "system"]
        turns.append({"role": "assistant", "content": shot.reference})
    return [*system, *turns, *(m for m in example.messages if m["role"] != "system")]
