"""The trainer's progress file (JSON lines) -> the FineTuneJob status a cluster would show, and loss curves.

The trainer writes one event per line (`kubetune_trainer.progress.JsonlReporter`): `data`,
`data_failed`, `progress`, `checkpoints`, `interrupted`, `finished`; the evaluator writes `evaluation`.
Each is merged into the status as the merge patch a pod sends for it (`kubetune.api.progress`, the one
mapping of trainer events to status fields).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune import constants as c
from kubetune.api.progress import merge_patch, status_patch


def apply_event(status: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The camelCase status after one event (a new dict; unknown events leave it as it is).

    Invalid data fails the job at once: locally there is no operator to see the trainer exit first."""
    out = merge_patch(status, status_patch(event))
    if event.get("event") == "data_failed":
        out["phase"] = c.Phase.FAILED
        out["message"] = "data validation failed"
    return out


@dataclass
class LossCurve:
    """Train and eval loss by step; a resumed run's later values replace the earlier ones at the same step."""

    train: dict[int, float] = field(default_factory=dict)
    eval: dict[int, float] = field(default_factory=dict)

    def add(self, event: dict[str, Any]) -> None:
        if event.get("event") != "progress":
            return
        step = (event.get("progress") or {}).get("step")
        metrics = event.get("metrics") or {}
        if step is None:
            return
        if "trainLoss" in metrics:
            self.train[step] = metrics["trainLoss"]
        if "evalLoss" in metrics:
            self.eval[step] = metrics["evalLoss"]

    def points(self, which: str) -> tuple[list[int], list[float]]:
        """Sorted (steps, values); eval loss only where it changed (the trainer repeats it on every log)."""
        data = self.train if which == "train" else self.eval
        steps = sorted(data)
        if which == "eval":
            steps = [s for i, s in enumerate(steps) if i == 0 or data[s] != data[steps[i - 1]]]
        return steps, [data[s] for s in steps]

    def __bool__(self) -> bool:
        return bool(self.train or self.eval)


class JsonlTail:
    """Reads the lines appended to a file since the last call; a half-written last line waits for its end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete events of a progress file (empty when it does not exist)."""
    return JsonlTail(path).read()
