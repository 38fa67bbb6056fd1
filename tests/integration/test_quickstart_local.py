"""`kubetune run` on a miniature quickstart: train, evaluate, serve, skip what is done, resume after Ctrl-C,
and stop before training when a dataset is broken. The full quickstart is `make demo` (minutes, not seconds)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart"
JOB_DIR = ("team-travel", "finetunejobs", "travel-assistant")
CLAIM_OUTPUT = ("namespaces", "team-travel", "pvc", "travel-assistant-data", "output")


def kubetune(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def mini_quickstart(tmp_path: Path, *, max_steps: int = 6, every: int = 3, model: bool = True) -> Path:
    """The quickstart's manifests and data, cut down to seconds: few examples, steps and test queries."""
    folder = tmp_path / "quickstart"
    (folder / "data").mkdir(parents=True)
    for split, n in (("train", 64), ("validation", 16), ("test", 10)):
        lines = (QUICKSTART / "data" / f"{split}.jsonl").read_text().splitlines(keepends=True)[:n]
        (folder / "data" / f"{split}.jsonl").write_text("".join(lines))
    job, evaluation, deployment = yaml.safe_load_all((QUICKSTART / "quickstart.yaml").read_text())
    job["spec"]["hyperparameters"].update(maxSteps=max_steps, batchSize=8)
    job["spec"]["checkpoints"].update(every=every, keep=2)
    evaluation["spec"]["generation"]["maxNewTokens"] = 8
    # A model this small learns nothing in a few steps; what it does beat the baseline on is prompt size.
    evaluation["spec"]["passCriteria"] = [{"metric": "prompt_tokens", "max": 100}]
    evaluation["spec"]["selectBy"] = "prompt_tokens"
    (folder / "quickstart.yaml").write_text(yaml.safe_dump_all([job, evaluation, deployment], sort_keys=False))
    if model:
        from kubetune_trainer.tiny import init_tiny

        init_tiny(
            tmp_path / "runs" / "namespaces" / "team-travel" / "pvc" / "models" / "tiny-travel",
            [folder / "data" / "train.jsonl"],
            size="nano",
        )
    return folder


