"""SIGTERM/SIGINT (pod preempted, evicted, suspended, deleted; Ctrl-C of `kubetune run`): a checkpoint at the
step it stopped, exit 143/130, no final/, and the next start resumes from it."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from trainer_helpers import (
    RESUME_ROWS,
    epochs_config,
    events,
    final_steps,
    quickstart_rows,
    trainer_command,
    trainer_env,
    write_config,
)
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune_trainer.callbacks import GracefulStop
from kubetune_trainer.train import EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, run


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the trainer exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_at_the_current_step_and_the_next_start_resumes_from_it(
    tmp_path, tiny_model, uninterrupted_steps, caplog
):
    cfg = epochs_config(tmp_path, tiny_model, quickstart_rows(RESUME_ROWS), checkpoints={"every": 1000, "keep": 1})
    out = Path(cfg.output_dir)
    cmd, env = trainer_command(write_config(tmp_path, cfg)), trainer_env()
    log = (tmp_path / "train.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: any(e["event"] == "progress" for e in events(tmp_path)), proc, "the first progress event")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    text = (tmp_path / "train.log").read_text()
    assert rc == EXIT_SIGTERM, text[-3000:]

    assert not (out / "final").exists()
    saved = sorted(out.glob("checkpoint-*"))
    assert len(saved) == 1, saved  # no periodic checkpoint (every 1000 steps): this one is the stop's
    meta = json.loads((saved[0] / "kubetune.json").read_text())
    step = meta["step"]
    assert saved[0].name == f"checkpoint-{step}" and 0 < step < uninterrupted_steps
    assert meta["interrupted"] == "SIGTERM"
    assert (saved[0] / "optimizer.pt").exists() and (saved[0] / "trainer_state.json").exists()  # resumable
    assert f"stopped by SIGTERM at step {step}" in text

    evs = events(tmp_path)
    kinds = [e["event"] for e in evs]
    assert "finished" not in kinds
    last = evs[-1]
    assert (last["event"], last["signal"], last["step"], last["checkpoint"]) == (
        "interrupted",
        "SIGTERM",
        step,
        saved[0].name,
    )
    reported = [e for e in evs if e["event"] == "checkpoints"][-1]
    assert [cp["name"] for cp in reported["checkpoints"]] == [saved[0].name]

    # The next start runs in this process: a fresh run that has only what the stopped one left on disk, as a
    # restarted pod has (a second interpreter would import the training stack again, seconds on 2 cores).
    caplog.set_level(logging.INFO, logger="kubetune_trainer")
    assert run(cfg) == EXIT_OK
    assert f"resuming from {saved[0]} (step {step})" in caplog.text
    assert final_steps(out) == uninterrupted_steps
    assert json.loads((out / "final" / "kubetune.json").read_text())["epoch"] == pytest.approx(2.0)
    assert events(tmp_path)[-1]["event"] == "finished"


def _step_end(stop: GracefulStop, step: int = 7) -> TrainerControl:
    args = TrainingArguments(output_dir="unused", report_to=[])
    return stop.on_step_end(args, TrainerState(global_step=step), TrainerControl())


def test_the_signal_only_sets_a_flag_and_the_next_step_end_saves_and_stops():
    stop = GracefulStop()
    assert not _step_end(stop).should_save  # no signal: training goes on
    with stop.installed():
        signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt: Ctrl-C asks for a checkpoint first
        control = _step_end(stop)
    assert control.should_save and control.should_training_stop
    assert stop.stopped_at == 7 and stop.exit_code == EXIT_SIGINT


def test_a_second_sigint_during_the_save_interrupts_but_a_second_sigterm_does_not():
    stop = GracefulStop()
    previous = signal.getsignal(signal.SIGTERM)
    with stop.installed():
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # e.g. `kubetune run` and a launcher both passing it on
        assert stop.exit_code == EXIT_SIGTERM
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # the user insists
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers are only ours during training


@pytest.mark.slow
def test_the_launcher_parent_passes_sigterm_to_the_workers_and_returns_their_exit_code(tmp_path):
    """In a pod only PID 1 (the parent that ran `accelerate launch`) gets SIGTERM."""
    got = tmp_path / "child-got"
    child = textwrap.dedent(
        f"""
        import os, signal, sys, time
        def stop(signum, frame):
            open({str(got)!r}, "w").write(os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", ""))
            sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        open({str(got)!r} + ".ready", "w").close()
        time.sleep(60)
        """
    )
    parent = (
        "import sys\nfrom kubetune_trainer.train import run_forwarding_signals\n"
        f"sys.exit(run_forwarding_signals([sys.executable, '-c', {child!r}]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], env=trainer_env())
    try:
        _wait_for(lambda: Path(f"{got}.ready").exists(), proc, "the worker started", timeout=30)
        proc.send_signal(signal.SIGTERM)  # to the parent only
        assert proc.wait(timeout=30) == EXIT_SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert int(got.read_text()) >= 300  # torchrun's agent waits that long for a save, not its default 30 s


def test_workers_stopped_because_another_pods_rank_was_signalled_exit_as_interrupted(tmp_path, tiny_model, monkeypatch):
    """Multi-node: only the preempted pod gets SIGTERM; the other pods' ranks stop at the same step (the stop
    flag is all-reduced), torchrun reports their exit as a failure (1), and the pod exits 143 instead."""
    import kubetune_trainer.train as train

    cfg = epochs_config(tmp_path, tiny_model, quickstart_rows(16), resources={"gpus": 2})
    ckpt = Path(cfg.output_dir) / "checkpoint-3"
    workers = (
        f"import json, os, sys; os.makedirs({str(ckpt)!r});"
        f"json.dump({{'step': 3, 'interrupted': 'SIGTERM'}}, open({str(ckpt / 'kubetune.json')!r}, 'w')); sys.exit(1)"
    )
    monkeypatch.setattr(train, "launch_command", lambda topo, path, **_: [sys.executable, "-c", workers])
    assert train.run(cfg, config_path=str(write_config(tmp_path, cfg))) == EXIT_SIGTERM

    monkeypatch.setattr(
        train, "launch_command", lambda topo, path, **_: [sys.executable, "-c", "import sys; sys.exit(1)"]
    )
    assert train.run(cfg, config_path=str(write_config(tmp_path, cfg))) == 1  # a crash stays a crash


def test_sigterm_before_training_exits_143_at_once():
    """As PID 1 of a container the trainer would otherwise ignore SIGTERM and sit out the grace period."""
    code = (
        "import os, signal, time\nfrom kubetune_trainer import cli\ncli._exit_on_sigterm()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(30)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=trainer_env(), timeout=60)
    assert done.returncode == EXIT_SIGTERM


class _SignalAt(TrainerCallback):
    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            signal.raise_signal(self.signum)


@pytest.mark.slow
def test_a_stop_mid_epoch_with_epoch_checkpoints_saves_once(tmp_path, tiny_model):
    """The Trainer still calls on_epoch_end after the stop; that must not write the same checkpoint again."""
    from kubetune_trainer.train import run

    cfg = epochs_config(tmp_path, tiny_model, quickstart_rows(48), checkpoints={"every": 1, "unit": "epochs"})
    assert run(cfg, callbacks=[_SignalAt(3, signal.SIGINT)]) == EXIT_SIGINT
    out = Path(cfg.output_dir)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-4"]  # the step after the signal
    assert json.loads((out / "checkpoint-4" / "kubetune.json").read_text())["interrupted"] == "SIGINT"
    assert [e["event"] for e in events(tmp_path)].count("checkpoints") == 1
    assert not (out / "final").exists()
