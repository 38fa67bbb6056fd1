"""Pass criteria and the choice of the best model, both aware of each metric's direction.

`min`/`max` bound the model's own score. `minImprovement` asks for a gain over the baseline in the
metric's direction: for LOWER_IS_BETTER metrics (perplexity, prompt_tokens, latency) the gain is
baseline - model, for the others model - baseline. A criterion that cannot be checked (the metric
was not measured, or minImprovement without a baseline) fails with a message saying why.

Best model: among the targets that passed (all targets when none did), the best score of
`spec.selectBy` (default: the first of spec.metrics); a model without that score is not ranked.
Ties go to the later checkpoint (the higher step of `checkpoint-N`; other names rank below, the
first of them winning), exactly as the operator ranks them for promotion
(`kubetune.builders.promotion.best_result`), so the pod and the operator never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from kubetune.api.checkpoints import step_of
from kubetune.api.evaluation import LOWER_IS_BETTER, PassCriterion

# Scores are floats: 0.85 - 0.80 must count as an improvement of 0.05.
EPSILON = 1e-9


def improvement(metric: str, value: float, baseline: float) -> float:
    """How much better `value` is than `baseline` (positive = better)."""
    return baseline - value if metric in LOWER_IS_BETTER else value - baseline


def deltas(metrics: Mapping[str, float], baseline: Mapping[str, float] | None) -> dict[str, float]:
    """Score minus baseline score for every metric both have (raw difference, not direction-aware)."""
    if not baseline:
        return {}
    return {k: v - baseline[k] for k, v in metrics.items() if k in baseline}


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def check(
    criteria: Sequence[PassCriterion],
    metrics: Mapping[str, float],
    baseline: Mapping[str, float] | None,
) -> list[str]:
    """The failed criteria of one model, as sentences; empty when it passes."""
    failures: list[str] = []
    for c in criteria:
        value = metrics.get(c.metric)
        if value is None or math.isnan(value):
            failures.append(f"{c.metric} was not measured for this model, so its criterion cannot hold")
            continue
        if c.min is not None and value < c.min - EPSILON:
            failures.append(f"{c.metric} {_fmt(value)} is below min {_fmt(c.min)}")
        if c.max is not None and value > c.max + EPSILON:
            failures.append(f"{c.metric} {_fmt(value)} is above max {_fmt(c.max)}")
        if c.min_improvement is not None:
            if baseline is None:
                failures.append(
                    f"{c.metric} minImprovement {_fmt(c.min_improvement)} needs a baseline, "
                    "but the evaluation has none (spec.baseline.none)"
                )
            elif c.metric not in baseline:
                failures.append(f"{c.metric} minImprovement: the baseline's {c.metric} was not measured")
            else:
                gain = improvement(c.metric, value, baseline[c.metric])
                if gain < c.min_improvement - EPSILON:
                    direction = "lower" if c.metric in LOWER_IS_BETTER else "higher"
                    failures.append(
                        f"{c.metric} {_fmt(value)} vs baseline {_fmt(baseline[c.metric])}: improvement "
                        f"{_fmt(gain)} ({direction} is better) is less than minImprovement {_fmt(c.min_improvement)}"
                    )
    return failures


def select_metric(metrics: Sequence[str], select_by: str | None) -> str:
    return select_by or metrics[0]


def _step(name: str) -> int:
    step = step_of(name)
    return -1 if step is None else step


def best(results: Sequence[Mapping], metric: str) -> str | None:
    """The name of the best result (dicts with model, metrics, passed); see the module docstring."""
    pool = [r for r in results if r.get("passed")] or list(results)
    ranked = [r for r in pool if metric in r.get("metrics", {}) and not math.isnan(r["metrics"][metric])]
    if not ranked:
        return None
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return max(ranked, key=lambda r: (sign * r["metrics"][metric], _step(r["model"])))["model"]
