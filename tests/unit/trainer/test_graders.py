"""RFT rewards from declared graders: exact match, regex, JSON schema, string similarity, weights."""

import pytest

from kubetune.api.finetunejob import Grader
from kubetune_trainer.graders import reward_functions


def _one(grader: dict):
    funcs, weights = reward_functions([Grader.model_validate(grader)])
    return funcs[0], weights[0]


def test_exact_match_reads_the_reference_field_and_ignores_spacing():
    fn, w = _one({"type": "exact_match", "field": "answer", "weight": 2})
    assert w == 2
    completions = ["SHOW hotels  IN paris", "SHOW hotels IN rome", [{"role": "assistant", "content": "42"}]]
    assert fn(completions, answer=["SHOW hotels IN paris", "SHOW hotels IN paris", "42"]) == [1.0, 0.0, 1.0]


def test_regex():
    fn, _ = _one({"type": "regex", "pattern": r"^SHOW hotels( IN [a-z]+)?$"})
    assert fn(["SHOW hotels IN lisbon", "show me hotels"]) == [1.0, 0.0]


def test_json_schema():
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    fn, _ = _one({"type": "json_schema", "schema": schema})
    assert fn(['{"city": "porto"}', '{"town": "porto"}', "not json"]) == [1.0, 0.0, 0.0]


def test_string_similarity_is_graded():
    fn, _ = _one({"type": "string_similarity", "field": "answer"})
    exact, close, far = fn(["SHOW hotels IN paris", "SHOW hotels IN pari", "zzz"], answer=["SHOW hotels IN paris"] * 3)
    assert exact == 1.0 and 0.8 < close < 1.0 and far < 0.2


def test_a_missing_reference_field_names_the_field():
    fn, _ = _one({"type": "exact_match", "field": "query"})
    with pytest.raises(KeyError, match="query"):
        fn(["x"], answer=["x"])


def test_several_graders_keep_their_weights_and_distinct_names():
    funcs, weights = reward_functions(
        [
            Grader(type="exact_match", weight=1.0),
            Grader(type="regex", pattern="x", weight=0.5),
            Grader(type="regex", pattern="y", weight=0.25),
        ]
    )
    assert weights == [1.0, 0.5, 0.25]
    assert [f.__name__ for f in funcs] == ["exact_match", "regex_1", "regex_2"]


def test_exact_match_compares_json_references_as_json():
    """A reinforcement dataset's reference may be a JSON value (true, 3.5, an object), not only a string."""
    fn, _ = _one({"type": "exact_match", "field": "answer"})
    completions = ["true", '{"city": "Lisbon", "nights": 2}', "3.5", "false"]
    refs = [True, {"nights": 2, "city": "Lisbon"}, 3.5, True]
    assert fn(completions, answer=refs) == [1.0, 1.0, 1.0, 0.0]


def test_string_similarity_reads_json_references_as_json_text():
    fn, _ = _one({"type": "string_similarity", "field": "answer"})
    assert fn(['{"city": "Lisbon"}'], answer=[{"city": "Lisbon"}]) == [1.0]


def test_default_graders_read_the_completion_of_prompt_completion_data():
    """rft accepts prompt-completion data; the graders' default field `answer` must find its completion."""
    from kubetune_trainer.methods import _rft_rows

    rows = _rft_rows(
        [
            {"prompt": "Capital of Portugal?", "completion": "Lisbon"},
            {
                "prompt": [{"role": "user", "content": "Capital of Spain?"}],
                "completion": [{"role": "assistant", "content": "Madrid"}],
            },
        ]
    )
    fn, _ = _one({"type": "exact_match"})
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}  # what GRPO passes the reward functions
    assert fn(["Lisbon", "Madrid"], **columns) == [1.0, 1.0]
