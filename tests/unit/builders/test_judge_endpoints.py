"""A judge served by a kubetune ModelDeployment (endpoint.modelDeployment): its status.endpoint reaches the run
config's judgeEndpoints on a cluster and in `kubetune run`; while it does not serve, the run waits (cluster) or
stops with the field named (locally); `kubetune run` serves it before the resources that use it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubetune.api import Evaluation, FineTuneJob, ModelDeployment
from kubetune.api.runconfig import ProgressSink, StorageMap
from kubetune.builders.evaluation import run_config
from kubetune.builders.runconfig import JudgeNotReady, resolve_judge_endpoints, train_run_config
from kubetune.builders.training import job_run_config
from kubetune.local.judges import judge_endpoints as local_judge_endpoints
from kubetune.local.plan import PlanError, load, order

MD_JUDGE = {"endpoint": {"modelDeployment": {"name": "judge"}}, "rubric": "Correct?", "range": {"min": 0, "max": 10}}
ENDPOINT = "http://judge.team.svc:8000/v1"


def ftj(name: str = "travel", judge: dict | None = None) -> dict:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {
            "method": "rft",
            "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "dataset": {"train": {"uri": "pvc://datasets/travel/train.jsonl"}},
            "rft": {"graders": [{"type": "exact_match"}, {"type": "judge", "judge": judge or MD_JUDGE}]},
        },
    }


def evaluation(safety_judge: bool = False) -> dict:
    spec: dict = {
        "model": {"uri": "pvc://models/travel/final"},
        "baseline": {"none": True},
        "dataset": {"uri": "pvc://datasets/travel/test.jsonl"},
        "metrics": ["judge"],
        "judge": MD_JUDGE,
    }
    if safety_judge:
        spec["safety"] = {"scorer": "judge", "judge": {"endpoint": {"modelDeployment": {"name": "safety-judge"}}}}
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": "travel-eval", "namespace": "team"},
        "spec": spec,
    }


def deployment(name: str = "judge", status: dict | None = None) -> dict:
    doc: dict = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-7B-Instruct"}},
    }
    if status is not None:
        doc["status"] = status
    return doc


READY = {"phase": "Ready", "endpoint": ENDPOINT}


def md(name: str = "judge", status: dict | None = None) -> ModelDeployment:
    return ModelDeployment.model_validate(deployment(name, status))


def test_ready_judge_deployment_fills_the_training_run_config():
    job = FineTuneJob.model_validate(ftj())
    endpoints = resolve_judge_endpoints(job.spec, {"judge": md(status=READY)})
    cfg = job_run_config(job, judge_endpoints=endpoints)
    assert cfg.judge_endpoints == {"judge": ENDPOINT}
    assert cfg.to_k8s()["judgeEndpoints"] == {"judge": ENDPOINT}


@pytest.mark.parametrize(
    ("found", "says"),
    [
        (None, "does not exist"),
        (md(status={"phase": "Deploying"}), "it is Deploying"),
        (md(), "it has not started"),
        (md(status={"phase": "Ready"}), "it is Ready"),  # Ready without an endpoint: not usable yet
    ],
)
def test_judge_deployment_not_serving_names_the_grader_field(found, says):
    job = FineTuneJob.model_validate(ftj())
    with pytest.raises(JudgeNotReady) as err:
        resolve_judge_endpoints(job.spec, {"judge": found})
    assert str(err.value).startswith("spec.rft.graders[1].judge.endpoint.modelDeployment: ")
    assert "'judge'" in str(err.value) and says in str(err.value)


def test_run_config_is_not_built_without_the_judge_endpoint():
    """The builders never hand the trainer a run config whose judge it cannot find."""
    job = FineTuneJob.model_validate(ftj())
    with pytest.raises(JudgeNotReady, match=r"graders\[1\]"):
        train_run_config(job, storage=StorageMap(), output_dir="/out", progress=ProgressSink())


def test_url_judges_need_no_deployment():
    url_judge = {**MD_JUDGE, "endpoint": {"url": "http://judge.example/v1"}, "model": "j"}
    job = FineTuneJob.model_validate(ftj(judge=url_judge))
    assert resolve_judge_endpoints(job.spec, {}) == {}
    assert job_run_config(job).judge_endpoints == {}


def test_evaluation_metric_and_safety_judges_are_both_resolved():
    ev = Evaluation.model_validate(evaluation(safety_judge=True))
    with pytest.raises(JudgeNotReady, match=r"^spec\.safety\.judge\.endpoint\.modelDeployment: .*'safety-judge'"):
        resolve_judge_endpoints(ev.spec, {"judge": md(status=READY)})
    other = {"phase": "Ready", "endpoint": "http://safety:8000/v1"}
    endpoints = resolve_judge_endpoints(ev.spec, {"judge": md(status=READY), "safety-judge": md("safety-judge", other)})
    cfg = run_config(ev, None, judge_endpoints=endpoints)
    assert cfg.judge_endpoints == {"judge": ENDPOINT, "safety-judge": "http://safety:8000/v1"}


def write(tmp_path: Path, *docs: dict) -> Path:
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_local_plan_serves_the_judge_deployment_first(tmp_path):
    items = order(load(write(tmp_path, ftj(), evaluation(), deployment())))
    kinds = [f"{it.kind}/{it.name}" for it in items]
    assert kinds.index("ModelDeployment/judge") < kinds.index("FineTuneJob/travel")
    assert kinds.index("ModelDeployment/judge") < kinds.index("Evaluation/travel-eval")


def test_local_plan_refuses_a_judge_deployment_it_cannot_serve(tmp_path):
    with pytest.raises(PlanError) as err:
        order(load(write(tmp_path, ftj())))
    assert "spec.rft.graders[1].judge.endpoint.modelDeployment: ModelDeployment 'judge' is not defined" in str(
        err.value
    )


class _Child:
    def __init__(self, rc: int | None) -> None:
        self.rc = rc

    def poll(self) -> int | None:
        return self.rc


class _Run:
    """What local.judges reads of a Run: the servers it started, the resources with their status, --no-serve."""

    def __init__(self, servers, resources, no_serve: bool = False) -> None:
        self.servers, self.no_serve, self._resources = servers, no_serve, resources

    def get_as(self, key, cls):
        found = self._resources.get(key)
        return found if isinstance(found, cls) else None


def test_local_run_uses_the_endpoint_of_the_judge_it_serves():
    served = md(status={"phase": "Ready", "endpoint": "http://127.0.0.1:8011/v1"})
    run = _Run([(served, _Child(None))], {("team", "ModelDeployment", "judge"): served})
    job = FineTuneJob.model_validate(ftj())
    assert local_judge_endpoints(job, run) == {"judge": "http://127.0.0.1:8011/v1"}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("servers", "no_serve", "says"),
    [([], True, "--no-serve starts no server"), ([], False, "not served by this run")],
)
def test_local_run_without_a_served_judge_says_why(servers, no_serve, says):
    # An earlier run saved the deployment Ready at a port its stopped server no longer answers on.
    saved = md(status=READY)
    run = _Run(servers, {("team", "ModelDeployment", "judge"): saved}, no_serve=no_serve)
    with pytest.raises(JudgeNotReady) as err:
        local_judge_endpoints(FineTuneJob.model_validate(ftj()), run)  # type: ignore[arg-type]
    assert str(err.value).startswith("spec.rft.graders[1].judge.endpoint.modelDeployment: ModelDeployment 'judge'")
    assert says in str(err.value)
