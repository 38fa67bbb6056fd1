"""Trainer callbacks that turn a `transformers.Trainer` run into progress reports."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune_trainer.progress import ProgressReporter

log = logging.getLogger(__name__)


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
        if "eval_loss" in logs:
            # One `name=value` line per evaluation on stdout: what Katib's StdOut metrics collector parses
            # (kubetune sweep --katib, kubetune.builders.katib).
            print(f"step {state.global_step}: eval_loss={self.eval_loss}", flush=True)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        if state.is_world_process_zero:
            self.reporter.flush()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop(TrainerCallback):
    """Stop at the end of the current optimizer step with a normal, resumable checkpoint on SIGTERM/SIGINT.

    Kubernetes sends SIGTERM to a pod that is preempted, evicted, suspended or deleted, and SIGKILL
    `terminationGracePeriodSeconds` later; `kubetune run` does the same to its child. The handler only
    records the signal; the next `on_step_end` asks the Trainer to save (the usual `checkpoint-N/` with
    optimizer, scheduler, RNG and data position; `CheckpointCallback` marks it complete) and to stop.

    A second signal while the checkpoint is written: SIGINT raises KeyboardInterrupt (the user insists;
    the checkpoint is then incomplete and discarded on the next start), SIGTERM is ignored (Kubernetes
    sends SIGKILL when the grace period is over anyway, and `kubetune run` may deliver one twice).
    With several processes every rank agrees at each step end, so all of them stop at the same step.
    """

    def __init__(self) -> None:
        self.received: int | None = None  # the first stop signal
        self.stopped_at: int | None = None  # the step whose checkpoint the stop asked for

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + signal number (143 SIGTERM, 130 SIGINT)."""
        return 128 + int(self.received or signal.SIGTERM)

    def _handle(self, signum: int, frame: Any) -> None:
        # Runs between bytecodes of the main thread: set a flag, write a line, nothing that takes locks.
        if self.received is None:
            self.received = signum
            msg = f"kubetune-trainer: got {signal.Signals(signum).name}; stopping after this step with a checkpoint\n"
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            msg = f"kubetune-trainer: got {signal.Signals(signum).name} again; still writing the checkpoint\n"
        os.write(2, msg.encode())

    @contextmanager
    def installed(self) -> Iterator[GracefulStop]:
        """Handle SIGTERM/SIGINT inside the block (main thread only), restore the previous handlers after."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _any_rank_stopping(self, args: TrainingArguments) -> bool:
        stopping = self.received is not None
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            import torch

            flag = torch.tensor([1 if stopping else 0], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stopping = bool(flag.item())
            if stopping and self.received is None:
                self.received = signal.SIGTERM  # another rank (pod) was told to stop
        return stopping

    def on_step_end(  # pyright: ignore[reportIncompatibleMethodOverride]  # transformers leaves the hook unannotated (inferred None); call_event uses the returned control
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> TrainerControl:
        if self.stopped_at is None and self._any_rank_stopping(args):
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
            log.warning(
                "%s: saving checkpoint-%d and stopping; run again to resume",
                signal.Signals(self.received or signal.SIGTERM).name,
                state.global_step,
            )
        return control


class JudgeCounterLog(TrainerCallback):
    """Adds each judge grader's counters (`judge/<grader>/parse_failures`, `.../timeouts`, `.../rate_limited`,
    `.../cache_hits` ...) to every log entry, so they reach the trainer's log history, MLflow and the progress
    reports like the rewards do. Put it first among the callbacks: the others see the same `logs`."""

    COUNTERS = (
        "requests",
        "judged",
        "cache_hits",
        "parse_failures",
        "timeouts",
        "rate_limited",
        "server_errors",
        "errors",
    )

    def __init__(self, reward_funcs: list[Any]) -> None:
        self.judges = [(f.__name__, f.counters) for f in reward_funcs if hasattr(f, "counters")]

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs is None:
            return
        added: dict[str, float] = {}
        for name, counters in self.judges:
            now = counters()
            if now is not None:
                added.update({f"judge/{name}/{k}": float(getattr(now, k)) for k in self.COUNTERS})
        logs.update(added)
        if added and state.log_history:
            state.log_history[-1].update(added)
