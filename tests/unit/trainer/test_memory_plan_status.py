"""The trainer plans the run at start and reports the plan into status.memoryPlan (the same patch on a cluster
and in `kubetune run`); the operator turns that status into an Event, a Warning when the run does not fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kubetune.api import FineTuneJob, FineTuneJobSpec, StorageMap
from kubetune.api.runconfig import TrainRunConfig
from kubetune.local.events import apply_event, read_events
from kubetune.status.memoryplan import REASON_DOES_NOT_FIT, REASON_PLANNED, plan_event
from kubetune_trainer.planstatus import report_memory_plan
from kubetune_trainer.progress import JsonlReporter

CONFIGS = Path(__file__).resolve().parents[2] / "fixtures" / "model-configs"


def run_config(tmp_path: Path, config: str, spec: dict) -> TrainRunConfig:
    model = tmp_path / "pvc" / "models" / config
    model.mkdir(parents=True)
    shutil.copy(CONFIGS / config / "config.json", model / "config.json")
    doc = {"baseModel": {"uri": f"pvc://models/{config}"}, "dataset": {"train": {"uri": "pvc://d/t.jsonl"}}, **spec}
    return TrainRunConfig(
        job={"name": "j", "namespace": "ns"},
        storage=StorageMap(pvc_root=str(tmp_path / "pvc")),
        output_dir=str(tmp_path / "out"),
        spec=FineTuneJobSpec.model_validate(doc),
        base_model_uri=f"pvc://models/{config}",
    )


def status_after(tmp_path: Path, cfg: TrainRunConfig, train_tokens: int) -> dict:
    path = tmp_path / "progress.jsonl"
    reporter = JsonlReporter(path)
    report_memory_plan(cfg, {"trainTokens": train_tokens}, reporter)
    reporter.flush()
    status: dict = {}
    for event in read_events(path):
        status = apply_event(status, event)
    return status


def test_the_trainer_reports_the_plan_into_status_and_the_operator_says_it_in_an_event(tmp_path):
    cfg = run_config(tmp_path, "qwen2.5-0.5b", {"resources": {"gpus": 1}})
    status = status_after(tmp_path, cfg, train_tokens=1_000_000)
    plan = status["memoryPlan"]
    assert plan["fits"] is True and plan["sharding"] == "none" and plan["gpuHours"] is not None
    assert "per GPU of 80.0 GiB (fits; lora" in plan["summary"], plan
    job = FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "j"},
            "spec": {"baseModel": {"uri": "hf://a/b"}, "dataset": {"train": {"uri": "t.jsonl"}}},
            "status": status,
        }
    )
    assert job.status.memory_plan.peak_bytes_per_device == plan["peakBytesPerDevice"]  # the CRD's field
    assert plan_event({"status": status}) == ("Normal", REASON_PLANNED, f"memory plan: {plan['summary']}")


def test_a_run_that_does_not_fit_is_a_warning_event_with_a_layout_that_fits(tmp_path):
    spec = {"adapter": {"type": "none"}, "resources": {"gpus": 8, "sharding": {"strategy": "none"}}}
    status = status_after(tmp_path, run_config(tmp_path, "qwen2.5-32b", spec), train_tokens=1_000_000)
    assert status["memoryPlan"]["fits"] is False
    kind, reason, message = plan_event({"status": status})
    assert (kind, reason) == ("Warning", REASON_DOES_NOT_FIT)
    assert "does NOT fit" in message and "a layout that fits: resources.sharding: fsdp" in message, message


def test_no_config_json_skips_the_plan_without_failing(tmp_path):
    cfg = run_config(tmp_path, "qwen2.5-0.5b", {})
    (tmp_path / "pvc" / "models" / "qwen2.5-0.5b" / "config.json").unlink()
    assert report_memory_plan(cfg, {}, JsonlReporter(tmp_path / "p.jsonl")) is None
    assert json.dumps(status_after(tmp_path, cfg, 10)) == "{}"
