"""Ctrl-C and SIGTERM during `kubetune run`: both stop the current child the way a pod is stopped, and the
run ends with EXIT_INTERRUPTED; running it again resumes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Interrupted(Exception):
    """Ctrl-C: the current child was stopped and its state saved."""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM (e.g. `kill`, a CI timeout) interrupts like Ctrl-C (KeyboardInterrupt)."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
