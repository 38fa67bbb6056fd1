"""Reward functions for reinforcement fine-tuning, built from the graders declared in the spec.

Only these kinds exist; nothing from the spec is ever executed as code. Each grader scores
a completion in [0, 1]; GRPO sums them with the declared weights (`reward_weights`). Graders other than
`judge` (which asks a judge model over HTTP, kubetune_trainer.judge) never touch the network or the file system, and a regex (also a JSON schema's `pattern`) gets a time bound
per completion: one that runs out scores 0 and is counted in the log (matching.py).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import Any

from kubetune.api.finetunejob import Grader
from kubetune_trainer.matching import BoundedPattern, Outcome, SchemaCheck, TimeoutLog, parse_json
from kubetune_trainer.startchecks import TrainerConfigError

RewardFunc = Callable[..., list[float | None]]


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
    ok, value = parse_json(text.strip())
    return ok and value == ref


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

    def reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
        refs = _references(kwargs, field, len(completions), grader.name or grader.type)
        return [float(_matches(c, r)) for c, r in zip(completions, refs, strict=True)]

    return reward


def regex(grader: Grader) -> RewardFunc:
    pattern = BoundedPattern(grader.pattern or "")
    timeouts = TimeoutLog(f"grader {grader.name or grader.type!r}")

    def reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
        outcomes = [timeouts.add(pattern.search(completion_text(c).strip())) for c in completions]
        return [float(o is Outcome.MATCH) for o in outcomes]

    reward.timeouts = timeouts  # type: ignore[attr-defined]  # TRL wants a function (its __name__ names the reward); the count rides on it
    return reward


def json_schema(grader: Grader) -> RewardFunc:
    check = SchemaCheck(grader.schema_ or {})
    timeouts = TimeoutLog(f"grader {grader.name or grader.type!r}")

    def reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
        out = []
        for c in completions:
            ok, value = parse_json(completion_text(c).strip())
            out.append(float(ok and timeouts.add(check.check(value)) is Outcome.MATCH))
        return out

    reward.timeouts = timeouts  # type: ignore[attr-defined]  # TRL wants a function (its __name__ names the reward); the count rides on it
    return reward


def string_similarity(grader: Grader) -> RewardFunc:
    field = grader.field

    def reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
        refs = _references(kwargs, field, len(completions), grader.name or grader.type)
        return [
            difflib.SequenceMatcher(None, _normalise(completion_text(c)), _normalise(reference_text(r))).ratio()
            for c, r in zip(completions, refs, strict=True)
        ]

    return reward


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        return "\n".join(f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in prompt if isinstance(m, dict))
    return completion_text(prompt)


def judge(grader: Grader, *, index: int, name: str, output_dir: str | None, endpoints: dict[str, str]) -> RewardFunc:
    """A judge model scores each completion (0..1, see kubetune.api.judge) by the grader's rubric; the example's
    `field` is shown as the reference when the dataset has it. Asked per batch, `concurrency` at a time; the
    answers are cached in the run's output directory. A completion without a verdict scores 0 or, with
    onFailure skip, None (GRPO leaves it out of the sum)."""
    from kubetune.api.judge import grader_api_key_env
    from kubetune_trainer import judge as judging

    spec = grader.judge
    assert spec is not None  # the spec's rule: a judge grader needs judge
    field = grader.field
    made: list[judging.Judge] = []
    md = spec.endpoint.model_deployment
    if md is not None and not endpoints.get(md.name):
        raise ValueError(f"ModelDeployment {md.name!r} has no endpoint in the run config (is it Ready?)")

    def the_judge() -> judging.Judge:
        if not made:  # made on first use: reward_functions is also called only for the weights
            made.append(
                judging.from_spec(
                    spec,
                    name=name,
                    where=f"spec.rft.graders[{index}].judge",
                    api_key_env=grader_api_key_env(index),
                    cache_dir=output_dir,
                    endpoints=endpoints,
                )
            )
        return made[0]

    def reward(completions: list[Any], prompts: list[Any] | None = None, **kwargs: Any) -> list[float | None]:
        refs = list(kwargs.get(field) or [None] * len(completions))[: len(completions)]
        ps = list(prompts or [""] * len(completions))
        items = [
            judging.JudgeItem(_prompt_text(p), completion_text(c), None if r is None else reference_text(r))
            for p, c, r in zip(ps, completions, refs, strict=True)
        ]
        return judging.spec_scores(the_judge(), spec, items)

    reward.counters = lambda: made[0].counters if made else None  # type: ignore[attr-defined]  # TRL wants a function; JudgeCounterLog reads this
    return reward


BUILDERS: dict[str, Callable[[Grader], RewardFunc]] = {
    "exact_match": exact_match,
    "regex": regex,
    "json_schema": json_schema,
    "string_similarity": string_similarity,
}


def reward_functions(
    graders: list[Grader], *, output_dir: str | None = None, judge_endpoints: dict[str, str] | None = None
) -> tuple[list[RewardFunc], list[float]]:
    """(reward functions, weights) for GRPO; each function is named after its grader for the logs. Judge graders
    cache their answers in `output_dir` and find ModelDeployment judges in `judge_endpoints`."""
    funcs, weights = [], []
    for i, g in enumerate(graders):
        name = g.name or (g.type if sum(x.type == g.type for x in graders) == 1 else f"{g.type}_{i}")
        try:
            if g.type == "judge":
                fn = judge(g, index=i, name=name, output_dir=output_dir, endpoints=judge_endpoints or {})
            else:
                fn = BUILDERS[g.type](g)
        except ValueError as err:  # a pattern that does not compile, a schema that is not one or leads outside
            field = {"regex": "pattern", "judge": "judge.endpoint"}.get(g.type, "schema")
            raise TrainerConfigError(f"spec.rft.graders[{i}].{field}: {err}") from None
        fn.__name__ = name
        funcs.append(fn)
        weights.append(g.weight)
    return funcs, weights
