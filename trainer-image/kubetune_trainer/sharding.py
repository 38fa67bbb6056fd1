"""Sharding the model over the processes of a run with FSDP2 (`fully_shard`), through the HF Trainer.

Nothing here shards by itself: `fsdp_arguments` fills TrainingArguments' `fsdp` / `fsdp_config`
(version 2, one `fully_shard` unit per decoder layer) and accelerate does the rest, the way the HF
Trainer, TRL and PEFT document it. This module also holds what kubetune adds around it:

- `resolve`: the run's sharding, `auto` decided from the memory plan (kubetune.api.memoryplan) for the
  model's config.json and this machine's GPU memory;
- checkpoints: the Trainer saves FSDP checkpoints as SHARDED_STATE_DICT (each rank writes its shard of
  the weights and of the optimizer state; resume reads them back), and `save_consolidated` writes beside
  them the usual HF/PEFT files (config, safetensors or adapter, tokenizer) gathered onto rank 0, so
  evaluation, merge and serving read a sharded run's checkpoints like any other;
- with KUBETUNE_DEBUG_SHARDS=DIR each rank writes the local shape of every parameter after its first step
  (kubetune_trainer.shardrecord; tests assert the sharding on the real run with it).

This module imports no training stack at its top: the launching parent of a distributed run decides the
sharding with `resolve` and must stay light (see kubetune_trainer.startchecks).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

Sharding = Literal["none", "fsdp"]
DEBUG_SHARDS_ENV = "KUBETUNE_DEBUG_SHARDS"


def resolve(requested: str, spec: Any, model_path: str | None, world_size: int) -> tuple[Sharding, str]:
    """(none | fsdp, why): `auto` shards when the memory plan says the run does not fit one device.

    Decided in the trainer at start, not in the operator: only here are the model's config.json (an hf://
    model is downloaded by the pod; a pvc:// one is mounted only here) and the GPU's real memory known.
    """
    if requested in ("none", "fsdp"):
        return requested, f"spec.resources.sharding.strategy {requested}"
    if world_size <= 1:
        return "none", "one process: nothing to shard over"
    try:
        from kubetune.api import memoryplan  # written beside this work; absent in older trees
    except ImportError:
        return "none", "no memory plan available: data parallel"
    config_file = Path(model_path or "") / "config.json"
    if not config_file.is_file():
        return "none", f"no config.json at {model_path}: data parallel"
    model_config = json.loads(config_file.read_text())
    plan = memoryplan.plan(spec, model_config, **_device_kwargs(memoryplan))
    choice: Sharding = "fsdp" if plan.recommended_sharding == "fsdp" else "none"
    return choice, f"memory plan: {getattr(plan, 'summary', lambda: plan.recommended_sharding)()}"


def _device_kwargs(memoryplan: Any) -> dict[str, Any]:
    """The GPU memory of this machine for the plan, when it takes it and there is a GPU."""
    import inspect

    import torch

    params = inspect.signature(memoryplan.plan).parameters
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        for name in ("device_memory_bytes", "gpu_memory_bytes", "device_memory"):
            if name in params:
                return {name: total}
    return {}


def layer_classes(model: Any) -> list[str]:
    """The decoder-layer classes FSDP wraps one by one (`_no_split_modules` of the transformers model)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = list(getattr(base, "_no_split_modules", None) or [])
    if not names:
        from kubetune_trainer.modeling import decoder_layers

        names = [type(decoder_layers(base)[0]).__name__]
    return names


def fsdp_arguments(model: Any, *, activation_checkpointing: bool, cpu_offload: bool) -> dict[str, Any]:
    """TrainingArguments fields for FSDP2 over `model`: fully_shard per decoder layer, sharded checkpoints.

    Activation checkpointing under FSDP is FSDP's own (the Trainer refuses both it and
    `gradient_checkpointing`), so the caller turns the Trainer's off.
    """
    return {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "transformer_layer_cls_to_wrap": layer_classes(model),
            "reshard_after_forward": True,  # ZeRO-3: parameters gathered per layer, freed after its forward
            "state_dict_type": "SHARDED_STATE_DICT",  # per-rank weights and optimizer state in checkpoints
            "activation_checkpointing": activation_checkpointing,
            "cpu_offload": cpu_offload,
            "cpu_ram_efficient_loading": False,
        },
    }


