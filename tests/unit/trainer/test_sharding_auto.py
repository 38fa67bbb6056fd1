"""`resources.sharding.strategy: auto` is decided by the trainer at start from the model's config.json through
the memory plan: a full fine-tune of a 32B-shaped model over 8 GPUs is sharded, the nano test model is not."""

from __future__ import annotations

import json

from trainer_helpers import make_config

from kubetune_trainer.sharding import resolve

QWEN_32B = {
    "model_type": "qwen2",
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 5120,
    "intermediate_size": 27648,
    "num_hidden_layers": 64,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def _spec(tmp_path, strategy: str = "auto"):
    cfg = make_config(
        tmp_path,
        "hf://Qwen/Qwen2.5-32B",
        tmp_path / "train.jsonl",
        adapter={"type": "none"},
        resources={"gpus": 8, "sharding": {"strategy": strategy}},
    )
    return cfg.spec


def test_auto_shards_a_model_that_does_not_fit_one_gpu(tmp_path):
    model = tmp_path / "qwen32b"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(QWEN_32B))
    choice, why = resolve("auto", _spec(tmp_path), str(model), world_size=8)
    assert choice == "fsdp", why


def test_auto_keeps_a_small_model_data_parallel(tmp_path, tiny_model):
    choice, why = resolve("auto", _spec(tmp_path), str(tiny_model), world_size=8)
    assert choice == "none", why


def test_an_explicit_strategy_is_kept_and_one_process_is_never_sharded_by_auto(tmp_path, tiny_model):
    assert resolve("fsdp", _spec(tmp_path, "fsdp"), None, world_size=1)[0] == "fsdp"
    assert resolve("auto", _spec(tmp_path), str(tiny_model), world_size=1)[0] == "none"
