"""What the trainer checks of a spec when it starts, before any worker is launched or any model is loaded.

This module imports nothing of the training stack (torch, transformers, TRL, PEFT, datasets): the process
that only launches the workers of a distributed run (train.run -> accelerate launch) checks the spec with it
and stays light, so each worker's start is not preceded by seconds of imports that the parent never uses.
"""

from __future__ import annotations

import importlib.util

from kubetune.api.finetunejob import FineTuneJobSpec


class TrainerConfigError(ValueError):
    """A spec that cannot run on this machine; the message names the field and what to change."""


def check_machine(spec: FineTuneJobSpec) -> None:
    """What the spec needs of this machine, checked when the trainer starts (before any model is loaded)."""
    if spec.adapter.type != "qlora":
        return
    import torch  # only for QLoRA: the GPU check

    if not torch.cuda.is_available():
        raise TrainerConfigError(
            "spec.adapter.type qlora loads the base model in 4 bits with bitsandbytes, which needs a CUDA GPU and "
            "this machine has none: set spec.resources.gpus to 1 or more, or use spec.adapter.type lora"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TrainerConfigError(
            "spec.adapter.type qlora needs the bitsandbytes package in the trainer image (pip install bitsandbytes)"
        )


def check_rft_groups(spec: FineTuneJobSpec, processes: int) -> None:
    """TRL's rule for GRPO: the completions generated per optimizer step, per-device batch x processes x
    gradient accumulation (GRPOConfig.generation_batch_size), hold whole groups of numGenerations."""
    if spec.method != "rft" or spec.rft is None:
        return
    hp, n = spec.hyperparameters, spec.rft.num_generations
    per_step = hp.batch_size * processes * hp.gradient_accumulation_steps
    if per_step % n:
        raise TrainerConfigError(
            f"spec.rft.numGenerations ({n}) must divide batchSize x processes x gradientAccumulationSteps "
            f"({hp.batch_size} x {processes} x {hp.gradient_accumulation_steps} = {per_step}): each step generates "
            f"whole groups of completions of one prompt; change spec.hyperparameters.batchSize or "
            f"spec.rft.numGenerations"
        )
