"""Child processes of a local run: the trainer, the evaluator and the server, as a pod would run them.

Each child runs `python -m kubetune_trainer COMMAND --config FILE` in its own session, so the
terminal's Ctrl-C reaches only `kubetune run`, which then stops the child the way Kubernetes stops a
pod: SIGTERM, a grace period, then SIGKILL. Its output goes to a log file beside its run config.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

GRACE_SECONDS = 30.0


def trainer_command(command: str, config: Path) -> list[str]:
    """`kubetune-trainer COMMAND --config FILE` with this interpreter (the same code a pod runs)."""
    return [sys.executable, "-m", "kubetune_trainer", command, "--config", str(config)]


class Child:
    """A running child process with its log file."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self._log.write(f"\n$ {' '.join(self.argv)}\n".encode())
        self._log.flush()
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None:
            self._log.close()
        return rc

    def wait(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout)
        self._log.close()
        return rc

    def stop(self, grace: float = GRACE_SECONDS) -> int:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; returns the exit code. A Ctrl-C while
        waiting skips the rest of the grace period."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                deadline = time.monotonic() + grace
                while self.proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.1)
            except KeyboardInterrupt:
                pass
            if self.proc.poll() is None:
                self._signal(signal.SIGKILL)
        return self.wait()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # the child's session: it and anything it started

    def tail(self, lines: int = 20) -> str:
        """The last lines of the log, for an error message."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])
