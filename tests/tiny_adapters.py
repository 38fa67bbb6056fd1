"""A tiny PEFT LoRA adapter of a tiny base model, for the tests of multi-adapter serving and its sync."""

from __future__ import annotations

from pathlib import Path


def lora_adapter(base: Path, out: Path, seed: int = 1) -> Path:
    """A rank-8 LoRA adapter on every linear layer of `base`, with random (not zero) weights drawn from `seed`, so
    that each adapter answers differently from the base and from the others; saved to `out`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False),
    )
    model.save_pretrained(str(out))
    return out
