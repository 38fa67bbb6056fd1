"""A judge's API key reaches the training and evaluation pods as a Secret reference only, under the variable the
trainer reads (kubetune.api.judge), never in the run config."""

from __future__ import annotations

from kubetune.api import Evaluation, FineTuneJob
from kubetune.api.judge import EVAL_API_KEY_ENV, grader_api_key_env
from kubetune.builders.evaluation import build_eval_job, run_config
from kubetune.builders.training import build_run_config_map, build_training_job, job_run_config

JUDGE = {
    "endpoint": {"url": "https://judge.example.com/v1"},
    "model": "judge-model",
    "rubric": "Correct?",
    "range": {"min": 0, "max": 10},
    "apiKeySecretRef": {"name": "judge-key", "key": "token"},
}
DONE = {"phase": "Succeeded", "checkpoints": [{"name": "final", "step": 4, "uri": "pvc://travel-data/output/final"}]}


def ftj(graders: list[dict], status: dict | None = None) -> FineTuneJob:
    doc = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "travel", "namespace": "team", "uid": "uid-1"},
        "spec": {
            "method": "rft",
            "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "dataset": {"train": {"uri": "pvc://datasets/travel/train.jsonl"}},
            "rft": {"graders": graders},
        },
    }
    if status:
        doc["status"] = status
    return FineTuneJob.model_validate(doc)


def env_of(manifest) -> dict[str, dict]:
    return {e["name"]: e for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_a_judge_graders_key_reaches_the_trainer_from_its_secret_only():
    graders = [{"type": "exact_match"}, {"type": "judge", "judge": JUDGE}]
    job = ftj(graders)
    env = env_of(build_training_job(job))
    assert env[grader_api_key_env(1)]["valueFrom"] == {"secretKeyRef": {"name": "judge-key", "key": "token"}}
    assert grader_api_key_env(0) not in env
    text = build_run_config_map(job, job_run_config(job))["data"]["run-config.json"]
    assert "judge-key" in text and "valueFrom" not in text  # the reference, as in the spec; no value


def test_an_evaluations_judge_key_reaches_the_evaluation_pod():
    evaluation = Evaluation.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "Evaluation",
            "metadata": {"name": "travel-eval", "namespace": "team", "uid": "uid-2"},
            "spec": {
                "model": {"fineTuneJob": {"name": "travel"}},
                "dataset": {"uri": "pvc://datasets/test.jsonl"},
                "metrics": ["exact_match", "judge"],
                "judge": JUDGE,
            },
        }
    )
    job = ftj([{"type": "exact_match"}], status=DONE)
    env = env_of(build_eval_job(evaluation, job, run_config(evaluation, job)))
    assert env[EVAL_API_KEY_ENV]["valueFrom"] == {"secretKeyRef": {"name": "judge-key", "key": "token"}}
