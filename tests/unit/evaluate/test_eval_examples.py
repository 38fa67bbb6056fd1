"""Evaluation examples from each dataset format, and the baseline's few-shot prompt."""

import json

import pytest

from kubetune_trainer.evaluate.examples import (
    DatasetError,
    Example,
    draw_few_shot,
    example_from_record,
    load_examples,
    with_few_shot,
)


def test_chat_reference_is_the_last_assistant_turn():
    ex = example_from_record(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of Norway?"},
                {"role": "assistant", "content": "Oslo"},
            ]
        }
    )
    assert ex.reference == "Oslo"
    assert [m["role"] for m in ex.messages] == ["system", "user"]


def test_prompt_completion_and_reinforcement_references():
    assert example_from_record({"prompt": "2+2=", "completion": "4"}).reference == "4"
    assert example_from_record({"prompt": "2+2=", "answer": "4"}).reference == "4"  # the only reference field
    ex = example_from_record({"prompt": "2+2=", "answer": "4", "topic": "math"}, reference_field="answer")
    assert ex.reference == "4"
    with pytest.raises(DatasetError, match=r"t\.jsonl:7: .*referenceField.*\['answer', 'topic'\]"):
        example_from_record({"prompt": "2+2=", "answer": "4", "topic": "math"}, where="t.jsonl:7")


def test_load_examples_goes_through_kubetune_data(tmp_path):
    path = tmp_path / "test.jsonl"
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"prompt": 3}\n')
    assert [e.reference for e in load_examples(path, max_examples=3)] == ["a0", "a1", "a2"]
    with pytest.raises(DatasetError, match=r"test\.jsonl:6"):
        load_examples(path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_examples(tmp_path / "missing.jsonl")


def _ex(q: str, a: str) -> Example:
    return Example(messages=[{"role": "user", "content": q}], reference=a)


def test_few_shot_is_deterministic_and_never_shows_an_evaluated_prompt():
    pool = [_ex(f"q{i}", f"a{i}") for i in range(20)]
    evaluated = pool[:10]
    first = draw_few_shot(pool, 3, exclude=evaluated)
    assert first == draw_few_shot(pool, 3, exclude=evaluated)
    assert len(first) == 3 and not {e.reference for e in first} & {e.reference for e in evaluated}
    assert len(draw_few_shot(pool[:2], 5)) == 2
    assert draw_few_shot(pool, 0) == []


def test_few_shot_turns_come_before_the_question_after_the_system_prompt():
    question = Example(
        messages=[{"role": "system", "content": "Label it."}, {"role": "user", "content": "the bed was awful"}],
        reference="negative",
    )
    msgs = with_few_shot(question, [_ex("the pool was clean", "positive")], system_prompt="Answer in one word.")
    assert msgs == [
        {"role": "system", "content": "Answer in one word.\n\nLabel it."},
        {"role": "user", "content": "the pool was clean"},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "the bed was awful"},
    ]
