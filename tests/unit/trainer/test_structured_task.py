"""SFT takes a from-scratch tiny model from ~0 to >= 0.9 exact match on held-out rows of a small query language."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from trainer_helpers import make_config, write_jsonl

from kubetune_trainer.train import EXIT_OK, run

pytestmark = pytest.mark.slow

TABLES = {
    "users": ["name", "age", "city"],
    "orders": ["id", "total", "status"],
    "products": ["title", "price", "stock"],
}
NUMERIC = {"users": "age", "orders": "total", "products": "price"}
OPS = {"more than": ">", "less than": "<", "exactly": "="}


def _example(rng: random.Random) -> dict[str, str]:
    table = rng.choice(sorted(TABLES))
    column = rng.choice(TABLES[table])
    op = rng.choice(sorted(OPS))
    n = rng.randint(1, 60)
    verb = rng.choice(["show", "list", "give me"])
    return {
        "prompt": f"{verb} the {column} of {table} with {NUMERIC[table]} {op} {n}\n",
        "completion": f"SELECT {column} FROM {table} WHERE {NUMERIC[table]} {OPS[op]} {n}",
    }


def _dataset(n_train: int, n_test: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Distinct requests; the held-out ones are combinations the model never saw."""
    rng, seen, rows = random.Random(seed), set(), []
    while len(rows) < n_train + n_test:
        ex = _example(rng)
        if ex["prompt"] not in seen:
            seen.add(ex["prompt"])
            rows.append(ex)
    return rows[:n_train], rows[n_train:]


def _exact_match(model_dir: Path, rows: list[dict]) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    enc = tok([r["prompt"] for r in rows], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=24, do_sample=False)
    answers = [tok.decode(o[enc["input_ids"].shape[1] :], skip_special_tokens=True).strip() for o in out]
    return sum(a == r["completion"] for a, r in zip(answers, rows, strict=True)) / len(rows)


def test_sft_learns_a_query_language_from_scratch(tmp_path):
    from kubetune_trainer.tiny import init_tiny

    train, test = _dataset(500, 40)
    train_file = write_jsonl(tmp_path / "train.jsonl", train)
    base = init_tiny(tmp_path / "base", [train_file], size="tiny", seed=0)
    assert _exact_match(base, test[:10]) == 0.0  # random weights know nothing
    cfg = make_config(
        tmp_path,
        base,
        train_file,
        adapter={"type": "none"},
        hyperparameters={
            "maxSteps": 300,
            "batchSize": 16,
            "learningRate": 4e-3,
            "warmupRatio": 0.05,
            "maxSeqLength": 64,
            "packing": False,  # ~25-token rows: short padded batches are cheaper than 64-token packs
        },
        checkpoints={"every": 300, "keep": 1},
    )
    assert run(cfg) == EXIT_OK
    assert _exact_match(Path(cfg.output_dir) / "final", test) >= 0.9
