"""Evaluation manifests (Job, run config, RBAC); the status written from the Job is in tests/unit/status."""

from __future__ import annotations

import json

from kubetune.api import Evaluation, FineTuneJob
from kubetune.builders import evaluation as ev

NOW = "2025-01-01T00:00:00Z"
CLAIM = "pvc://travel-data/output"


def job(checkpoints=(100, 200), claim=None) -> FineTuneJob:
    spec = {
        "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct", "tokenSecretRef": {"name": "hf", "key": "token"}},
        "dataset": {"train": {"uri": "pvc://datasets/travel/train.jsonl"}},
    }
    if claim:
        spec["storage"] = {"claimName": claim}
    return FineTuneJob.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "ns", "uid": "j-1"},
            "spec": spec,
            "status": {
                "phase": "Running",
                "checkpoints": [
                    {"name": f"checkpoint-{s}", "step": s, "uri": f"{CLAIM}/checkpoint-{s}"} for s in checkpoints
                ],
            },
        }
    )


def evaluation(generation=1, status=None, **spec) -> Evaluation:
    return Evaluation.model_validate(
        {
            "metadata": {"name": "travel-eval", "namespace": "ns", "uid": "e-1", "generation": generation},
            "spec": {
                "model": {"fineTuneJob": {"name": "travel"}},
                "dataset": {"uri": "pvc://datasets/travel/test.jsonl"},
                "metrics": ["exact_match", "prompt_tokens"],
                "baseline": {"fewShot": 2},
                "resources": {"gpus": 1},
                **spec,
            },
            "status": status,
        }
    )


def test_eval_job_runs_the_shared_image_on_the_checkpoints_with_gpu_limits():
    e, j = evaluation(), job()
    config = ev.run_config(e, j)
    batch = ev.build_eval_job(e, j, config)
    pod = batch["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["kubetune-trainer", "evaluate", "--config", "/etc/kubetune/run-config.json"]
    assert container["image"] == "ghcr.io/kubetune/trainer:0.1.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["serviceAccountName"] == "travel-eval-eval-runner"
    assert batch["metadata"]["ownerReferences"][0]["uid"] == "e-1"
    assert batch["metadata"]["annotations"]["kubetune.dev/evaluated-models"] == "checkpoint-100,checkpoint-200"
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf"
    # Checkpoints and data are read-only; the job's claim is writable only at the output mount.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/mnt/pvc/travel-data"]["readOnly"] is True
    assert mounts["/mnt/pvc/datasets"]["readOnly"] is True
    assert not mounts["/mnt/kubetune"].get("readOnly")
    assert config.output_dir == "/mnt/kubetune/evaluations/travel-eval"
    assert config.output_uri == "pvc://travel-data/evaluations/travel-eval"
    assert [t.name for t in config.targets] == ["checkpoint-100", "checkpoint-200"]
    assert config.baseline.uri == "hf://Qwen/Qwen2.5-0.5B-Instruct"
    assert config.progress.backend == "kubernetes"
    cm = ev.build_config_map(e, config)
    assert cm["metadata"]["name"] == batch["metadata"]["name"]
    assert json.loads(cm["data"]["run-config.json"])["kind"] == "EvalRunConfig"


def test_output_folder_in_a_shared_claim_is_per_job():
    e, j = evaluation(), job(claim="team-pvc")
    assert ev.output_uri(e, j) == "pvc://team-pvc/kubetune/travel/evaluations/travel-eval"


def test_new_checkpoints_or_a_new_spec_make_a_new_job_name():
    e = evaluation()
    first = ev.eval_job_name(e, ev.run_config(e, job()).targets)
    assert first.startswith("travel-eval-eval-") and len(first) <= 63
    assert first == ev.eval_job_name(e, ev.run_config(e, job()).targets)
    assert first != ev.eval_job_name(e, ev.run_config(e, job(checkpoints=(100, 200, 300))).targets)
    e2 = evaluation(generation=2)
    assert first != ev.eval_job_name(e2, ev.run_config(e2, job()).targets)


def test_rbac_lets_the_pod_patch_only_its_evaluations_status():
    sa, role, binding = ev.build_rbac(evaluation())
    (rule,) = role["rules"]
    assert rule["resources"] == ["evaluations/status"] and rule["resourceNames"] == ["travel-eval"]
    assert set(rule["verbs"]) == {"get", "patch"}
    assert binding["subjects"][0]["name"] == sa["metadata"]["name"] == role["metadata"]["name"]


def test_eval_pods_report_their_failure_reason_as_the_termination_message():
    e, j = evaluation(), job()
    (container,) = ev.build_eval_job(e, j, ev.run_config(e, j))["spec"]["template"]["spec"]["containers"]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