def enable_on_cpu(trainer: Any) -> bool:
    """Let the Trainer's accelerator shard on CPU workers (gloo); True when it had to be told.

    accelerate 1.15 turns an FSDP plugin into DistributedType.FSDP only for GPU-like distributed types
    (accelerate/state.py lists MULTI_GPU, MULTI_XPU, ... but not MULTI_CPU), so on CPU the HF Trainer
    would quietly fall back to DDP. PyTorch's fully_shard itself runs on CPU with gloo; this sets the
    state the way accelerate sets it on GPUs (the distributed type and the Trainer's plugin) before
    `train()` prepares the model, and accelerate's own FSDP2 path does the rest. On GPUs: nothing to do.
    """
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.utils import DistributedType

    state = trainer.accelerator.state
    if trainer.args.fsdp_plugin_args is None or state.distributed_type != DistributedType.MULTI_CPU:
        return False
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = FullyShardedDataParallelPlugin(**cpu_plugin_args(trainer.args.fsdp_plugin_args))
    trainer.is_fsdp_enabled = True
    return True


def cpu_plugin_args(plugin_args: dict[str, Any]) -> dict[str, Any]:
    """accelerate's FSDP plugin arguments for CPU workers: CPU offload without pinned host memory.

    accelerate turns `cpu_offload: True` into torch's `CPUOffloadPolicy()`, which pins the offloaded shards
    for fast copies to a GPU; pinning needs a CUDA driver, so on CPU workers fully_shard would fail with
    "Found no NVIDIA driver". There the shards are offloaded unpinned (they are in CPU memory anyway).
    """
    args = dict(plugin_args)
    if args.get("cpu_offload") is True:
        from torch.distributed.fsdp import CPUOffloadPolicy

        args["cpu_offload"] = CPUOffloadPolicy(pin_memory=False)
    return args


def is_sharded(model: Any) -> bool:
    """Whether `model` has been through fully_shard (its parameters are DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(model: Any) -> dict[str, Any]:
    """The whole state dict gathered onto rank 0's CPU (a collective: every rank calls it; others get {})."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_consolidated(model: Any, tokenizer: Any, path: str | Path, *, main: bool) -> None:
    """The usual HF/PEFT files of a sharded model in `path` (every rank calls this; rank 0 writes).

    A PEFT model writes its adapter (adapter_config.json, adapter_model.safetensors), a full model
    config.json and model.safetensors, as `save_pretrained` always does.
    """
    state = full_state_dict(model)
    if not main:
        return
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with _checkpoint_wrappers_removed(model):
        state = _without_tied_copies(model, state)
        model.save_pretrained(str(path), state_dict=state, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))


@contextmanager
def _checkpoint_wrappers_removed(model: Any) -> Iterator[None]:
    """`model` with its activation-checkpointing wrappers taken out of the module tree for a while.

    FSDP's activation checkpointing wraps each decoder layer in torch's CheckpointWrapper, so module names gain
    `_checkpoint_wrapped_module.`, while the gathered state dict's keys do not (the wrapper strips it). PEFT 0.21
    picks the adapter's entries of a given state dict by the names of its LoRA modules: with the wrappers in
    place it finds none and writes an empty adapter. No forward or collective runs while they are out.
    """
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, CheckpointWrapper):
                parent._modules[name] = child._checkpoint_wrapped_module
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            parent._modules[name] = child


def _without_tied_copies(model: Any, state: dict[str, Any]) -> dict[str, Any]:
    """The gathered state without the second name of a tied weight (lm_head tied to the embeddings).

    Gathering gives each name its own tensor, so `save_pretrained` no longer sees them share storage and
    would write both; a model saved unsharded has only the parameter's own name.
    """
    own = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    return {k: v for k, v in state.items() if k in own or not any(_same(v, state[n]) for n in own if n in state)}


def _same(a: Any, b: Any) -> bool:
    import torch

    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
