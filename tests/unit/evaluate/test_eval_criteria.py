"""Pass criteria (min, max, minImprovement in the metric's direction) and the choice of the best model."""

import pytest

from kubetune.api.evaluation import PassCriterion
from kubetune_trainer.evaluate import criteria

C = PassCriterion.model_validate

CASES = [
    # (criterion, model metrics, baseline metrics, expected failure substrings; [] = passes)
    ({"metric": "exact_match", "min": 0.8}, {"exact_match": 0.8}, None, []),
    ({"metric": "exact_match", "min": 0.8}, {"exact_match": 0.79}, None, ["below min 0.8"]),
    ({"metric": "latency", "max": 1.0}, {"latency": 1.5}, None, ["above max 1"]),
    ({"metric": "exact_match", "minImprovement": 0.05}, {"exact_match": 0.85}, {"exact_match": 0.80}, []),
    (
        {"metric": "exact_match", "minImprovement": 0.05},
        {"exact_match": 0.84},
        {"exact_match": 0.80},
        ["less than minImprovement 0.05"],
    ),
    # lower is better: improvement = baseline - model
    ({"metric": "prompt_tokens", "minImprovement": 100}, {"prompt_tokens": 40}, {"prompt_tokens": 412}, []),
    (
        {"metric": "prompt_tokens", "minImprovement": 100},
        {"prompt_tokens": 400},
        {"prompt_tokens": 412},
        ["lower is better"],
    ),
    ({"metric": "perplexity", "minImprovement": 0.0}, {"perplexity": 9.0}, {"perplexity": 3.0}, ["improvement -6"]),
    (
        {"metric": "exact_match", "minImprovement": 0.05},
        {"exact_match": 0.9},
        None,
        ["needs a baseline", "spec.baseline.none"],
    ),
    ({"metric": "bleu", "min": 0.1}, {"exact_match": 0.9}, None, ["bleu was not measured"]),
    (
        {"metric": "exact_match", "min": 0.9, "minImprovement": 0.5},
        {"exact_match": 0.5},
        {"exact_match": 0.4},
        ["below min", "less than minImprovement"],
    ),
]


@pytest.mark.parametrize(("criterion", "model", "baseline", "expected"), CASES)
def test_pass_criteria_table(criterion, model, baseline, expected):
    failures = criteria.check([C(criterion)], model, baseline)
    if not expected:
        assert failures == []
    else:
        text = " | ".join(failures)
        for fragment in expected:
            assert fragment in text


def test_every_criterion_must_hold():
    crits = [C({"metric": "exact_match", "min": 0.5}), C({"metric": "prompt_tokens", "max": 50})]
    assert criteria.check(crits, {"exact_match": 0.9, "prompt_tokens": 40}, None) == []
    assert len(criteria.check(crits, {"exact_match": 0.9, "prompt_tokens": 60}, None)) == 1


def test_deltas_are_model_minus_baseline():
    assert criteria.deltas({"exact_match": 0.9, "bleu": 0.5}, {"exact_match": 0.3}) == {
        "exact_match": pytest.approx(0.6)
    }
    assert criteria.deltas({"exact_match": 0.9}, None) == {}


def _r(name, passed, **m):
    return {"model": name, "passed": passed, "metrics": m}


def test_best_is_among_passing_models_in_the_metric_direction():
    results = [
        _r("checkpoint-100", False, exact_match=0.95),
        _r("checkpoint-200", True, exact_match=0.8),
        _r("checkpoint-300", True, exact_match=0.9),
    ]
    assert criteria.best(results, "exact_match") == "checkpoint-300"
    lat = [_r("a", True, latency=0.5), _r("b", True, latency=0.2), _r("c", True, latency=0.9)]
    assert criteria.best(lat, "latency") == "b"


def test_best_falls_back_to_all_models_when_none_passed_and_ties_go_to_the_later_checkpoint():
    results = [
        _r("checkpoint-100", False, exact_match=0.7),
        _r("checkpoint-200", False, exact_match=0.7),
        _r("checkpoint-300", False),
    ]
    assert criteria.best(results, "exact_match") == "checkpoint-200"  # as the operator's promotion ranks
    assert criteria.best([_r("checkpoint-300", False)], "exact_match") is None  # nothing ranked
    assert criteria.best([], "exact_match") is None
