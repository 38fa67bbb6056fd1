"""spec.tracking.mlflow against a real MLflow tracking server started here (`mlflow server` from PyPI, in its
own virtualenv made by hack/mlflowserver/setup.sh), read back through MLflow's own client.

`kubetune run` trains the mini quickstart, is stopped by Ctrl-C after a checkpoint, runs again (the trainer
resumes, and so does the MLflow run), then the Evaluation logs its results and report into the same run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from test_quickstart_local import JOB_DIR, kubetune, mini_quickstart, resource, start_run_until

REPO = Path(__file__).parents[2]
SETUP = REPO / "hack" / "mlflowserver" / "setup.sh"
EXPERIMENT = "kubetune-tracking-test"
CLAIMS = ("namespaces", "team-travel", "pvc")  # the quickstart's namespace is not default
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """The tracking server's URI; its store (SQLite) and artifacts in a temporary folder."""
    installed = subprocess.run([str(SETUP)], capture_output=True, text=True, timeout=900, check=False)
    if installed.returncode != 0:
        pytest.fail(f"could not install the MLflow server ({SETUP}):\n{installed.stderr[-3000:]}")
    mlflow = installed.stdout.strip().splitlines()[-1]
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            mlflow,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Without MLflow's job runner: seven huey consumers, each importing mlflow, that nothing here uses.
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, **SERVER_ENV},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the MLflow server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield uri
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def with_tracking(folder: Path, uri: str) -> None:
    manifest = folder / "quickstart.yaml"
    job, evaluation, deployment = yaml.safe_load_all(manifest.read_text())
    job["spec"]["tracking"] = {"mlflow": {"uri": uri, "experiment": EXPERIMENT, "runName": "travel-v1"}}
    manifest.write_text(yaml.safe_dump_all([job, evaluation, deployment], sort_keys=False))


@pytest.mark.slow
def test_a_job_logs_params_metrics_checkpoints_and_its_evaluation_into_one_mlflow_run(tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    from kubetune_trainer.tiny import init_tiny

    folder = mini_quickstart(tmp_path, max_steps=12, every=4, model=False)
    with_tracking(folder, mlflow_server)
    runs = tmp_path / "runs"
    init_tiny(runs.joinpath(*CLAIMS, "models", "tiny-travel"), [folder / "data" / "train.jsonl"], size="nano")
    output = runs.joinpath(*CLAIMS, "travel-assistant-data", "output")

    # First run: stopped by Ctrl-C once checkpoint-4 is complete.
    proc = start_run_until(folder, runs, (output / "checkpoint-4" / "kubetune.json").exists, "no checkpoint")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    first_id = resource(runs, *JOB_DIR)["status"]["tracking"]["runId"]
    client = MlflowClient(tracking_uri=mlflow_server)
    assert client.get_run(first_id).info.status == "KILLED"

    # Second run: resumes the training and the same MLflow run, then evaluates into it.
    second = kubetune("run", str(folder), "--runs-dir", str(runs), "--no-serve", timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    status = resource(runs, *JOB_DIR)["status"]
    assert status["phase"] == "Succeeded"
    tracking = status["tracking"]
    assert tracking["runId"] == first_id
    assert tracking["url"] == f"{mlflow_server}/#/experiments/{tracking['experimentId']}/runs/{first_id}"

    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [first_id]
    run = client.get_run(first_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "travel-v1"

    params = run.data.params
    assert params["method"] == "sft"
    assert params["adapter.type"] == "none"
    assert params["hyperparameters.maxSteps"] == "12"
    assert params["baseModel"] == "pvc://models/tiny-travel"
    assert params["data.trainExamples"] == "64" and params["data.format"] == "chat"
    assert params["learning_rate"]  # TrainingArguments, from transformers' MLflowCallback

    tags = run.data.tags
    assert tags["kubetune.kind"] == "FineTuneJob"
    assert tags["kubetune.namespace"] == "team-travel" and tags["kubetune.name"] == "travel-assistant"
    assert tags["kubetune.bestCheckpoint"] == status["bestCheckpoint"]

    loss_steps = {m.step for m in client.get_metric_history(first_id, "loss")}
    assert {1, 4, 12} <= loss_steps  # logged per step, before and after the resume
    ckpt = {m.step: m.value for m in client.get_metric_history(first_id, "checkpoint/eval_loss")}
    assert set(ckpt) >= {4, 8, 12}
    by_name = {cp["name"]: cp for cp in status["checkpoints"]}
    assert ckpt[8] == pytest.approx(by_name["checkpoint-8"]["metrics"]["eval_loss"])

    # The Evaluation logged into the job's run: its metrics per model, the verdict, the report.
    ev = resource(runs, "team-travel", "evaluations", "travel-assistant-eval")["status"]
    run = client.get_run(first_id)
    for result in ev["results"]:
        key = f"eval/travel-assistant-eval/{result['model']}/prompt_tokens"
        assert run.data.metrics[key] == pytest.approx(result["metrics"]["prompt_tokens"])
    assert "eval/travel-assistant-eval/baseline/prompt_tokens" in run.data.metrics
    assert run.data.tags["kubetune.evaluation.travel-assistant-eval.passed"] == str(ev["passed"]).lower()
    artifacts = {a.path for a in client.list_artifacts(first_id, "evaluations/travel-assistant-eval")}
    assert artifacts == {
        "evaluations/travel-assistant-eval/report.html",
        "evaluations/travel-assistant-eval/results.json",
    }
    report = Path(client.download_artifacts(first_id, "evaluations/travel-assistant-eval/results.json", str(tmp_path)))
    assert json.loads(report.read_text())["evaluation"] == "travel-assistant-eval"
