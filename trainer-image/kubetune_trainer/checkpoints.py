"""Checkpoints on top of the HF Trainer's: a completion marker, best-K retention, resume selection.

The layout, reading kubetune.json and ranking by selectBy live in kubetune.api.checkpoints (shared with
`kubetune run`); this module writes the marker and prunes.

The Trainer writes `checkpoint-N/` (weights or adapter, optimizer, scheduler, RNG, trainer state).
Afterwards `CheckpointCallback.on_save` writes `kubetune.json` into it, atomically and last: a
checkpoint without it was cut short (the pod died) and is never resumed from, evaluated or served.
Retention keeps the best `keep` checkpoints by `selectBy` plus the latest (needed to resume).
A checkpoint saved on a stop signal (callbacks.GracefulStop) is an ordinary one, marked the same way,
with `"interrupted": "SIGTERM"` in its kubetune.json; being the latest, retention keeps it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune.api.checkpoints import (
    FINAL,
    Checkpoint,
    complete_checkpoints,
    incomplete_checkpoints,
    rank,
)
from kubetune.api.clock import now_iso
from kubetune.constants import CHECKPOINT_META
from kubetune.data.promptformat import META_KEY, format_type

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to `path` via a temporary file and rename, so readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def discard_incomplete(output_dir: str | Path) -> list[str]:
    """Delete half-written checkpoints (no kubetune.json) so a resumed run can write those steps afresh."""
    removed = []
    for path in incomplete_checkpoints(output_dir):
        log.warning("discarding incomplete checkpoint %s (no %s: the run stopped while saving)", path, CHECKPOINT_META)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


def select(checkpoints: list[Checkpoint], keep: int, metric: str, mode: str) -> tuple[list[Checkpoint], str | None]:
    """(kept checkpoints oldest first, best name): the best `keep` by the metric, plus the latest.

    Without the metric anywhere (e.g. eval_loss and no validation data) the latest `keep` are kept
    and the latest is the best.
    """
    if not checkpoints:
        return [], None
    ranked = rank(checkpoints, metric, mode)
    if ranked:
        chosen = {cp.name for cp in ranked[:keep]}
        best = ranked[0].name
    else:
        chosen = {cp.name for cp in checkpoints[-keep:]}
        best = checkpoints[-1].name
    chosen.add(checkpoints[-1].name)
    return [cp for cp in checkpoints if cp.name in chosen], best


def prune(output_dir: str | Path, keep: int, metric: str, mode: str) -> tuple[list[Checkpoint], str | None]:
    """Delete complete checkpoints that are neither among the best `keep` nor the latest."""
    done = complete_checkpoints(output_dir)
    kept, best = select(done, keep, metric, mode)
    names = {cp.name for cp in kept}
    for cp in done:
        if cp.name not in names:
            log.info("removing %s (not among the best %d by %s)", cp.name, keep, metric)
            shutil.rmtree(cp.path, ignore_errors=True)
    return kept, best


REWARD = "reward"  # GRPO: the weighted sum of the graders' rewards, averaged over the logged completions
REWARD_STD = "reward_std"
GRADER_REWARD = re.compile(r"^rewards/(?P<grader>.+)/mean$")  # GRPO's per reward function mean


def reward_key(grader: str) -> str:
    """The metric name of one grader's mean reward: `rewards/<grader>` (selectBy can name it)."""
    return f"rewards/{grader}"


def _train_metric(key: str) -> str | None:
    """The name a logged training value is kept under, or None for values not worth keeping."""
    if key == "loss":
        return "train_loss"
    if key in ("learning_rate", "grad_norm", "num_input_tokens_seen", "train_tokens_per_second", REWARD, REWARD_STD):
        return key
    m = GRADER_REWARD.match(key)
    return reward_key(m.group("grader")) if m else None


def metrics_at(state: TrainerState, *, evals_of_this_step: bool = False) -> tuple[dict[str, float], dict[str, float]]:
    """(train metrics, eval metrics) as of the current step, from the Trainer's log history.

    Each value is the latest logged at or before the step: for RFT the rewards of the last logged steps
    (GRPO averages them over the `logging_steps` before each log), by grader as `rewards/<grader>`.
    `evals_of_this_step`: only an evaluation at this very step counts (a checkpoint saved off schedule,
    on a stop signal, must not claim an earlier step's eval loss and win the best-K ranking with it).
    """
    train: dict[str, float] = {}
    evals: dict[str, float] = {}
    for entry in state.log_history:
        if entry.get("step", 0) > state.global_step:
            continue
        for k, v in entry.items():
            if not isinstance(v, int | float) or k in ("step", "epoch") or not math.isfinite(v):
                continue
            if k.startswith("eval_"):
                if evals_of_this_step and entry.get("step") != state.global_step:
                    continue
                evals[k] = float(v)
            elif (name := _train_metric(k)) is not None:
                train[name] = float(v)
    return train, evals


