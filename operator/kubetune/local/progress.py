"""What `kubetune run` shows while a child works: a progress bar of training steps with the latest losses,
spinners for evaluation and server start. In a terminal only; logs and CI get plain lines instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    """A bar of training steps with the latest losses; without a terminal, one line per saved checkpoint."""

    def __init__(self, console: Console, name: str) -> None:
        self.console = console
        self.interactive = console.is_terminal
        self._bars = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not self.interactive,
        )
        self._name = name
        self._task: TaskID | None = None
        self._told: set[str] = set()

    def __enter__(self) -> TrainingProgress:
        self._bars.__enter__()
        self._task = self._bars.add_task(self._name, total=None, loss="starting")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bars.__exit__(*exc)

    def event(self, event: dict[str, Any]) -> None:
        """Tell each newly saved checkpoint (without a terminal, where there is no bar to watch)."""
        if event.get("event") != "checkpoints" or self.interactive:
            return
        for cp in event.get("checkpoints") or []:
            if cp.get("name") not in self._told:
                self._told.add(cp.get("name"))
                self.console.print(
                    f"  saved {cp.get('name')} (step {cp.get('step')}) {cp.get('metrics') or ''}",
                    highlight=False,
                    soft_wrap=True,
                )

    def show(self, status: dict[str, Any]) -> None:
        """Move the bar to the status's step, with its train and eval loss."""
        assert self._task is not None
        progress = status.get("progress") or {}
        metrics = status.get("metrics") or {}
        loss = " ".join(
            f"{label} {metrics[k]:.3f}" for k, label in (("trainLoss", "loss"), ("evalLoss", "eval")) if k in metrics
        )
        if progress.get("totalSteps"):
            self._bars.update(self._task, total=progress["totalSteps"], completed=progress.get("step", 0), loss=loss)
        elif status.get("data"):
            self._bars.update(self._task, loss="loading the model")


@contextmanager
def spinner(console: Console, description: str) -> Iterator[None]:
    """A spinner with the elapsed time while a child works (evaluation)."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bars:
        bars.add_task(description)
        yield


@contextmanager
def waiting(console: Console, text: str) -> Iterator[None]:
    """A status line while something starts (the model server)."""
    with console.status(text):
        yield
