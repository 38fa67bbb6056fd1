"""A tiny sentiment task and a tiny Llama model fine-tuned on it (seconds on CPU), shared by the evaluation tests."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

POSITIVE = ["great", "lovely", "superb", "friendly", "clean", "tasty", "perfect", "quiet"]
NEGATIVE = ["awful", "rude", "dirty", "cold", "slow", "bland", "noisy", "broken"]
NOUNS = ["food", "room", "staff", "service", "view", "breakfast", "bed", "pool"]


@dataclass
class SentimentTask:
    train: Path
    test: Path
    base: Path
    checkpoints: dict[str, Path]  # name -> full model directory, in training order


def _records() -> list[dict]:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"the {noun} was {adj}"},
                {"role": "assistant", "content": "positive" if adj in POSITIVE else "negative"},
            ]
        }
        for noun in NOUNS
        for adj in POSITIVE + NEGATIVE
    ]
    random.Random(0).shuffle(rows)
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _fine_tune(base: Path, train_rows: list[dict], out: Path, steps: int, save_at: dict[int, str]) -> dict[str, Path]:
    """Full fine-tuning on the answers only (loss masked on the prompt); saves the named steps."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)

    def encode(row: dict) -> tuple[list[int], list[int]]:
        prompt = tok.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(row["messages"][-1]["content"] + tok.eos_token, add_special_tokens=False)["input_ids"]
        return p_ids + a_ids, [-100] * len(p_ids) + a_ids

    data = [encode(r) for r in train_rows]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    saved: dict[str, Path] = {}
    for step in range(1, steps + 1):
        batch = random.Random(step).sample(data, 16)
        width = max(len(ids) for ids, _ in batch)
        pad = [width - len(ids) for ids, _ in batch]
        ids = torch.tensor([[tok.pad_token_id] * p + x for p, (x, _) in zip(pad, batch, strict=True)])
        labels = torch.tensor([[-100] * p + y for p, (_, y) in zip(pad, batch, strict=True)])
        mask = torch.tensor([[0] * p + [1] * (width - p) for p in pad])
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
        if step in save_at:
            path = out / save_at[step]
            model.save_pretrained(path)
            if save_at[step] == "final":  # the early checkpoint has no tokenizer: the base's is used
                tok.save_pretrained(path)
            saved[save_at[step]] = path
    return saved


@pytest.fixture(scope="session")
def sentiment_task(tmp_path_factory) -> SentimentTask:
    from kubetune_trainer.tiny import init_tiny

    root = tmp_path_factory.mktemp("sentiment")
    rows = _records()
    train = _write_jsonl(root / "train.jsonl", rows[24:])
    test = _write_jsonl(root / "test.jsonl", rows[:24])  # held out: combinations never trained on
    base = init_tiny(root / "base", [train], size="nano", vocab_size=300)
    checkpoints = _fine_tune(base, rows[24:], root, steps=80, save_at={15: "checkpoint-15", 80: "final"})
    return SentimentTask(train=train, test=test, base=base, checkpoints=checkpoints)
