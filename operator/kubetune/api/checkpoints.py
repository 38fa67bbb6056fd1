"""The checkpoint layout of a FineTuneJob's output folder, read one way by the trainer and by `kubetune run`.

    OUTPUT/checkpoint-N/kubetune.json   a checkpoint of step N, complete once its kubetune.json exists
    OUTPUT/final/kubetune.json          the finished run's model

The trainer writes `kubetune.json` into a checkpoint atomically and last, so a checkpoint whose
kubetune.json is missing or unreadable was cut short: it is never resumed from, ranked or served.
Checkpoints are ranked by `spec.checkpoints.selectBy`; `metric_keys` is the one place that says
which recorded metric a selectBy name means (`evalLoss`, `eval_loss` and `loss` all mean `eval_loss`).

Standard library only: the operator image (no torch) and the trainer import it alike.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kubetune.constants import CHECKPOINT_META

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
FINAL = "final"


def step_of(name: str) -> int | None:
    """The step a checkpoint folder's name says (`checkpoint-40` -> 40); None for any other name (`final`)."""
    m = CHECKPOINT_RE.match(name)
    return int(m.group(1)) if m else None


@dataclass
class Checkpoint:
    """A complete checkpoint (or final/) and its kubetune.json."""

    name: str
    step: int
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return self.meta.get("metrics") or {}


def read_meta(checkpoint_dir: Path) -> dict[str, Any] | None:
    """A checkpoint's kubetune.json, or None when it is missing or unreadable (an incomplete checkpoint)."""
    try:
        meta = json.loads((checkpoint_dir / CHECKPOINT_META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def step_dirs(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint-N folder, complete or not, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def complete_checkpoints(output_dir: str | Path) -> list[Checkpoint]:
    """checkpoint-N folders that have a readable kubetune.json, oldest first (final/ is not among them)."""
    out = []
    for step, path in step_dirs(output_dir):
        meta = read_meta(path)
        if meta is not None:
            out.append(Checkpoint(path.name, step, path, meta))
    return out


def incomplete_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N folders without a readable kubetune.json: the run stopped while saving them."""
    return [path for _, path in step_dirs(output_dir) if read_meta(path) is None]


def latest_complete(output_dir: str | Path) -> Checkpoint | None:
    """The newest complete checkpoint: where a run resumes."""
    done = complete_checkpoints(output_dir)
    return done[-1] if done else None


def final_checkpoint(output_dir: str | Path) -> Checkpoint | None:
    """final/ when the run finished (its kubetune.json is readable); its step is the one recorded there."""
    path = Path(output_dir) / FINAL
    meta = read_meta(path)
    if meta is None:
        return None
    step = meta.get("step")
    return Checkpoint(FINAL, step if isinstance(step, int) else 0, path, meta)


def checkpoints_on_disk(output_dir: str | Path) -> list[Checkpoint]:
    """Every complete checkpoint, oldest first, then final/ if the run finished."""
    final = final_checkpoint(output_dir)
    return [*complete_checkpoints(output_dir), *([final] if final else [])]


def metric_keys(metric: str) -> tuple[str, ...]:
    """The recorded metric names a selectBy metric may mean, in order of preference.

    The name as written first (`reward`, `rewards/<grader>`, `eval_loss`), then its snake_case form
    (`evalLoss` -> `eval_loss`, `trainLoss` -> `train_loss`), then that with `eval_` in front
    (`loss` -> `eval_loss`, `accuracy` -> `eval_accuracy`).
    """
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", metric).lower()
    return tuple(dict.fromkeys((metric, snake, f"eval_{snake}")))


def metric_value(metrics: dict[str, Any], metric: str) -> float | None:
    """The value of a selectBy metric among a checkpoint's recorded metrics; None when it was not recorded."""
    for key in metric_keys(metric):
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def rank(checkpoints: list[Checkpoint], metric: str, mode: Literal["min", "max"] | str) -> list[Checkpoint]:
    """Checkpoints that have the metric, best first (ties: the later step wins)."""
    sign = 1 if mode == "min" else -1
    scored = [(v, cp) for cp in checkpoints if (v := metric_value(cp.metrics, metric)) is not None]
    return [cp for _, cp in sorted(scored, key=lambda vc: (sign * vc[0], -vc[1].step))]


def best(checkpoints: list[Checkpoint], metric: str, mode: Literal["min", "max"] | str) -> Checkpoint | None:
    """The best checkpoint by the metric, or None when none recorded it."""
    ranked = rank(checkpoints, metric, mode)
    return ranked[0] if ranked else None
