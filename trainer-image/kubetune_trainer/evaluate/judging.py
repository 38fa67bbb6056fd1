"""The `judge` metric: a judge model (spec.judge) scores each answer of one model by the rubric, with its reference.

The metric is the mean on 0..1 (kubetune.api.judge); an answer the judge gave no verdict on counts as 0, or
is left out with onFailure skip. The judge's counters (requests, parse failures, timeouts, rate-limited
retries, cache hits ...) go into results.json beside the model's scores. Answers are cached in the
evaluation's output directory, so a re-run, or the next checkpoint with the same answers, is not asked again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubetune.api.judge import EVAL_API_KEY_ENV
from kubetune.api.runconfig import EvalRunConfig
from kubetune_trainer import judge as judging
from kubetune_trainer.prompting import Prompt


@dataclass(frozen=True)
class JudgeOutcome:
    score: float | None  # None when no answer got a verdict and onFailure is skip
    counters: dict[str, float]


def _prompt_text(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in prompt)


def judge_metric(
    config: EvalRunConfig, prompts: Sequence[Prompt], texts: Sequence[str], references: Sequence[str], *, model: str
) -> JudgeOutcome | None:
    """The judge's score of one model's answers; None when the judge metric is not asked for."""
    spec = config.spec.judge
    if spec is None or "judge" not in config.spec.metrics:
        return None
    items = [
        judging.JudgeItem(_prompt_text(p), t, r or None) for p, t, r in zip(prompts, texts, references, strict=True)
    ]
    with judging.from_spec(
        spec,
        name=f"judge ({model})",
        where="spec.judge",
        api_key_env=EVAL_API_KEY_ENV,
        cache_dir=config.output_dir,
        endpoints=config.judge_endpoints,
    ) as j:
        values = judging.spec_scores(j, spec, items)
        counters = j.counters.as_dict()
    kept = [v for v in values if v is not None]
    return JudgeOutcome(score=sum(kept) / len(kept) if kept else None, counters=counters)
