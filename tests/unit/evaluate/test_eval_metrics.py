"""Evaluation metrics on inputs whose values can be checked by hand."""

import math

import pytest

from kubetune_trainer.evaluate import metrics


def test_exact_match_collapses_whitespace_but_keeps_case():
    preds = ["Paris", "  New   York ", "london", "Rome"]
    refs = ["Paris", "New York", "London", "Madrid"]
    assert metrics.exact_match(preds, refs) == 0.5  # 2 of 4: case matters for exact match


def test_accuracy_compares_labels_case_insensitively():
    preds = ["Positive", "negative.", " neutral", "positive"]
    refs = ["positive", "negative", "neutral", "negative"]
    assert metrics.accuracy(preds, refs) == 0.75


def test_macro_f1_by_hand():
    # class a: P=1 R=1/2 F1=2/3; class b: P=2/3 R=1 F1=4/5; macro = (2/3 + 4/5) / 2 = 11/15
    assert metrics.macro_f1(["a", "b", "b", "b"], ["a", "a", "b", "b"]) == pytest.approx(11 / 15)


def test_macro_f1_counts_unknown_predictions_as_wrong_without_adding_a_class():
    # class a: TP=1 FN=1 -> F1 = 2/3; class b: TP=1 -> F1 = 1; "zzz" is no class of its own
    assert metrics.macro_f1(["a", "zzz", "b"], ["a", "a", "b"]) == pytest.approx((2 / 3 + 1) / 2)


def test_bleu_by_hand():
    # n-gram precisions 6/7, 5/6, 4/5, 3/4; no brevity penalty; geometric mean = (3/7) ** (1/4)
    score = metrics.bleu(["the cat sat on the mat today"], ["the cat sat on the mat"])
    assert score == pytest.approx((3 / 7) ** 0.25, abs=1e-4)
    assert metrics.bleu(["a b c d e"], ["a b c d e"]) == pytest.approx(1.0)


def test_rouge_l_by_hand():
    # LCS 3 words: precision 3/3, recall 3/6, F = 2/3
    assert metrics.rouge_l(["the cat sat"], ["the cat sat on the mat"]) == pytest.approx(2 / 3)
    assert metrics.rouge_l(["x y", "the cat"], ["the cat", "the cat"]) == pytest.approx(0.5)


def test_answer_similarity_is_one_for_identical_and_ranks_meaning():
    same = metrics.answer_similarity(["The flight leaves at noon."], ["The flight leaves at noon."])
    close = metrics.answer_similarity(["The plane departs at 12 pm."], ["The flight leaves at noon."])
    far = metrics.answer_similarity(["Bananas are rich in potassium."], ["The flight leaves at noon."])
    assert same == pytest.approx(1.0, abs=1e-4)
    assert close > far + 0.2


def test_json_valid_accepts_a_fenced_document():
    preds = ['{"a": 1}', '```json\n{"a": 2}\n```', "{a: 1}", "[1, 2]"]
    assert metrics.json_valid(preds) == 0.75


def test_json_schema_conformance():
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    preds = ['{"city": "Oslo"}', '{"city": 3}', '{"town": "Oslo"}', "not json"]
    assert metrics.json_schema(preds, schema) == 0.25


def test_invalid_json_schema_names_the_field():
    with pytest.raises(ValueError, match=r"spec\.jsonSchema"):
        metrics.json_schema(["{}"], {"type": "no-such-type"})


def test_perplexity_is_exp_of_mean_token_nll():
    # two examples, 2 tokens each, each token with probability 1/2 -> perplexity 2
    assert metrics.perplexity([2 * math.log(2), 2 * math.log(2)], [2, 2]) == pytest.approx(2.0)
    # token-weighted: (ln 4 * 1 + 0 * 3) / 4 tokens -> exp(ln 4 / 4) = sqrt(2)
    assert metrics.perplexity([math.log(4), 0.0], [1, 3]) == pytest.approx(math.sqrt(2))


def test_latency_summary_percentiles():
    s = metrics.latency_summary([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5
    assert s["p50"] == 2.5
    assert s["p95"] == pytest.approx(3.85)


def test_score_leaves_out_what_cannot_be_measured():
    out = metrics.score(
        ["exact_match", "perplexity", "prompt_tokens", "latency"],
        ["a", "b"],
        ["a", "c"],
        prompt_tokens=[10, 20],
        latencies=[],
    )
    assert out == {"exact_match": 0.5, "prompt_tokens": 15.0}


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metrics.exact_match(["a", "b"], ["a"])


def test_json_schema_metric_never_fetches_and_is_bounded(monkeypatch):
    """The same protection as the RFT graders (one helper, kubetune_trainer.matching)."""
    import time

    from kubetune_trainer import matching

    with pytest.raises(ValueError, match=r"spec\.jsonSchema: \$ref 'https://example\.invalid/s\.json' points outside"):
        metrics.json_schema(['"x"'], {"$ref": "https://example.invalid/s.json"})
    monkeypatch.setattr(matching, "REGEX_TIMEOUT_SECONDS", 0.2)
    started = time.monotonic()
    score = metrics.json_schema([f'"{"a" * 40}b"', '"aaaa"', "[" * 100_000], {"type": "string", "pattern": r"(a|aa)+$"})
    assert score == pytest.approx(1 / 3) and time.monotonic() - started < 5
