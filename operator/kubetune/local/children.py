"""Child processes of a local run: the trainer, the evaluator and the server, as a pod would run them.

Each child runs `python -m kubetune_trainer COMMAND --config FILE` in its own session, so the
terminal's Ctrl-C reaches only `kubetune run`, which then stops the child the way Kubernetes stops a
pod: SIGTERM, a grace period, then SIGKILL. Its output goes to a log file beside its run config.

`stop` returns only when the child and every process it started are gone: torchrun's workers (a
distributed trainer) run in sessions of their own, so a signal to the child's session does not reach
them, and an orphaned worker would go on training and writing checkpoints while a rerun resumes into the
same folder. They are found through /proc (Linux; elsewhere only the child's session is signalled).
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
        """SIGTERM to the child, wait up to `grace` seconds for it and everything it started, then SIGKILL
        to all of them; returns the child's exit code once none is left. A Ctrl-C while waiting skips the
        rest of the grace period.

        SIGTERM goes to the child alone (as the kubelet signals a container's PID 1): the trainer passes it
        on to its workers' launcher once; a second copy sent to the launcher's group aborted its shutdown."""
        tree: set[int] = set()
        if self.proc.poll() is None:
            tree |= descendants(self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline:
                    if self.proc.poll() is None:
                        tree |= descendants(self.proc.pid)
                    tree = {p for p in tree if _alive(p)}
                    if self.proc.poll() is not None and not tree:
                        break
                    time.sleep(0.1)
            except KeyboardInterrupt:
                pass
        if self.proc.poll() is None:
            tree |= descendants(self.proc.pid)
            self._signal(signal.SIGKILL)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        rc = self.wait()
        _wait_gone(tree, timeout=30.0)
        return rc

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


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc (empty where there is no /proc)."""
    out: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[0] != "Z":
            out[int(entry.name)] = int(fields[1])
    return out


def descendants(pid: int) -> set[int]:
    """The live processes `pid` started, and theirs, at any depth."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not Path("/proc").is_dir()
    return stat[stat.rfind(")") + 2 :].split()[:1] != ["Z"]


def _wait_gone(pids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
