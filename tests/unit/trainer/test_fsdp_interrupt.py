"""Stopping a distributed trainer the way `kubetune run` does on Ctrl-C leaves no process behind.

torchrun's workers run in sessions of their own. `kubetune run` used to send SIGTERM to the trainer's
whole process group, so `accelerate launch` got it twice (from the group and from the trainer passing it
on): the second copy aborted the agent's shutdown before it told the workers, which trained on to the
end; and the SIGKILL after the grace period reached only the trainer's group, orphaning the workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from trainer_helpers import make_config, quickstart_rows, trainer_command, trainer_env, write_config, write_jsonl

from kubetune.api import checkpoints
from kubetune.local.children import Child
from kubetune_trainer.launcher import CPU_WORKERS_ENV
from kubetune_trainer.train import EXIT_SIGTERM


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _gone(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has exited)."""
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_the_launcher_gets_one_sigterm_when_the_trainers_group_is_signalled(tmp_path):
    """A shell or an old `kubetune run` signals the trainer's process group: the launcher is in a group of
    its own and gets the signal once, from the trainer (a second one aborts torchrun's shutdown)."""
    count = tmp_path / "count"
    launcher = textwrap.dedent(
        f"""
        import signal, sys, time
        def got(signum, frame):
            with open({str(count)!r}, "a") as f:
                f.write("x")
        signal.signal(signal.SIGTERM, got)
        open({str(count)!r} + ".ready", "w").close()
        time.sleep(3)
        sys.exit(143)
        """
    )
    parent = (
        "import sys\nfrom kubetune_trainer.train import run_forwarding_signals\n"
        f"sys.exit(run_forwarding_signals([sys.executable, '-c', {launcher!r}]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], env=trainer_env(), start_new_session=True)
    try:
        _wait_for(lambda: Path(f"{count}.ready").exists(), "the launcher started", timeout=30)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == EXIT_SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert count.read_text() == "x"


def test_stop_kills_what_the_child_started_in_a_session_of_its_own(tmp_path):
    """A grandchild in its own session that ignores SIGTERM (a worker past the grace period) is killed
    too, and stop() returns only when it is gone."""
    pidfile = tmp_path / "grandchild.pid"
    grandchild = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(120)\n"
    script = textwrap.dedent(
        f"""
        import signal, subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", {grandchild!r}], start_new_session=True)
        open({str(pidfile)!r}, "w").write(str(p.pid))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(120)
        """
    )
    child = Child([sys.executable, "-c", script], tmp_path / "log")
    _wait_for(lambda: pidfile.exists() and pidfile.read_text(), "the grandchild started")
    grand = psutil.Process(int(pidfile.read_text()))
    started = time.monotonic()
    child.stop(grace=1.0)
    assert time.monotonic() - started < 20
    assert not _gone([grand]), "the grandchild outlived stop()"


@pytest.mark.slow
def test_stopping_a_2_process_fsdp_run_leaves_no_worker_and_a_rerun_resumes(tmp_path, tiny_model):
    train = write_jsonl(tmp_path / "train.jsonl", quickstart_rows(64))

    def config(max_steps: int) -> Path:
        cfg = make_config(
            tmp_path,
            tiny_model,
            train,
            adapter={"type": "none"},
            hyperparameters={"maxSteps": max_steps, "batchSize": 4, "learningRate": 3e-3, "packing": False},
            checkpoints={"every": 3, "keep": 3},
            resources={"gpus": 0, "sharding": {"strategy": "fsdp"}},
        )
        return write_config(tmp_path, cfg)

    env = {**trainer_env(), CPU_WORKERS_ENV: "2", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "output"
    child = Child(trainer_command(config(300)), tmp_path / "train.log", env=env)
    try:
        _wait_for(lambda: checkpoints.latest_complete(out) is not None, "the first checkpoint", timeout=400)
        tree = psutil.Process(child.pid).children(recursive=True)
        assert len(tree) >= 3, tree  # accelerate launch and its 2 workers
        rc = child.stop()  # what `kubetune run` does on Ctrl-C
    finally:
        if child.proc.poll() is None:
            child.stop(grace=1.0)
    log = (tmp_path / "train.log").read_text()
    assert rc == EXIT_SIGTERM, log[-4000:]
    assert not _gone(tree), f"still running after stop(): {_gone(tree)}"
    assert "got SIGTERM" in log, log[-4000:]
    latest = checkpoints.latest_complete(out)
    assert latest is not None and latest.step >= 3 and checkpoints.final_checkpoint(out) is None
    assert "interrupted" in (latest.path / "kubetune.json").read_text()

    rerun = Child(trainer_command(config(latest.step + 1)), tmp_path / "rerun.log", env=env)
    assert rerun.wait(timeout=400) == 0, (tmp_path / "rerun.log").read_text()[-4000:]
    assert f"resuming from {latest.path}" in (tmp_path / "rerun.log").read_text()
    assert checkpoints.final_checkpoint(out) is not None
