"""spec.tracking reaches the training and evaluation pods as Secret references, never as values; the run
config carries the job's identity (uid, generation) for the run's tags, and the Evaluation the job's run id."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from kubetune.api import Evaluation, FineTuneJob
from kubetune.builders.evaluation import build_eval_job, run_config
from kubetune.builders.training import build_run_config_map, build_training_job, job_run_config

TRACKING = {
    "mlflow": {"uri": "https://mlflow.example.com", "experiment": "travel", "credentialsSecretRef": {"name": "mlf"}},
    "wandb": {"project": "travel", "apiKeySecretRef": {"name": "wb", "key": "key"}},
}


def ftj(tracking=None, status=None) -> FineTuneJob:
    spec = {
        "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
        "dataset": {"train": {"uri": "pvc://datasets/travel/train.jsonl"}},
    }
    if tracking is not None:
        spec["tracking"] = tracking
    doc = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "travel", "namespace": "team", "uid": "uid-1", "generation": 3},
        "spec": spec,
    }
    if status is not None:
        doc["status"] = status
    return FineTuneJob.model_validate(doc)


def env_of(manifest) -> dict[str, dict]:
    return {e["name"]: e for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_tracking_credentials_reach_the_trainer_from_the_secret_only():
    env = env_of(build_training_job(ftj(TRACKING)))
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "mlf", "key": key, "optional": True}}}
    assert env["WANDB_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "wb", "key": "key"}}
    assert not any(name.startswith(("MLFLOW_", "WANDB_")) for name in env_of(build_training_job(ftj())))


def test_the_run_config_names_the_job_but_holds_no_credentials():
    job = ftj(TRACKING)
    cfg = job_run_config(job)
    assert (cfg.job.uid, cfg.job.generation) == ("uid-1", 3)
    text = build_run_config_map(job, cfg)["data"]["run-config.json"]
    assert "https://mlflow.example.com" in text and "MLFLOW_TRACKING_PASSWORD" not in text


def test_an_evaluation_logs_into_the_jobs_run_once_the_trainer_recorded_it():
    evaluation = Evaluation.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "Evaluation",
            "metadata": {"name": "travel-eval", "namespace": "team", "uid": "uid-2"},
            "spec": {"model": {"fineTuneJob": {"name": "travel"}}, "dataset": {"uri": "pvc://datasets/test.jsonl"}},
        }
    )
    done = {
        "phase": "Succeeded",
        "checkpoints": [{"name": "final", "step": 4, "uri": "pvc://travel-data/output/final"}],
    }
    before = ftj(TRACKING, status=done)
    assert run_config(evaluation, before).tracking is None
    job = ftj(TRACKING, status={**done, "tracking": {"runId": "r123", "experimentId": "7"}})
    cfg = run_config(evaluation, job)
    assert cfg.tracking is not None and (cfg.tracking.uri, cfg.tracking.run_id) == (
        "https://mlflow.example.com",
        "r123",
    )
    env = env_of(build_eval_job(evaluation, job, cfg))
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mlf"
    assert json.loads(cfg.dump())["tracking"] == {"uri": "https://mlflow.example.com", "runId": "r123"}


@pytest.mark.parametrize(
    "tracking",
    [
        {},  # neither mlflow nor wandb
        {"mlflow": {"uri": "ftp://mlflow"}},
        {"mlflow": {"uri": "https://m", "experiment": "x" * 251}},
        {"wandb": {"project": "p"}},  # no API key
    ],
)
def test_a_tracking_section_that_cannot_work_is_refused(tracking):
    with pytest.raises(ValidationError):
        ftj(tracking)