def status_metric(key: str) -> bool:
    """Metrics worth a place in status: losses, rewards and quality, not timings or counters."""
    if key in ("train_loss", REWARD) or key.startswith("rewards/"):
        return True
    return key.startswith("eval_") and not any(x in key for x in ("runtime", "per_second", "num_tokens"))


class CheckpointCallback(TrainerCallback):
    """Marks checkpoints complete, prunes, reports them; saves every N epochs when asked to."""

    def __init__(
        self,
        *,
        output_dir: str | Path,
        keep: int,
        metric: str,
        mode: str,
        run_info: dict[str, Any],
        reporter: Any,
        uri_of: Any = None,
        every_epochs: int | None = None,
        evaluate: bool = False,
        throughput: Any = None,
        stop: Any = None,
        sharded: bool = False,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.keep, self.metric, self.mode = keep, metric, mode
        self.run_info = run_info  # base model, adapter config, dataset hash, method ...
        self.reporter = reporter
        self.uri_of = uri_of or (lambda name: str(self.output_dir / name))
        self.every_epochs = every_epochs
        self.evaluate = evaluate  # evaluate before each epoch checkpoint (eval_strategy is "no" for unit epochs)
        self.throughput = throughput
        self.stop = stop  # GracefulStop: marks the checkpoint a stop signal asked for
        self.sharded = sharded  # FSDP: the Trainer saved shards; the HF/PEFT files are gathered here

    def on_epoch_end(  # pyright: ignore[reportIncompatibleMethodOverride]  # transformers leaves the hook unannotated (inferred None); call_event uses the returned control
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> TrainerControl:
        if self.stop is not None and self.stop.stopped_at is not None:
            return control  # stopped mid-epoch by a signal: its checkpoint is written; don't save (or eval) again
        if self.every_epochs and state.epoch is not None and round(state.epoch) % self.every_epochs == 0:
            control.should_save = True
            if self.evaluate or args.eval_strategy != "no":
                control.should_evaluate = True
        return control

    def meta(self, state: TrainerState, name: str) -> dict[str, Any]:
        stop = self.stop
        interrupted = stop is not None and stop.stopped_at == state.global_step and name != FINAL
        train, evals = metrics_at(state, evals_of_this_step=interrupted)
        tps = self.throughput.tokens_per_second if self.throughput else None
        extra = {"interrupted": signal.Signals(stop.received).name} if stop is not None and interrupted else {}
        return {
            "name": name,
            "step": state.global_step,
            "epoch": state.epoch,
            "max_steps": state.max_steps,
            "train_metrics": train,
            "eval_metrics": evals,
            "metrics": {**train, **evals},
            "tokens_per_second": tps,
            "num_input_tokens_seen": state.num_input_tokens_seen,
            "created": now_iso(),
            **extra,
            **self.run_info,
        }

    def on_save(  # pyright: ignore[reportIncompatibleMethodOverride]  # transformers leaves the hook unannotated (inferred None); call_event uses the returned control
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> TrainerControl:
        _barrier()
        name = f"checkpoint-{state.global_step}"
        path = self.output_dir / name
        if self.sharded and kw.get("model") is not None:
            # Beside the per-rank shards (resume reads those): config, safetensors or adapter, tokenizer,
            # gathered onto rank 0, for evaluation, merge and serving. Every rank takes part.
            from kubetune_trainer.sharding import save_consolidated

            save_consolidated(kw["model"], kw.get("processing_class"), path, main=state.is_world_process_zero)
        if state.is_world_process_zero:
            if path.is_dir():
                write_json_atomic(path / CHECKPOINT_META, self.meta(state, name))
            self.publish()
        _barrier()
        return control

    def publish(self) -> tuple[list[Checkpoint], str | None]:
        kept, best = prune(self.output_dir, self.keep, self.metric, self.mode)
        self.reporter.checkpoints([self.status_entry(cp) for cp in kept], best)
        return kept, best

    def status_entry(self, cp: Checkpoint) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": cp.name, "step": cp.step, "uri": self.uri_of(cp.name)}
        if cp.meta.get("epoch") is not None:
            entry["epoch"] = round(float(cp.meta["epoch"]), 4)
        entry["metrics"] = {k: round(v, 6) for k, v in cp.metrics.items() if status_metric(k)}
        record = cp.meta.get(META_KEY)
        if record is not None and format_type(record):
            entry["promptFormat"] = {"type": record["type"]}
            if record.get("prefix"):
                entry["promptFormat"]["prefix"] = record["prefix"]
        return entry


def _barrier() -> None:
    """Wait for every rank (each writes its own RNG state) before rank 0 marks the checkpoint complete."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
