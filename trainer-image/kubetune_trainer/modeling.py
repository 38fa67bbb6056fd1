"""Load the model to train: base, adapter (LoRA, QLoRA), full fine-tuning with frozen layers, continual runs.

A `base_model_uri` may be a model or an earlier job's checkpoint: a merged model, or a LoRA adapter
(`adapter_config.json`). An adapter is trained further as the same adapter when this run uses
LoRA/QLoRA (so the result is still one adapter over the original base), and merged into its base
for full fine-tuning.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kubetune.api.checkpoints import read_meta
from kubetune.api.finetunejob import FineTuneJobSpec
from kubetune.api.runconfig import StorageMap
from kubetune_trainer.sources import pinned_uri, resolve_model
from kubetune_trainer.startchecks import TrainerConfigError, check_machine

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class Precision:
    bf16: bool = False
    fp16: bool = False

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"


def choose_precision(requested: str, cuda: bool | None = None) -> Precision:
    """bf16 where the GPU supports it, fp16 on older GPUs, fp32 on CPU (`auto`), or what was asked."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if requested == "fp32" or (requested == "auto" and not cuda):
        return Precision()
    if requested == "bf16" or (requested == "auto" and torch.cuda.is_bf16_supported()):
        return Precision(bf16=True)
    return Precision(fp16=True)


def use_gradient_checkpointing(setting: str, trainable_bytes: float, weight_bytes: float) -> bool:
    """`auto`: on when weights, gradients and optimizer state would fill over 40% of the GPU."""
    if setting != "auto":
        return setting == "on"
    if not torch.cuda.is_available():
        return False
    total = torch.cuda.get_device_properties(0).total_memory
    return weight_bytes + trainable_bytes * 3 > 0.4 * total


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    base_model: str  # the URI an adapter applies to (for adapter runs), else the URI training started from
    started_from: str
    peft_config: Any = None  # a new adapter to add (None: full fine-tuning or continuing an adapter)
    notes: list[str] = field(default_factory=list)


def _is_adapter(path: str) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def _adapter_base_uri(path: str) -> str:
    """The base model of an adapter checkpoint: the URI its kubetune.json recorded, else PEFT's path."""
    base = (read_meta(Path(path)) or {}).get("base_model")
    if base:
        return base
    base = json.loads((Path(path) / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise TrainerConfigError(f"{path}: a LoRA adapter without a recorded base model")
    return base


def lora_config(spec: FineTuneJobSpec):
    from peft import LoraConfig

    a = spec.adapter
    targets: str | list[str] = (
        "all-linear" if a.target_modules == "all-linear" else [m.strip() for m in a.target_modules.split(",")]
    )
    return LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=a.dropout, target_modules=targets, task_type="CAUSAL_LM")


def check_targets(spec: FineTuneJobSpec, model: Any) -> None:
    """LoRA `targetModules` that name no module of the loaded model, or its output layer: a kubetune error
    with the names that exist, instead of PEFT's or TRL's traceback later."""
    from kubetune.api.adapters import target_problem

    named = list(model.named_modules())
    linear = [n for n, m in named if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"]
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    output_name = next((n for n, m in named if output is not None and m is output), None)
    problem = target_problem(spec.adapter.target_modules, [n for n, _ in named], linear, output_name)
    if problem:
        raise TrainerConfigError(problem)


def quantization_config(precision: Precision, *, sharded: bool = False):
    """The BitsAndBytesConfig of a QLoRA run: NF4 with double quantization, computing in bf16 (fp16 on GPUs
    without bf16).

    Sharded (FSDP): the packed 4-bit weights are stored in the compute dtype (`bnb_4bit_quant_storage`)
    instead of uint8, because FSDP shards only floating-point tensors; the model is loaded in that same dtype
    (`load_kwargs`), so each FSDP unit holds one dtype. This is the FSDP-QLoRA setup of the bitsandbytes, PEFT
    ("Use PEFT QLoRA and FSDP") and TRL guides; accelerate's FSDP2 leaves uint8-stored 4-bit weights unsharded.
    """
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if precision.bf16 else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=compute if sharded else None,  # None: transformers' default, uint8
    )


def load_kwargs(spec: FineTuneJobSpec, precision: Precision, *, sharded: bool, cuda: bool) -> dict[str, Any]:
    """`from_pretrained` keyword arguments for the model this run trains (`sharded`: FSDP)."""
    adapter = spec.adapter.type
    quant = quantization_config(precision, sharded=sharded) if adapter == "qlora" else None
    if quant is not None and sharded:
        dtype = quant.bnb_4bit_quant_storage  # norms and embeddings in the dtype the 4-bit weights are stored in
    else:
        # LoRA on a GPU keeps the frozen base in half precision; full fine-tuning keeps fp32 master weights.
        dtype = torch.bfloat16 if (cuda and adapter != "none" and precision.bf16) else torch.float32
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": _attn_implementation(),
        "trust_remote_code": spec.base_model.trust_remote_code,
    }
    if quant is not None:
        kwargs["quantization_config"] = quant
        # Also under FSDP2: each rank quantizes the whole model on its own GPU, then accelerate shards the 4-bit
        # weights. (PEFT's FSDP-QLoRA guide loads without a device map for FSDP1's cpu_ram_efficient_loading,
        # where rank 0 alone loads on CPU; accelerate 1.15's FSDP2 turns that loading off for 4-bit weights, and
        # without a device map bitsandbytes would put every rank's copy on the first GPU.)
        kwargs["device_map"] = quantized_device_map()
    return kwargs


