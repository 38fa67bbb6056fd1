"""The exported model card (README.md): Hub front matter that parses, and what the run was."""

from __future__ import annotations

import yaml
from huggingface_hub import ModelCard

from kubetune_trainer.modelcard import model_card

META = {
    "job": "travel-assistant",
    "method": "dpo",
    "base_model": "hf://Qwen/Qwen2.5-0.5B-Instruct@main",
    "step": 40,
    "epoch": 2.0,
    "dataset": {
        "train": "s3://team/data/train.jsonl",
        "validation": "s3://team/data/validation.jsonl",
        "format": "preference",
        "hash": "sha256:" + "ab" * 32,
    },
    "adapter": {"type": "lora", "r": 8, "alpha": 16, "peft": {"r": 8}},
    "metrics": {"eval_loss": 0.4321, "train_loss": 0.9},
}
HYPERPARAMETERS = {"learningRate": 5e-05, "epochs": 2, "batchSize": 4, "maxSeqLength": 1024}


def _front(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_the_card_lists_base_model_data_hash_method_and_hyperparameters():
    card = model_card(META, kind="adapter", checkpoint="checkpoint-40", hyperparameters=HYPERPARAMETERS)
    front = _front(card)
    assert front["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"  # what the Hub links to: no hf://, no revision
    assert front["library_name"] == "peft" and {"kubetune", "dpo", "lora"} <= set(front["tags"])
    body = card.split("---\n", 2)[2]
    assert "`hf://Qwen/Qwen2.5-0.5B-Instruct@main`" in body  # the exact base, revision included
    assert "sha256:" + "ab" * 32 in body and "s3://team/data/train.jsonl" in body
    assert "s3://team/data/validation.jsonl" in body and "method `dpo`" in body
    assert "| learningRate | 5e-05 |" in body and "| maxSeqLength | 1024 |" in body
    assert "| eval_loss | 0.4321 |" in body
    assert "peft" not in body.split("Adapter:")[1].splitlines()[0]  # the spec's adapter, not PEFT's dump


def test_a_base_model_off_the_hub_is_named_in_the_text_only():
    meta = {**META, "base_model": "pvc://models/qwen"}
    card = model_card(meta, kind="merged", checkpoint="final", hyperparameters={})
    assert "base_model" not in _front(card) and "`pvc://models/qwen`" in card
    assert _front(card)["library_name"] == "transformers"


def test_evaluation_results_are_a_model_index_the_hub_reads():
    card = model_card(
        META,
        kind="adapter",
        checkpoint="checkpoint-40",
        hyperparameters=HYPERPARAMETERS,
        evaluation={"exact_match": 0.875, "bleu": 0.31, "perplexity": None},
    )
    results = ModelCard(card).data.eval_results  # huggingface_hub's own parser (the Hub refuses what it refuses)
    assert {(r.metric_type, r.metric_value) for r in results} == {("exact_match", 0.875), ("bleu", 0.31)}
    assert {r.dataset_name for r in results} == {"s3://team/data/validation.jsonl"}
    assert "| exact_match | 0.875 |" in card and "perplexity" not in card  # no score: not a result


def test_evaluation_results_name_the_dataset_they_were_measured_on():
    card = model_card(
        META,
        kind="full",
        checkpoint="final",
        hyperparameters={},
        evaluation={"accuracy": 1.0},
        evaluation_dataset="pvc://evals/holdout.jsonl",
    )
    (result,) = ModelCard(card).data.eval_results
    assert (result.dataset_type, result.metric_value) == ("pvc://evals/holdout.jsonl", 1.0)
