"""One TRL trainer per method, configured from the FineTuneJob spec: a registry of typed methods.

- sft, pretraining: SFTTrainer (completion-only loss, padding-free packing)
- dpo: DPOTrainer (beta, loss type, label smoothing)
- distillation from a local teacher: GKDTrainer, generalised JSD to the teacher's token distribution
  (beta, lmbda, temperature: the softmax temperature of both models in the loss, and the sampling
  temperature of the student's own answers when lmbda > 0)
- distillation from an endpoint: the teacher labels the prompts first (teacher.py), then SFTTrainer
- rft: GRPOTrainer with rewards built from the declared graders

Each method is a small class with `build_config` (the TRL config: `training_config` sets the fields
every method shares, the method its own) and `build_trainer`; `method_for(spec)` picks one.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from datasets import Dataset

from kubetune.api.finetunejob import DistillationSpec, FineTuneJobSpec, RftSpec
from kubetune.api.runconfig import TrainRunConfig
from kubetune_trainer import tracking
from kubetune_trainer.graders import reward_functions
from kubetune_trainer.modeling import LoadedModel, Precision
from kubetune_trainer.startchecks import TrainerConfigError, check_rft_groups

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments
    from trl import DPOConfig, GRPOConfig, SFTConfig  # pyright: ignore[reportPrivateImportUsage]  # trl's documented import; its lazy __init__ re-exports without __all__
    from trl.experimental.gkd import GKDConfig

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


def liger_available() -> bool:
    """Liger's fused Triton kernels (RMSNorm, SwiGLU, ...) can run: a CUDA GPU and liger-kernel installed."""
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


@dataclass(frozen=True)
class RunSettings:
    """What the TRL config of a run is built from, besides the method's own spec section."""

    cfg: TrainRunConfig
    precision: Precision
    schedule: Schedule
    gradient_checkpointing: bool
    has_eval: bool  # validation data that gives an eval loss
    liger: bool = False  # transformers applies Liger's kernels to the model (TrainingArguments.use_liger_kernel)
    fsdp: dict[str, Any] | None = None  # TrainingArguments' fsdp and fsdp_config (kubetune_trainer.sharding)
    processes: int = 1  # training processes of the run, over all nodes (WORLD_SIZE)

    @property
    def spec(self) -> FineTuneJobSpec:
        return self.cfg.spec


@dataclass
class MethodData:
    """The examples a method trains on, in the format it reads them in."""

    train: list[dict[str, Any]]
    evals: list[dict[str, Any]] | None
    fmt: str


ConfigT = TypeVar("ConfigT", bound="TrainingArguments")


def training_config(config_class: type[ConfigT], run: RunSettings, **method_fields: Any) -> ConfigT:
    """`config_class` (SFTConfig, DPOConfig, GKDConfig, GRPOConfig) with the TrainingArguments every method
    shares set from the spec, plus the method's own `method_fields`."""
    import torch

    hp, sched = run.spec.hyperparameters, run.schedule
    by_steps = sched.save_strategy == "steps"
    evaluates = run.has_eval and by_steps  # epochs: the checkpoint callback asks for the evaluation
    return config_class(
        output_dir=run.cfg.output_dir,
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        learning_rate=hp.learning_rate,
        lr_scheduler_type=hp.lr_scheduler,
        warmup_steps=hp.warmup_ratio,  # a float below 1 is a fraction of the total steps
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm,
        num_train_epochs=hp.epochs,
        max_steps=hp.max_steps or -1,
        seed=hp.seed,
        data_seed=hp.seed,
        bf16=run.precision.bf16,
        fp16=run.precision.fp16,
        activation_checkpointing=run.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if run.gradient_checkpointing else None,
        use_liger_kernel=run.liger,
        logging_steps=sched.logging_steps,
        logging_first_step=True,
        save_strategy=sched.save_strategy,
        save_steps=sched.save_steps if by_steps else 500,  # 500: TrainingArguments' default, unused without steps
        save_total_limit=None,  # retention is ours: best K by selectBy plus the latest
        eval_strategy="steps" if evaluates else "no",
        eval_steps=sched.save_steps if evaluates else None,
        report_to=tracking.report_to(run.spec.tracking) or "none",
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        # CPU workers (tests, CPU runs of the distributed path) join with gloo
        ddp_backend="gloo" if run.processes > 1 and not torch.cuda.is_available() else None,
        **(run.fsdp or {}),
        **method_fields,
    )


