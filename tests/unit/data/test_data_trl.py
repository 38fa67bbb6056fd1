"""Conversion to TRL records: the shapes TRL documents, checked with TRL's own helpers and a chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from trl.data_utils import extract_prompt, is_conversational, maybe_apply_chat_template

from kubetune.data import DatasetError, iter_trl_records, to_trl_record

# A template that renders tools and tool calls the way Hugging Face templates do (arguments as objects).
TEMPLATE = (
    "{% if tools %}<tools>{{ tools | tojson }}</tools>\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{% for c in m['tool_calls'] or [] %}<call>{{ c['function']['name'] }} {{ c['function']['arguments'] | tojson }}</call>{% endfor %}"
    "<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "Weather in Oslo?"}
ANSWER = {"role": "assistant", "content": "Sunny."}


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "<|end|>": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|end|>")
    fast.chat_template = TEMPLATE
    return fast


def test_chat_record_normalises_content_tool_calls_and_weights(tokenizer) -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    line = {
        "messages": [
            SYSTEM,
            {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Oslo?"}]},
            {
                "role": "assistant",
                "content": None,
                "weight": 0,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny.", "weight": 1},
        ],
        "tools": tools,
    }
    record = to_trl_record(line, "chat")
    assert record["tools"] == tools
    assert record["messages"][1] == {"role": "user", "content": "Weather in Oslo?"}
    assert record["messages"][2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "weather", "arguments": {"city": "Oslo"}}, "id": "c1"}
        ],
    }
    assert record["messages"][3] == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}
    assert "weight" not in record["messages"][4]
    assert is_conversational(record)
    text = maybe_apply_chat_template(record, tokenizer, tools=record["tools"])["text"]
    assert '<call>weather {"city": "Oslo"}</call>' in text and '"name": "weather"' in text
    assert text.endswith("<|assistant|>Sunny.<|end|>\n")


def test_prompt_completion_records(tokenizer) -> None:
    assert to_trl_record({"prompt": "2+2=", "completion": " 4"}, "prompt-completion") == {
        "prompt": "2+2=",
        "completion": " 4",
    }
    conversational = to_trl_record({"prompt": [USER], "completion": [ANSWER]}, "auto")
    assert conversational == {"prompt": [USER], "completion": [ANSWER]}
    # a string prompt with message answers becomes conversational throughout (TRL reads one style per record)
    mixed = to_trl_record({"prompt": "Weather in Oslo?", "completion": [ANSWER]}, "prompt-completion")
    assert mixed == conversational
    out = maybe_apply_chat_template(mixed, tokenizer)
    assert out == {"prompt": "<|user|>Weather in Oslo?<|end|>\n<|assistant|>", "completion": "Sunny.<|end|>\n"}


def test_openai_preference_becomes_prompt_chosen_rejected(tokenizer) -> None:
    worse = {"role": "assistant", "content": "Look outside."}
    line = {"input": {"messages": [SYSTEM, USER]}, "preferred_output": [ANSWER], "non_preferred_output": [worse]}
    record = to_trl_record(line, "preference")
    assert record == {"prompt": [SYSTEM, USER], "chosen": [ANSWER], "rejected": [worse]}
    out = maybe_apply_chat_template(record, tokenizer)
    assert out["prompt"].endswith("<|assistant|>") and out["chosen"] == "Sunny.<|end|>\n"


def test_trl_preference_forms() -> None:
    worse = {"role": "assistant", "content": "Look outside."}
    assert to_trl_record({"prompt": [USER], "chosen": [ANSWER], "rejected": [worse]}, "auto") == {
        "prompt": [USER],
        "chosen": [ANSWER],
        "rejected": [worse],
    }
    assert to_trl_record({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}, "preference") == {
        "prompt": "The sky is",
        "chosen": " blue.",
        "rejected": " green.",
    }
    # a string prompt with message answers is made conversational
    assert to_trl_record(
        {"prompt": "Weather in Oslo?", "chosen": [ANSWER], "rejected": "Look outside."}, "preference"
    ) == {"prompt": [USER], "chosen": [ANSWER], "rejected": [worse]}


@pytest.mark.parametrize(
    "implicit",
    [
        {"chosen": [SYSTEM, USER, ANSWER], "rejected": [SYSTEM, USER, {"role": "assistant", "content": "No idea."}]},
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
    ],
)
def test_implicit_prompt_is_extracted_as_trl_does(implicit: dict) -> None:
    assert to_trl_record(implicit, "preference") == extract_prompt(implicit)


def test_text_and_reinforcement_records(tokenizer) -> None:
    assert to_trl_record({"text": "Once upon a time"}, "auto") == {"text": "Once upon a time"}
    record = to_trl_record({"messages": [SYSTEM, USER], "answer": "sunny", "meta": {"id": 3}}, "auto")
    assert record == {"prompt": [SYSTEM, USER], "answer": "sunny", "meta": {"id": 3}}
    assert maybe_apply_chat_template(record, tokenizer)["prompt"].endswith(
        "<|user|>Weather in Oslo?<|end|>\n<|assistant|>"
    )
    assert to_trl_record({"prompt": "2+2=", "answer": "4"}, "auto") == {"prompt": "2+2=", "answer": "4"}


def test_developer_role_becomes_system() -> None:
    record = to_trl_record({"messages": [{"role": "developer", "content": "Be brief."}, USER], "answer": "x"}, "auto")
    assert record["prompt"] == [SYSTEM, USER]


def test_invalid_lines_raise_with_the_field() -> None:
    with pytest.raises(ValueError, match=r"messages\[1\]\.role: unknown role 'bot'"):
        to_trl_record({"messages": [USER, {"role": "bot", "content": "x"}]}, "chat")
    with pytest.raises(ValueError, match="cannot tell the format"):
        to_trl_record({"question": "?"}, "auto")


@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("chat_tools.jsonl", {"messages", "tools"}),
        ("prompt_completion.jsonl", {"prompt", "completion", "tools"}),
        ("preference_openai.jsonl", {"prompt", "chosen", "rejected", "tools"}),
        ("preference_trl.jsonl", {"prompt", "chosen", "rejected", "tools"}),
        ("text.jsonl", {"text"}),
        ("reinforcement.jsonl", {"prompt", "answer"}),
    ],
)
def test_sample_files_load_into_a_dataset_and_render(
    fixtures_dir: Path, tmp_path: Path, tokenizer, name, columns
) -> None:
    ds = Dataset.from_generator(
        iter_trl_records, gen_kwargs={"path": str(fixtures_dir / name), "fmt": "auto"}, cache_dir=str(tmp_path)
    )
    assert set(ds.column_names) == columns and len(ds) == 12
    rendered = ds.map(lambda ex: maybe_apply_chat_template(ex, tokenizer, tools=ex.get("tools")))
    first = rendered[0]
    for column in columns & {"prompt", "completion", "chosen", "rejected", "text"}:
        assert isinstance(first[column], str) and first[column]


def test_iter_trl_records_stops_at_max_examples_and_raises_on_bad_lines(fixtures_dir: Path) -> None:
    assert len(list(iter_trl_records(fixtures_dir / "chat_tools.jsonl", "chat", max_examples=3))) == 3
    records = iter_trl_records(fixtures_dir / "broken_chat.jsonl")
    assert next(records)["messages"][0] == {"role": "user", "content": "Question 1?"}
    with pytest.raises(DatasetError, match=r"broken_chat\.jsonl:2: invalid JSON"):
        next(records)


def test_tool_call_records_round_trip_through_arrow(fixtures_dir: Path, tmp_path: Path) -> None:
    ds = Dataset.from_generator(
        iter_trl_records, gen_kwargs={"path": str(fixtures_dir / "chat_tools.jsonl")}, cache_dir=str(tmp_path)
    )
    call = ds[0]["messages"][2]["tool_calls"][0]
    assert call["function"] == {"name": "search_hotels", "arguments": {"city": "Lisbon", "max_price": 120}}
    assert json.loads(ds[0]["messages"][3]["content"])[0]["stars"] == 4
    assert ds[1]["tools"] is None and ds[1]["messages"][1]["content"] == "What is the best area to stay in Porto?"