def prepare_quantized(model: Any, *, sharded: bool) -> Any:
    """A 4-bit model made ready for LoRA training.

    Unsharded: PEFT's `prepare_model_for_kbit_training` (base frozen, norms and embeddings cast to fp32).
    Sharded (FSDP): left as loaded, in the storage dtype, as TRL does for sharded QLoRA: fp32 norms beside bf16
    4-bit weights would give FSDP units of mixed dtypes; the LoRA adapter freezes the base when it is added.
    """
    if sharded:
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def quantized_device_map() -> dict[str, int]:
    """Where a 4-bit model goes: this process's GPU (`LOCAL_RANK` under accelerate/torchrun).

    The model loads before the Trainer sets each worker's CUDA device, so `torch.cuda.current_device()`
    would still be 0 on every rank and put all the copies on the first GPU.
    """
    return {"": int(os.environ.get("LOCAL_RANK", "0"))}


def _attn_implementation() -> str:
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def decoder_layers(model: Any) -> Any:
    """The list of transformer blocks (model.model.layers for Llama/Qwen, transformer.h for GPT-2 ...)."""
    best = None
    for name, module in model.named_modules():
        is_blocks = isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks")
        if is_blocks and (best is None or len(module) > len(best)):
            best = module
    if best is None:
        raise TrainerConfigError("spec.freezeLayers: this model has no recognisable list of decoder layers")
    return best


def freeze_layers(model: Any, n: int) -> int:
    """Freeze the first `n` decoder layers; returns how many parameters were frozen."""
    if n <= 0:
        return 0
    layers = decoder_layers(model)
    if n >= len(layers):
        raise TrainerConfigError(
            f"spec.freezeLayers is {n} but the model has {len(layers)} layers: use at most {len(layers) - 1}"
        )
    frozen = 0
    for layer in layers[:n]:
        for p in layer.parameters():
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen


def load_tokenizer(path: str, fallback: str | None = None):
    from transformers import AutoTokenizer

    tok_dir = path if any((Path(path) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")) else None
    tok = AutoTokenizer.from_pretrained(tok_dir or fallback or path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    spec: FineTuneJobSpec,
    base_model_uri: str,
    storage: StorageMap,
    precision: Precision,
    *,
    token_env: str | None = "HF_TOKEN",
    sharded: bool = False,
) -> LoadedModel:
    """The model and tokenizer for this run, with the adapter the spec asks for (`sharded`: for FSDP)."""
    from transformers import AutoModelForCausalLM

    adapter = spec.adapter.type
    if adapter == "qlora":
        check_machine(spec)
    revision = spec.base_model.revision
    started = resolve_model(base_model_uri, storage, token_env=token_env, revision=revision)
    kwargs = load_kwargs(spec, precision, sharded=sharded, cuda=torch.cuda.is_available())
    quant = kwargs.get("quantization_config")
    notes: list[str] = []

    if _is_adapter(started):
        from peft import PeftModel

        base_uri = _adapter_base_uri(started)
        base_path = resolve_model(base_uri, storage, token_env=token_env)
        base = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
        tokenizer = load_tokenizer(started, fallback=base_path)
        if adapter == "none":
            model = PeftModel.from_pretrained(base, started).merge_and_unload()
            notes.append(f"merged the adapter {base_model_uri} into {base_uri} for full fine-tuning")
            loaded = LoadedModel(model, tokenizer, base_model=base_model_uri, started_from=base_model_uri)
        else:
            if quant is not None:
                base = prepare_quantized(base, sharded=sharded)
            model = PeftModel.from_pretrained(base, started, is_trainable=True)
            notes.append(f"continuing the adapter of {base_model_uri} (its rank and targets are kept)")
            loaded = LoadedModel(model, tokenizer, base_model=base_uri, started_from=base_model_uri)
    else:
        model = AutoModelForCausalLM.from_pretrained(started, **kwargs)
        tokenizer = load_tokenizer(started)
        if quant is not None:
            model = prepare_quantized(model, sharded=sharded)
        peft_config = lora_config(spec) if adapter in ("lora", "qlora") else None
        if peft_config is not None:
            check_targets(spec, model)
        # the revision travels with the URI: continual runs, merges and evaluations load this same base
        loaded = LoadedModel(
            model,
            tokenizer,
            base_model=pinned_uri(base_model_uri, revision),
            started_from=base_model_uri,
            peft_config=peft_config,
        )

    if adapter == "none" and spec.freeze_layers:
        frozen = freeze_layers(loaded.model, spec.freeze_layers)
        notes.append(f"froze the first {spec.freeze_layers} layers ({frozen:,} parameters)")
    loaded.notes = notes
    return loaded
