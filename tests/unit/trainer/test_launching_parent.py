"""The trainer process that only launches a distributed run's workers stays light: it validates the data, plans
memory, checks the spec and decides the sharding without importing the training stack, so the workers start
seconds sooner (each of them imports torch, transformers, TRL and PEFT itself)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from trainer_helpers import make_config, quickstart_rows, trainer_env, write_config, write_jsonl

from kubetune_trainer.launcher import CPU_WORKERS_ENV

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")


def test_the_parent_of_an_fsdp_run_launches_its_workers_without_importing_the_training_stack(tmp_path, tiny_model):
    train = write_jsonl(tmp_path / "train.jsonl", quickstart_rows(16))
    cfg = make_config(
        tmp_path,
        tiny_model,
        train,
        adapter={"type": "none"},
        resources={"gpus": 0, "sharding": {"strategy": "fsdp"}},
    )
    launched = tmp_path / "launched"
    # The parent as `kubetune-trainer train` runs it, with the workers' launcher replaced by a process that
    # records its command line: what the parent imported by then is what it imported to launch.
    code = textwrap.dedent(
        f"""
        import sys
        import kubetune_trainer.train as train
        real = train.launch_command
        def launch(topo, path, **kw):
            open({str(launched)!r}, "w").write(" ".join(real(topo, path, **kw)))
            return [sys.executable, "-c", "pass"]
        train.launch_command = launch
        from kubetune_trainer.cli import main
        rc = main(["train", "--config", {str(write_config(tmp_path, cfg))!r}])
        print("IMPORTED", sorted(m for m in {HEAVY!r} if m in sys.modules))
        sys.exit(rc)
        """
    )
    env = {**trainer_env(), CPU_WORKERS_ENV: "2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "accelerate.commands.launch" in launched.read_text()  # it did launch 2 FSDP workers
    assert "IMPORTED []" in done.stdout, done.stdout