def start_run_until(folder: Path, runs: Path, ready: Callable[[], bool], what: str) -> subprocess.Popen:
    """`kubetune run --no-serve` in the background, returned once `ready()` holds (within two minutes)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubetune.cli", "run", str(folder), "--runs-dir", str(runs), "--no-serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, what
        time.sleep(0.05)
    return proc


def resource(runs: Path, *parts: str) -> dict:
    return json.loads(runs.joinpath(*parts, "resource.json").read_text())


@pytest.mark.slow
def test_mini_quickstart_trains_evaluates_serves_then_skips_what_is_done(tmp_path):
    folder = mini_quickstart(tmp_path)
    runs = tmp_path / "runs"
    first = kubetune("run", str(folder), "--runs-dir", str(runs), "--no-wait", "--port", "18321")
    assert first.returncode == 0, first.stdout + first.stderr

    job = resource(runs, *JOB_DIR)["status"]
    assert job["phase"] == "Succeeded" and job["progress"]["step"] == 6
    assert {cp["name"] for cp in job["checkpoints"]} >= {"checkpoint-6", "final"}
    ev = resource(runs, "team-travel", "evaluations", "travel-assistant-eval")["status"]
    assert (
        ev["passed"] is True
        and ev["baseline"]["metrics"]["prompt_tokens"] > ev["results"][0]["metrics"]["prompt_tokens"]
    )
    md = resource(runs, "team-travel", "modeldeployments", "travel-assistant")["status"]
    assert md["servedCheckpoint"] == ev["best"] and md["revisions"][0]["checkpoint"] == ev["best"]
    assert md["phase"] == "Pending" and "was served until" in md["message"]  # --no-wait: stopped after one answer
    assert "Ready" in first.stdout and "http://127.0.0.1:18321/v1" in first.stdout
    assert "answer:" in first.stdout and "baseline" in first.stdout
    report = (runs / "report.html").read_text()
    assert "data:image/png;base64," in report and (runs / "loss-team-travel-travel-assistant.png").exists()

    second = kubetune("run", str(folder), "--runs-dir", str(runs), "--no-serve")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("done in an earlier run") == 2
    assert "would serve" in second.stdout


@pytest.mark.slow
def test_ctrl_c_during_training_leaves_a_checkpoint_and_the_next_run_resumes(tmp_path):
    folder = mini_quickstart(tmp_path, max_steps=60, every=4)
    job_only = next(yaml.safe_load_all((folder / "quickstart.yaml").read_text()))  # what resumes is the training
    (folder / "quickstart.yaml").write_text(yaml.safe_dump(job_only, sort_keys=False))
    runs = tmp_path / "runs"
    output = runs.joinpath(*CLAIM_OUTPUT)
    checkpoint = output / "checkpoint-4" / "kubetune.json"
    proc = start_run_until(folder, runs, checkpoint.exists, "no checkpoint appeared")
    proc.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "again" in out and "resumes from checkpoint-" in out
    job = resource(runs, *JOB_DIR)["status"]
    assert job["phase"] == "Suspended"
    assert not (output / "final").exists()
    again = kubetune("run", str(folder), "--runs-dir", str(runs), "--no-serve")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from checkpoint-" in again.stdout
    log = (runs.joinpath(*JOB_DIR) / "train.log").read_text()
    assert "resuming from" in log
    assert resource(runs, *JOB_DIR)["status"]["progress"]["step"] == 60


@pytest.mark.slow
def test_a_trainer_stopped_from_outside_saves_a_checkpoint_and_the_job_is_suspended_not_failed(tmp_path):
    import psutil

    folder = mini_quickstart(tmp_path, max_steps=400, every=1000)  # no periodic checkpoint before the stop
    runs = tmp_path / "runs"
    output = runs.joinpath(*CLAIM_OUTPUT)
    progress = runs.joinpath(*JOB_DIR) / "progress.jsonl"
    proc = start_run_until(
        folder,
        runs,
        lambda: progress.exists() and '"event": "progress"' in progress.read_text(),
        "training did not start",
    )
    trainer = next(p for p in psutil.Process(proc.pid).children(recursive=True) if "kubetune_trainer" in p.cmdline())
    trainer.send_signal(signal.SIGTERM)  # e.g. the machine shutting down, or `kill` of the trainer itself
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, out
    assert "resumes from checkpoint-" in out
    assert resource(runs, *JOB_DIR)["status"]["phase"] == "Suspended"
    saved = [d for d in output.glob("checkpoint-*") if (d / "kubetune.json").exists()]
    assert len(saved) == 1 and not (output / "final").exists()


def test_broken_dataset_stops_the_run_before_training_with_line_numbers(tmp_path):
    folder = mini_quickstart(tmp_path, model=False)
    (tmp_path / "runs" / "namespaces" / "team-travel" / "pvc" / "models" / "tiny-travel").mkdir(parents=True)
    train = folder / "data" / "train.jsonl"
    lines = train.read_text().splitlines(keepends=True)
    lines[4] = '{"messages": [{"role": "user", "content": "Rooms in Rome?"}\n'  # cut short: not JSON
    lines[8] = json.dumps({"messages": [{"role": "user", "content": "Hotels in Paris"}]}) + "\n"  # no answer
    train.write_text("".join(lines))

    result = kubetune("run", str(folder), "--runs-dir", str(tmp_path / "runs"), "--no-serve", timeout=60)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert f"{train}:5" in out and f"{train}:9" in out
    assert "nothing was started" in out
    assert not (tmp_path / "runs" / "team-travel").exists()
    assert not (tmp_path / "runs" / "namespaces" / "team-travel" / "pvc" / "travel-assistant-data").exists()


def test_missing_base_model_names_the_field_and_how_to_make_one(tmp_path):
    folder = mini_quickstart(tmp_path, model=False)
    result = kubetune("run", str(folder), "--runs-dir", str(tmp_path / "runs"), timeout=60)
    assert result.returncode == 1
    assert "spec.baseModel.uri: pvc://models/tiny-travel does not exist" in result.stdout
    assert "kubetune model init-tiny" in result.stdout


def test_quickstart_data_is_what_its_generator_makes():
    result = subprocess.run(
        [sys.executable, str(QUICKSTART / "generate.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_quickstart_answers_are_valid_stayql_and_test_questions_are_held_out():
    sys.path.insert(0, str(QUICKSTART))
    try:
        import generate
    finally:
        sys.path.remove(str(QUICKSTART))
    rows = {s: [json.loads(x) for x in (QUICKSTART / "data" / f"{s}.jsonl").open()] for s in ("train", "test")}
    for row in rows["train"] + rows["test"]:
        generate.parse(row["messages"][-1]["content"])
    train_questions = {r["messages"][1]["content"].lower() for r in rows["train"]}
    assert not any(r["messages"][1]["content"].lower() in train_questions for r in rows["test"])
