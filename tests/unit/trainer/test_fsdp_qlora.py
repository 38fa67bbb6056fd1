"""QLoRA under FSDP: what the trainer decides before the model loads, checked here without a GPU.

A 4-bit model needs bitsandbytes and CUDA, so no QLoRA run trains in this suite. These tests check the
decisions that make FSDP-QLoRA work as the bitsandbytes, PEFT ("Use PEFT QLoRA and FSDP") and TRL guides set
it up: 4-bit weights stored in the compute dtype so FSDP can shard them, the rest of the model in that same
dtype, PEFT's fp32 casts left out, and the TrainingArguments' FSDP2 plugin with activation checkpointing and CPU
offload. The FSDP wiring itself is exercised for real by the CPU runs in test_fsdp.py and test_fsdp_lora.py.
"""

from __future__ import annotations

import pytest
import torch
from trainer_helpers import make_config

from kubetune_trainer import methods, sharding
from kubetune_trainer.modeling import LoadedModel, Precision, load_kwargs, prepare_quantized

BF16 = Precision(bf16=True)
QLORA_FSDP = {
    "adapter": {"type": "qlora", "r": 8, "alpha": 16},
    "resources": {"gpus": 2, "sharding": {"strategy": "fsdp"}},
}


def _spec(tmp_path, **spec):
    return make_config(tmp_path, "hf://a/b", tmp_path / "train.jsonl", **spec).spec


def test_sharded_qlora_stores_the_4bit_weights_in_the_compute_dtype(tmp_path, monkeypatch):
    """FSDP shards only floating-point tensors: under FSDP the packed 4-bit weights are stored as bf16 (the
    compute dtype), the model's other weights load in that same dtype, and each rank still loads onto its own
    GPU (LOCAL_RANK: the Trainer has not picked the rank's device yet when the model loads)."""
    monkeypatch.setenv("LOCAL_RANK", "3")
    kwargs = load_kwargs(_spec(tmp_path, **QLORA_FSDP), BF16, sharded=True, cuda=True)
    quant = kwargs["quantization_config"]
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_quant_storage == quant.bnb_4bit_compute_dtype == kwargs["dtype"] == torch.bfloat16
    assert quant.to_dict()["bnb_4bit_quant_storage"] == "bfloat16"  # what the run's config.json records
    assert kwargs["device_map"] == {"": 3}


def test_sharded_qlora_on_a_gpu_without_bf16_stores_in_fp16(tmp_path):
    kwargs = load_kwargs(_spec(tmp_path, **QLORA_FSDP), Precision(fp16=True), sharded=True, cuda=True)
    quant = kwargs["quantization_config"]
    assert quant.bnb_4bit_quant_storage == quant.bnb_4bit_compute_dtype == kwargs["dtype"] == torch.float16


def test_unsharded_qlora_keeps_the_packed_uint8_storage(tmp_path):
    """One GPU, no FSDP: bitsandbytes' default storage, as before."""
    kwargs = load_kwargs(_spec(tmp_path, adapter={"type": "qlora"}), BF16, sharded=False, cuda=True)
    assert kwargs["quantization_config"].bnb_4bit_quant_storage == torch.uint8
    assert kwargs["dtype"] == torch.bfloat16


def test_lora_and_full_fine_tuning_get_no_quantization_under_fsdp(tmp_path):
    lora = load_kwargs(_spec(tmp_path, adapter={"type": "lora"}), BF16, sharded=True, cuda=True)
    full = load_kwargs(_spec(tmp_path, adapter={"type": "none"}), BF16, sharded=True, cuda=True)
    assert "quantization_config" not in lora and "device_map" not in lora and lora["dtype"] == torch.bfloat16
    assert "quantization_config" not in full and full["dtype"] == torch.float32  # fp32 master weights


def test_sharded_qlora_model_is_not_cast_to_fp32(tiny_model):
    """PEFT's prepare_model_for_kbit_training casts every non-4-bit weight (norms, embeddings) to fp32, which
    beside bf16-stored 4-bit weights gives FSDP units of mixed dtypes; under FSDP it is skipped (as TRL does for
    sharded QLoRA) and the model stays in its storage dtype. (A bf16 model stands in for the 4-bit one.)"""
    from transformers import AutoModelForCausalLM

    sharded = prepare_quantized(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16), sharded=True)
    assert {p.dtype for p in sharded.parameters()} == {torch.bfloat16}
    single = prepare_quantized(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16), sharded=False)
    assert {p.dtype for p in single.parameters()} == {torch.float32}
    assert not any(p.requires_grad for p in single.parameters())  # PEFT froze the base for the adapter


@pytest.mark.parametrize("offload", [True, False])
def test_fsdp_qlora_training_arguments(tmp_path, tiny_model, offload):
    """The TrainingArguments of an FSDP QLoRA run: FSDP2, one unit per decoder layer, FSDP's own activation
    checkpointing instead of the Trainer's, no rank-0-only loading (accelerate cannot do it for 4-bit weights),
    sharded checkpoints, bf16, and cpuOffload as the plugin's CPU offload."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    sharding_spec = {"strategy": "fsdp", "cpuOffload": offload}
    cfg = make_config(
        tmp_path,
        tiny_model,
        tmp_path / "train.jsonl",
        **{**QLORA_FSDP, "resources": {"gpus": 2, "sharding": sharding_spec}},
    )
    fsdp = sharding.fsdp_arguments(
        model, activation_checkpointing=True, cpu_offload=cfg.spec.resources.sharding.cpu_offload
    )
    run = methods.RunSettings(
        cfg, BF16, methods.schedule(cfg.spec, False), gradient_checkpointing=False, has_eval=False, fsdp=fsdp
    )
    loaded = LoadedModel(model=None, tokenizer=None, base_model="", started_from="")  # configs need no model
    args = methods.method_for(cfg.spec).build_config(run, methods.MethodData([], None, "prompt-completion"), loaded)
    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert plugin["activation_checkpointing"] is True and not args.gradient_checkpointing
    assert plugin["cpu_ram_efficient_loading"] is False and plugin["state_dict_type"] == "SHARDED_STATE_DICT"
    assert args.bf16 is True
    assert plugin.get("cpu_offload", False) is offload


def test_cpu_offload_reaches_torch_as_an_offload_policy():
    """accelerate's plugin turns cpu_offload into torch's CPUOffloadPolicy; on CPU workers without pinning
    (pinning needs a CUDA driver), on GPUs as accelerate builds it."""
    from accelerate import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy

    args = {"fsdp_version": 2, "cpu_offload": True, "state_dict_type": "SHARDED_STATE_DICT"}
    on_cpu = FullyShardedDataParallelPlugin(**sharding.cpu_plugin_args(args)).cpu_offload
    assert isinstance(on_cpu, CPUOffloadPolicy) and on_cpu.pin_memory is False
    on_gpu = FullyShardedDataParallelPlugin(**args).cpu_offload
    assert isinstance(on_gpu, CPUOffloadPolicy) and on_gpu.pin_memory is True
    off = FullyShardedDataParallelPlugin(**sharding.cpu_plugin_args({**args, "cpu_offload": False})).cpu_offload
    assert type(off) is OffloadPolicy  # no offload
