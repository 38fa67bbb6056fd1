"""Reward functions for reinforcement fine-tuning, built from the graders declared in the spec.

Only these four kinds exist; nothing from the spec is ever executed as code. Each grader scores
a completion in [0, 1]; GRPO sums them with the declared weights (`reward_weights`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator

from kubetune.api.finetunejob import Grader

RewardFunc = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """A GRPO completion is a string, or (conversational) a list of messages: the assistant's text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    return str(completion)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def reference_text(ref: Any) -> str:
    """A reference as text: a string as it is, any other JSON value (true, 3.5, an object) as JSON."""
    return ref if isinstance(ref, str) else json.dumps(ref, ensure_ascii=False)


def _matches(completion: Any, ref: Any) -> bool:
    """Equal text (spacing ignored); a JSON reference also matches a completion that parses to the same value."""
    text = completion_text(completion)
    if _normalise(text) == _normalise(reference_text(ref)):
        return True
    if isinstance(ref, str):
        return False
    try:
        return json.loads(text.strip()) == ref
    except ValueError:
        return False


def _references(kwargs: dict[str, Any], field: str, n: int, name: str) -> list[Any]:
    refs = kwargs.get(field)
    if refs is None:
        raise KeyError(
            f"grader {name!r} reads the field {field!r} of each example, but the dataset has no such field: "
            f"add it to every line or set spec.rft.graders[].field"
        )
    return list(refs)[:n]


def exact_match(grader: Grader) -> RewardFunc:
    field = grader.field

    def reward(completions: list[Any], **kwargs: Any) -> list[float]:
        refs = _references(kwargs, field, len(completions), grader.name or grader.type)
        return [float(_matches(c, r)) for c, r in zip(completions, refs, strict=True)]

    return reward


def regex(grader: Grader) -> RewardFunc:
    pattern = re.compile(grader.pattern or "")

    def reward(completions: list[Any], **kwargs: Any) -> list[float]:
        return [float(pattern.search(completion_text(c).strip()) is not None) for c in completions]

    return reward


def json_schema(grader: Grader) -> RewardFunc:
    validator = Draft202012Validator(grader.schema_ or {})

    def reward(completions: list[Any], **kwargs: Any) -> list[float]:
        out = []
        for c in completions:
            try:
                value = json.loads(completion_text(c).strip())
            except ValueError:
                out.append(0.0)
                continue
            out.append(float(validator.is_valid(value)))
        return out

    return reward


def string_similarity(grader: Grader) -> RewardFunc:
    field = grader.field

    def reward(completions: list[Any], **kwargs: Any) -> list[float]:
        refs = _references(kwargs, field, len(completions), grader.name or grader.type)
        return [
            difflib.SequenceMatcher(None, _normalise(completion_text(c)), _normalise(reference_text(r))).ratio()
            for c, r in zip(completions, refs, strict=True)
        ]

    return reward


BUILDERS: dict[str, Callable[[Grader], RewardFunc]] = {
    "exact_match": exact_match,
    "regex": regex,
    "json_schema": json_schema,
    "string_similarity": string_similarity,
}


def reward_functions(graders: list[Grader]) -> tuple[list[RewardFunc], list[float]]:
    """(reward functions, weights) for GRPO; each function is named after its grader for the logs."""
    funcs, weights = [], []
    for i, g in enumerate(graders):
        fn = BUILDERS[g.type](g)
        fn.__name__ = g.name or (g.type if sum(x.type == g.type for x in graders) == 1 else f"{g.type}_{i}")
        funcs.append(fn)
        weights.append(g.weight)
    return funcs, weights