class Method(Protocol):
    """How one kind of training is set up: its data, its TRL config, its TRL trainer."""

    name: ClassVar[str]  # the key in METHODS
    trains_as: ClassVar[str]  # the spec.method whose prompt formatting the run records
    evaluates: ClassVar[bool]  # whether validation data gives an eval loss

    def prepare(self, cfg: TrainRunConfig, data: MethodData) -> MethodData:
        """The examples as the trainer reads them (e.g. answered by an endpoint teacher)."""
        ...

    def build_config(self, run: RunSettings, data: MethodData, loaded: LoadedModel) -> TrainingArguments: ...

    def build_trainer(
        self, run: RunSettings, config: Any, loaded: LoadedModel, data: MethodData, callbacks: list
    ) -> Trainer: ...


# --- sft, pretraining ----------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class SftLoss:
    """Which tokens SFT computes the loss on, for one data format."""

    assistant_only_loss: bool = False  # chat: only the assistant turns (the chat template marks them)
    completion_only_loss: bool | None = None  # prompt-completion: only the completion (None: TRL's default)
    split_chats: bool = False  # chat whose template cannot mark turns: split at the last assistant turn


def sft_loss(fmt: str, spec: FineTuneJobSpec, tokenizer: Any) -> SftLoss:
    """The loss of chat, prompt-completion or text data under spec.hyperparameters.completionOnlyLoss."""
    completion_only = spec.hyperparameters.completion_only_loss
    if fmt == "chat":
        if not completion_only:
            return SftLoss(assistant_only_loss=False)
        if chat_loss_mode(tokenizer) == "assistant":
            return SftLoss(assistant_only_loss=True)
        return SftLoss(completion_only_loss=True, split_chats=True)
    if fmt == "prompt-completion":
        return SftLoss(completion_only_loss=completion_only)
    return SftLoss(completion_only_loss=False)


def sft_dataset(records: list[dict[str, Any]], fmt: str, loss: SftLoss) -> Dataset:
    if fmt == "chat":
        return Dataset.from_list([_messages_to_prompt_completion(r) for r in records] if loss.split_chats else records)
    if fmt == "prompt-completion":
        return Dataset.from_list(records)
    return Dataset.from_list([{"text": r["text"]} for r in records])


class Sft:
    name: ClassVar[str] = "sft"
    trains_as: ClassVar[str] = "sft"
    evaluates: ClassVar[bool] = True

    def prepare(self, cfg: TrainRunConfig, data: MethodData) -> MethodData:
        return data

    def build_config(self, run: RunSettings, data: MethodData, loaded: LoadedModel) -> SFTConfig:
        from trl import SFTConfig  # pyright: ignore[reportPrivateImportUsage]  # trl's documented import; its lazy __init__ re-exports without __all__

        hp = run.spec.hyperparameters
        loss = sft_loss(data.fmt, run.spec, loaded.tokenizer)
        return training_config(
            SFTConfig,
            run,
            assistant_only_loss=loss.assistant_only_loss,
            completion_only_loss=loss.completion_only_loss,
            max_length=hp.max_seq_length,
            packing=hp.packing,
            packing_strategy="bfd",  # best-fit decreasing, padding-free: no token is wasted on padding
            padding_free=hp.packing,
            eval_packing=False,
            dataset_num_proc=None,
        )

    def build_trainer(
        self, run: RunSettings, config: SFTConfig, loaded: LoadedModel, data: MethodData, callbacks: list
    ) -> Trainer:
        from trl import SFTTrainer  # pyright: ignore[reportPrivateImportUsage]  # trl's documented import; its lazy __init__ re-exports without __all__

        loss = sft_loss(data.fmt, run.spec, loaded.tokenizer)
        return SFTTrainer(
            model=loaded.model,
            args=config,
            train_dataset=sft_dataset(data.train, data.fmt, loss),
            eval_dataset=sft_dataset(data.evals, data.fmt, loss) if data.evals else None,
            processing_class=loaded.tokenizer,
            peft_config=loaded.peft_config,
            callbacks=callbacks,
        )


class Pretraining(Sft):
    name: ClassVar[str] = "pretraining"
    trains_as: ClassVar[str] = "pretraining"


# --- dpo -----------------------------------------------------------------------------------------------------


