"""`kubetune-trainer merge`: a LoRA checkpoint merged into its base once, beside the checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kubetune.api.runconfig import Identity, ServeRunConfig, StorageMap
from kubetune_trainer import cli, merge


@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory) -> Path:
    """A LoRA adapter on the tiny model with non-zero weights (so merging changes the outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("ckpt") / "checkpoint-10"
    get_peft_model(base, lora).save_pretrained(out)
    return out


def config(tmp_path: Path, adapter: Path, base: Path) -> Path:
    cfg = ServeRunConfig(
        job=Identity(name="travel"),
        model_uri=str(adapter),
        base_model_uri=str(base),
        served_model_name="travel",
        storage=StorageMap(base_dir=str(tmp_path)),
        output_dir=str(tmp_path / "serve"),
    )
    path = tmp_path / "run-config.json"
    path.write_text(cfg.dump())
    return path


def test_merge_writes_the_merged_model_once(tmp_path: Path, adapter: Path, tiny_model: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = adapter.parent / (adapter.name + "-merged")
    run_config = str(config(tmp_path, adapter, tiny_model))
    assert cli.main(["merge", "--config", run_config, "--out", str(out)]) == 0
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert not (out / "adapter_config.json").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left

    ids = torch.tensor([[1, 5, 9, 13, 7]])
    merged = AutoModelForCausalLM.from_pretrained(out)
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        a, b, c = (m(ids).logits for m in (merged, with_adapter, plain))
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-3)

    mtime = (out / "config.json").stat().st_mtime_ns
    assert merge.merge(ServeRunConfig.load(config(tmp_path, adapter, tiny_model)), out) is False
    assert (out / "config.json").stat().st_mtime_ns == mtime


def test_a_full_model_is_not_merged(tmp_path: Path, tiny_model: Path) -> None:
    from kubetune_trainer.sources import ModelSourceError

    cfg = ServeRunConfig.load(config(tmp_path, tiny_model, tiny_model))
    with pytest.raises(ModelSourceError, match="full model, serve it as it is"):
        merge.merge(cfg, tmp_path / "out")
