"""One TRL trainer per method, configured from the FineTuneJob spec.

- sft, pretraining: SFTTrainer (completion-only loss, padding-free packing)
- dpo: DPOTrainer (beta, loss type)
- distillation from a local teacher: GKDTrainer, generalised JSD to the teacher's token distribution
  (beta, lmbda, temperature: the softmax temperature of both models in the loss, and the sampling
  temperature of the student's own answers when lmbda > 0)
- distillation from an endpoint: the teacher labels the prompts first (teacher.py), then SFTTrainer
- rft: GRPOTrainer with rewards built from the declared graders
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

from datasets import Dataset

from kubetune.api.finetunejob import FineTuneJobSpec
from kubetune_trainer.graders import reward_functions
from kubetune_trainer.modeling import LoadedModel, Precision, TrainerConfigError

log = logging.getLogger(__name__)


@dataclass
class Schedule:
    """How often to log, save and evaluate."""

    save_strategy: str  # "steps" | "no" (epochs are handled by the checkpoint callback)
    save_steps: int
    eval_every_save: bool
    every_epochs: int | None
    logging_steps: int


def schedule(spec: FineTuneJobSpec, has_eval: bool) -> Schedule:
    cp = spec.checkpoints
    if cp.unit == "steps":
        return Schedule("steps", cp.every, has_eval, None, max(1, min(10, cp.every)))
    return Schedule("no", 0, has_eval, cp.every, 10)


def common_args(
    spec: FineTuneJobSpec,
    output_dir: str,
    precision: Precision,
    sched: Schedule,
    *,
    gradient_checkpointing: bool,
    has_eval: bool,
) -> dict[str, Any]:
    """TrainingArguments shared by every method."""
    import torch

    hp = spec.hyperparameters
    args: dict[str, Any] = {
        "output_dir": output_dir,
        "per_device_train_batch_size": hp.batch_size,
        "per_device_eval_batch_size": hp.batch_size,
        "gradient_accumulation_steps": hp.gradient_accumulation_steps,
        "learning_rate": hp.learning_rate,
        "lr_scheduler_type": hp.lr_scheduler,
        "warmup_steps": hp.warmup_ratio,  # a float below 1 is a fraction of the total steps
        "weight_decay": hp.weight_decay,
        "max_grad_norm": hp.max_grad_norm,
        "num_train_epochs": hp.epochs,
        "max_steps": hp.max_steps or -1,
        "seed": hp.seed,
        "data_seed": hp.seed,
        "bf16": precision.bf16,
        "fp16": precision.fp16,
        "activation_checkpointing": gradient_checkpointing,
        "logging_steps": sched.logging_steps,
        "logging_first_step": True,
        "save_strategy": sched.save_strategy,
        "save_total_limit": None,  # retention is ours: best K by selectBy plus the latest
        "eval_strategy": sched.save_strategy if (has_eval and sched.save_strategy == "steps") else "no",
        "report_to": "none",
        "include_num_input_tokens_seen": "non_padding",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "use_cpu": not torch.cuda.is_available(),
    }
    if sched.save_strategy == "steps":
        args["save_steps"] = sched.save_steps
        if has_eval:
            args["eval_steps"] = sched.save_steps
    if gradient_checkpointing:
        args["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    return args


def _messages_to_prompt_completion(rec: dict[str, Any]) -> dict[str, Any]:
    """A chat split at its last assistant turn: conversational prompt-completion (loss on that answer)."""
    msgs = rec["messages"]
    last = max(i for i, m in enumerate(msgs) if m.get("role") == "assistant")
    return {"prompt": msgs[:last], "completion": [msgs[last]]}


def chat_loss_mode(tokenizer: Any) -> str:
    """`assistant` when the chat template can mark assistant turns (TRL patches known ones), else `split`."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        get_training_chat_template(tokenizer)
        return "assistant"
    except Exception:  # TRL raises for templates it cannot patch; the fallback is always correct
        return "split"


def sft_dataset(records: list[dict[str, Any]], fmt: str, spec: FineTuneJobSpec, tokenizer: Any) -> tuple[Dataset, dict]:
    """(dataset, SFTConfig overrides) for chat, prompt-completion or text data."""
    hp = spec.hyperparameters
    if fmt == "chat":
        if not hp.completion_only_loss:
            return Dataset.from_list(records), {"assistant_only_loss": False}
        if chat_loss_mode(tokenizer) == "assistant":
            return Dataset.from_list(records), {"assistant_only_loss": True}
        rows = [_messages_to_prompt_completion(r) for r in records]
        return Dataset.from_list(rows), {"completion_only_loss": True}
    if fmt == "prompt-completion":
        return Dataset.from_list(records), {"completion_only_loss": hp.completion_only_loss}
    return Dataset.from_list([{"text": r["text"]} for r in records]), {"completion_only_loss": False}


def build_sft(
    spec: FineTuneJobSpec,
    loaded: LoadedModel,
    train: list[dict],
    evals: list[dict] | None,
    fmt: str,
    args: dict[str, Any],
    callbacks: list,
):
    from trl import SFTConfig, SFTTrainer

    hp = spec.hyperparameters
    train_ds, extra = sft_dataset(train, fmt, spec, loaded.tokenizer)
    eval_ds = sft_dataset(evals, fmt, spec, loaded.tokenizer)[0] if evals else None
    config = SFTConfig(
        **args,
        **extra,
        max_length=hp.max_seq_length,
        packing=hp.packing,
        packing_strategy="bfd",  # best-fit decreasing, padding-free: no token is wasted on padding
        padding_free=hp.packing,
        eval_packing=False,
        dataset_num_proc=None,
    )
    return SFTTrainer(
        model=loaded.model,
        args=config,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=loaded.tokenizer,
        peft_config=loaded.peft_config,
        callbacks=callbacks,
    )