class Dpo:
    name: ClassVar[str] = "dpo"
    trains_as: ClassVar[str] = "dpo"
    evaluates: ClassVar[bool] = True

    def prepare(self, cfg: TrainRunConfig, data: MethodData) -> MethodData:
        return data

    def build_config(self, run: RunSettings, data: MethodData, loaded: LoadedModel) -> DPOConfig:
        from trl import DPOConfig  # pyright: ignore[reportPrivateImportUsage]  # trl's documented import; its lazy __init__ re-exports without __all__

        dpo = run.spec.dpo
        return training_config(
            DPOConfig,
            run,
            beta=dpo.beta if dpo else 0.1,
            loss_type=[dpo.loss_type if dpo else "sigmoid"],
            label_smoothing=dpo.label_smoothing if dpo else 0.0,
            max_length=run.spec.hyperparameters.max_seq_length,
        )

    def build_trainer(
        self, run: RunSettings, config: DPOConfig, loaded: LoadedModel, data: MethodData, callbacks: list
    ) -> Trainer:
        from trl import DPOTrainer  # pyright: ignore[reportPrivateImportUsage]  # trl's documented import; its lazy __init__ re-exports without __all__

        return DPOTrainer(
            model=loaded.model,
            args=config,
            train_dataset=Dataset.from_list(data.train),
            eval_dataset=Dataset.from_list(data.evals) if data.evals else None,
            processing_class=loaded.tokenizer,
            peft_config=loaded.peft_config,
            callbacks=callbacks,
        )


# --- distillation --------------------------------------------------------------------------------------------


def as_messages(rec: dict[str, Any]) -> dict[str, Any]:
    """A chat or prompt-completion record as one conversation."""
    if "messages" in rec:
        return {"messages": rec["messages"]}
    prompt, completion = rec["prompt"], rec["completion"]
    p = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    c = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
    return {"messages": [*p, *c]}


def _gkd_module() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the experimental-module notice
        from trl.experimental import gkd
    return gkd


