"""Trainer callbacks that turn a `transformers.Trainer` run into progress reports."""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune_trainer.progress import ProgressReporter


class Throughput:
    """Tokens per second of this session, from the Trainer's token count (`num_input_tokens_seen`)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.start_step = 0
        self.start_tokens = 0
        self.tokens_per_second: float | None = None

    def begin(self, step: int, tokens: int) -> None:
        self.start, self.start_step, self.start_tokens = time.monotonic(), step, tokens

    def update(self, tokens: int) -> float | None:
        if self.start is None:
            return None
        elapsed = time.monotonic() - self.start
        if elapsed > 0 and tokens > self.start_tokens:
            self.tokens_per_second = (tokens - self.start_tokens) / elapsed
        return self.tokens_per_second

    def eta(self, step: int, total: int) -> float | None:
        """Seconds left at this session's pace."""
        if self.start is None or step <= self.start_step:
            return None
        per_step = (time.monotonic() - self.start) / (step - self.start_step)
        return max(0.0, (total - step) * per_step)


class ProgressCallback(TrainerCallback):
    """Reports step, total steps, epoch, losses, tokens per second and ETA on every log (main process only)."""

    def __init__(self, reporter: ProgressReporter, throughput: Throughput) -> None:
        self.reporter = reporter
        self.throughput = throughput
        self.loss: float | None = None
        self.eval_loss: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        self.throughput.begin(state.global_step, state.num_input_tokens_seen or 0)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        self.throughput.update(state.num_input_tokens_seen or 0)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ):
        logs = logs or {}
        if "loss" in logs:
            self.loss = float(logs["loss"])
        if "eval_loss" in logs:
            self.eval_loss = float(logs["eval_loss"])
        if not state.is_world_process_zero:
            return
        self.reporter.report(
            step=state.global_step,
            total_steps=state.max_steps,
            epoch=state.epoch,
            loss=self.loss,
            eval_loss=self.eval_loss,
            tokens_per_second=self.throughput.update(state.num_input_tokens_seen or 0),
            eta_seconds=self.throughput.eta(state.global_step, state.max_steps),
        )

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        if state.is_world_process_zero:
            self.reporter.flush()