def build_dpo(spec, loaded, train, evals, fmt, args, callbacks):
    from trl import DPOConfig, DPOTrainer

    dpo = spec.dpo
    config = DPOConfig(
        **args,
        beta=dpo.beta if dpo else 0.1,
        loss_type=[dpo.loss_type if dpo else "sigmoid"],
        label_smoothing=dpo.label_smoothing if dpo else 0.0,
        max_length=spec.hyperparameters.max_seq_length,
    )
    return DPOTrainer(
        model=loaded.model,
        args=config,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(evals) if evals else None,
        processing_class=loaded.tokenizer,
        peft_config=loaded.peft_config,
        callbacks=callbacks,
    )


def _as_messages(rec: dict[str, Any]) -> dict[str, Any]:
    if "messages" in rec:
        return {"messages": rec["messages"]}
    prompt, completion = rec["prompt"], rec["completion"]
    p = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    c = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
    return {"messages": [*p, *c]}


@functools.cache
def gkd_trainer_class() -> type:
    """TRL's GKDTrainer with `temperature` applied in the distillation loss.

    TRL's `GKDTrainer.compute_loss` calls `generalized_jsd_loss` without a temperature, so the divergence
    is always taken at temperature 1 and `GKDConfig.temperature` only sets the sampling temperature of
    on-policy answers (lmbda > 0): with the default lmbda 0 it changed nothing. Here the loss gets it:
    the student's and the teacher's logits are divided by it before their softmax (no T^2 factor, as in
    TRL's generalized_jsd_loss).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the experimental-module notice
        from trl.experimental.gkd import GKDTrainer

    class TemperatureGKDTrainer(GKDTrainer):
        def generalized_jsd_loss(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("temperature", self.temperature)
            return GKDTrainer.generalized_jsd_loss(*args, **kwargs)

    return TemperatureGKDTrainer


def build_gkd(spec, loaded, train, evals, fmt, args, callbacks, *, teacher_model):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the experimental-module notice
        from trl.experimental.gkd import GKDConfig

    d = spec.distillation
    config = GKDConfig(
        **args,
        max_length=spec.hyperparameters.max_seq_length,
        temperature=d.temperature,
        beta=d.beta,
        lmbda=d.lmbda,
        max_new_tokens=d.max_new_tokens,
    )
    return gkd_trainer_class()(
        model=loaded.model,
        teacher_model=teacher_model,
        args=config,
        train_dataset=Dataset.from_list([_as_messages(r) for r in train]),
        eval_dataset=Dataset.from_list([_as_messages(r) for r in evals]) if evals else None,
        processing_class=loaded.tokenizer,
        peft_config=loaded.peft_config,
        callbacks=callbacks,
    )


def _rft_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GRPO rows: a prompt (conversational) plus every reference field the graders may read."""
    rows = []
    for r in records:
        if "messages" in r:
            msgs = r["messages"]
            last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=len(msgs))
            row = {"prompt": msgs[:last]}
            if last < len(msgs):
                row["answer"] = msgs[last]["content"]
            rows.append(row)
            continue
        row = dict(r)
        if isinstance(row.get("prompt"), str):
            row["prompt"] = [{"role": "user", "content": row["prompt"]}]
        if "completion" in row and not isinstance(row["completion"], str):
            row["completion"] = "".join(m.get("content", "") for m in row["completion"])
        if "completion" in row:
            row.setdefault("answer", row["completion"])  # the graders' default reference field, as for chat rows
        rows.append(row)
    return rows


def build_grpo(spec, loaded, train, evals, fmt, args, callbacks):
    from trl import GRPOConfig, GRPOTrainer

    rft = spec.rft
    hp = spec.hyperparameters
    per_step = hp.batch_size * hp.gradient_accumulation_steps
    if per_step % rft.num_generations:
        raise TrainerConfigError(
            f"spec.rft.numGenerations ({rft.num_generations}) must divide batchSize x gradientAccumulationSteps "
            f"({per_step}): each batch holds whole groups of completions of one prompt"
        )
    funcs, weights = reward_functions(rft.graders)
    args = {**args, "eval_strategy": "no"}
    args.pop("eval_steps", None)
    config = GRPOConfig(
        **args,
        num_generations=rft.num_generations,
        max_completion_length=rft.max_completion_length,
        temperature=rft.temperature,
        beta=rft.beta,
        reward_weights=weights,
        log_completions=False,
    )
    return GRPOTrainer(
        model=loaded.model,
        reward_funcs=funcs,
        args=config,
        train_dataset=Dataset.from_list(_rft_rows(train)),
        processing_class=loaded.tokenizer,
        peft_config=loaded.peft_config,
        callbacks=callbacks,
    )


def estimated_steps(n_examples: int, spec: FineTuneJobSpec, world_size: int = 1) -> int:
    """Optimizer steps for unpacked data (packing makes fewer); for messages before training starts."""
    hp = spec.hyperparameters
    if hp.max_steps:
        return hp.max_steps
    per_step = hp.batch_size * hp.gradient_accumulation_steps * world_size
    return max(1, math.ceil(n_examples / per_step) * math.ceil(hp.epochs))
