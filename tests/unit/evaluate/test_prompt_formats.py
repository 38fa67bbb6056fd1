"""Prompts in a model's training format, without a model: raw text, its few-shot form, old checkpoints."""

from __future__ import annotations

import json

import pytest

from kubetune.data import DatasetError
from kubetune.data.promptformat import CHAT_TEMPLATE, RAW_TEXT, of_checkpoint
from kubetune_trainer.evaluate.examples import Example
from kubetune_trainer.evaluate.runner import prompts_for
from kubetune_trainer.prompting import read_recorded


def _ex(prompt: str, answer: str) -> Example:
    return Example(messages=[{"role": "user", "content": prompt}], reference=answer)


def test_raw_text_prompts_are_the_strings_and_few_shot_joins_each_prompt_to_its_answer():
    shots = [_ex("the bed was cold ->", " negative"), _ex("the view was superb ->", " positive")]
    question = _ex("the pool was quiet ->", " positive")
    assert prompts_for(RAW_TEXT, [question]) == ["the pool was quiet ->"]
    assert prompts_for(RAW_TEXT, [question], shots, "Label the review.") == [
        "Label the review.\n\nthe bed was cold -> negative\n\nthe view was superb -> positive\n\nthe pool was quiet ->"
    ]
    # a chat model gets the same examples as earlier conversation turns, as before
    chat = prompts_for(CHAT_TEMPLATE, [question], shots)[0]
    assert [m["role"] for m in chat] == ["user", "assistant", "user", "assistant", "user"]


def test_a_conversation_has_no_raw_text_form_and_the_error_says_what_to_do():
    multi = Example(
        messages=[{"role": "system", "content": "Label it."}, {"role": "user", "content": "the bed was cold ->"}],
        reference=" negative",
    )
    with pytest.raises(DatasetError, match=r"final: example 1 of the dataset: .*one user message.*/v1/completions"):
        prompts_for(RAW_TEXT, [multi], model="final")


def test_a_checkpoint_written_before_the_record_is_prompted_through_the_chat_template(tmp_path):
    (tmp_path / "kubetune.json").write_text(json.dumps({"name": "checkpoint-400", "step": 400}))
    assert read_recorded(tmp_path) is None
    assert of_checkpoint(json.loads((tmp_path / "kubetune.json").read_text())) == CHAT_TEMPLATE
    assert read_recorded(tmp_path / "missing") is None  # a base model: no kubetune.json at all