@functools.cache
def gkd_trainer_class() -> type:
    """TRL's GKDTrainer with `temperature` applied in the distillation loss.

    TRL's `GKDTrainer.compute_loss` calls `generalized_jsd_loss` without a temperature, so the divergence
    is always taken at temperature 1 and `GKDConfig.temperature` only sets the sampling temperature of
    on-policy answers (lmbda > 0): with the default lmbda 0 it changed nothing. Here the loss gets it:
    the student's and the teacher's logits are divided by it before their softmax (no T^2 factor, as in
    TRL's generalized_jsd_loss).
    """
    GKDTrainer = _gkd_module().GKDTrainer

    class TemperatureGKDTrainer(GKDTrainer):
        def generalized_jsd_loss(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("temperature", self.temperature)
            return GKDTrainer.generalized_jsd_loss(*args, **kwargs)

    return TemperatureGKDTrainer


def distillation_of(spec: FineTuneJobSpec) -> DistillationSpec:
    """spec.distillation, which the API requires with method distillation."""
    if spec.distillation is None:
        raise TrainerConfigError("spec.distillation is required with spec.method distillation")
    return spec.distillation


def rft_of(spec: FineTuneJobSpec) -> RftSpec:
    """spec.rft, which the API requires with method rft."""
    if spec.rft is None:
        raise TrainerConfigError("spec.rft is required with spec.method rft")
    return spec.rft


def load_teacher(cfg: TrainRunConfig, precision: Precision) -> Any:
    """spec.distillation.teacher.uri loaded for inference, in the student's precision."""
    import torch
    from transformers import AutoModelForCausalLM

    from kubetune import constants as c
    from kubetune_trainer.sources import resolve_model

    teacher = distillation_of(cfg.spec).teacher
    if teacher.uri is None:
        raise TrainerConfigError("spec.distillation.teacher.uri is required to load the teacher beside the student")
    path = resolve_model(teacher.uri, cfg.storage, token_env=c.ENV_HF_TOKEN)
    dtype = torch.bfloat16 if precision.bf16 else torch.float16 if precision.fp16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.eval()
    return model


class LocalTeacherDistillation:
    """The student learns the token distribution of a teacher loaded beside it (GKD)."""

    name: ClassVar[str] = "distillation"
    trains_as: ClassVar[str] = "distillation"
    evaluates: ClassVar[bool] = True

    def prepare(self, cfg: TrainRunConfig, data: MethodData) -> MethodData:
        return data

    def build_config(self, run: RunSettings, data: MethodData, loaded: LoadedModel) -> GKDConfig:
        d = distillation_of(run.spec)
        return training_config(
            _gkd_module().GKDConfig,
            run,
            max_length=run.spec.hyperparameters.max_seq_length,
            temperature=d.temperature,
            beta=d.beta,
            lmbda=d.lmbda,
            max_new_tokens=d.max_new_tokens,
        )

    def build_trainer(
        self, run: RunSettings, config: GKDConfig, loaded: LoadedModel, data: MethodData, callbacks: list
    ) -> Trainer:
        return gkd_trainer_class()(
            model=loaded.model,
            teacher_model=load_teacher(run.cfg, run.precision),
            args=config,
            train_dataset=Dataset.from_list([as_messages(r) for r in data.train]),
            eval_dataset=Dataset.from_list([as_messages(r) for r in data.evals]) if data.evals else None,
            processing_class=loaded.tokenizer,
            peft_config=loaded.peft_config,
            callbacks=callbacks,
        )


class EndpointDistillation(Sft):
    """A teacher behind an OpenAI-compatible API answers the prompts; the student learns the answers (SFT)."""

    name: ClassVar[str] = "distillation-endpoint"
    trains_as: ClassVar[str] = "sft"

    def prepare(self, cfg: TrainRunConfig, data: MethodData) -> MethodData:
        from kubetune.data import has_answer
        from kubetune_trainer import teacher

        d = distillation_of(cfg.spec)
        if d.teacher.endpoint is None:
            raise TrainerConfigError("spec.distillation.teacher.endpoint is required to label the prompts")
        train = teacher.label(
            data.train,
            d.teacher.endpoint,
            cfg.output_dir,
            max_tokens=d.max_new_tokens,
            api_key_env=cfg.teacher_api_key_env,
        )
        # Validation examples with reference answers still give an eval loss; prompt-only ones do not.
        evals = None
        if data.evals and data.fmt != "reinforcement":
            evals = [as_messages(r) for r in data.evals if has_answer(r)] or None
        return MethodData(train, evals, "chat")


# --- rft -----------------------------------------------------------------------------------------------------


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


class Rft:
    """GRPO on rewards from the declared graders; no eval loss (the rewards are the measure)."""

    name: ClassVar[str] = "rft"
    trains_as: ClassVar[str] = "rft"
    evaluates: ClassVar[bool] = False

    def prepare(self, cfg: TrainRunConfig, data: MethodData) -> MethodData:
        return data

    def build_config(self, run: RunSettings, data: MethodData, loaded: LoadedModel) -> GRPOConfig:
        from trl import GRPOConfig  # pyright: ignore[reportPrivateImportUsage]  # trl's documented import; its lazy __init__ re-exports without __all__

        rft = rft_of(run.spec)
        check_rft_groups(run.spec, run.processes)
        return training_config(
            GRPOConfig,
            run,
            num_generations=rft.num_generations,
            max_completion_length=rft.max_completion_length,
            temperature=rft.temperature,
            beta=rft.beta,
            reward_weights=reward_functions(rft.graders)[1],
            log_completions=False,
        )

    def build_trainer(
        self, run: RunSettings, config: GRPOConfig, loaded: LoadedModel, data: MethodData, callbacks: list
    ) -> Trainer:
        from trl import GRPOTrainer  # pyright: ignore[reportPrivateImportUsage]  # trl's documented import; its lazy __init__ re-exports without __all__

        from kubetune_trainer.callbacks import JudgeCounterLog

        funcs, _ = reward_functions(
            rft_of(run.spec).graders, output_dir=run.cfg.output_dir, judge_endpoints=run.cfg.judge_endpoints
        )
        trainer = GRPOTrainer(
            model=loaded.model,
            reward_funcs=[*funcs],  # a list of TRL's wider RewardFunc (str | model | callable), the same functions
            args=config,
            train_dataset=Dataset.from_list(_rft_rows(data.train)),
            processing_class=loaded.tokenizer,
            peft_config=loaded.peft_config,
            callbacks=callbacks,
        )
        trainer.callback_handler.callbacks.insert(0, JudgeCounterLog(funcs))  # before the loggers: they see its counts
        return trainer


# --- registry ------------------------------------------------------------------------------------------------

METHODS: dict[str, Method] = {
    m.name: m for m in (Sft(), Pretraining(), Dpo(), LocalTeacherDistillation(), EndpointDistillation(), Rft())
}


def method_for(spec: FineTuneJobSpec) -> Method:
    """The method that trains `spec`: spec.method, with distillation split by where its teacher is."""
    if spec.method == "distillation" and distillation_of(spec).teacher.endpoint:
        return METHODS[EndpointDistillation.name]
    return METHODS[spec.method]


def estimated_steps(n_examples: int, spec: FineTuneJobSpec, world_size: int = 1) -> int:
    """Optimizer steps for unpacked data (packing makes fewer); for messages before training starts."""
    hp = spec.hyperparameters
    if hp.max_steps:
        return hp.max_steps
    per_step = hp.batch_size * hp.gradient_accumulation_steps * world_size
    return max(1, math.ceil(n_examples / per_step) * math.ceil(hp.epochs))
