"""Child names, storage locations and run configs built from resources."""

import pytest

from kubetune.api import Evaluation, FineTuneJob, ModelDeployment, StorageMap
from kubetune.api.runconfig import ProgressSink
from kubetune.builders import names
from kubetune.builders.runconfig import (
    UnresolvedReference,
    eval_run_config,
    resolve_checkpoint,
    serve_run_config,
    train_run_config,
)


def job(name="travel", spec=None, status=None) -> FineTuneJob:
    spec = spec or {"baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "dataset": {"train": {"uri": "t.jsonl"}}}
    doc = {"apiVersion": "kubetune.dev/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": name, "namespace": "ns"}}
    return FineTuneJob.model_validate({**doc, "spec": spec, "status": status})


def eval_config(ft_job: FineTuneJob, **spec):
    """The run config of an Evaluation of every checkpoint of `ft_job`; `spec` adds to the Evaluation's spec."""
    ev = Evaluation.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "Evaluation",
            "metadata": {"name": "ev"},
            "spec": {"model": {"fineTuneJob": {"name": "travel"}}, "dataset": {"uri": "test.jsonl"}, **spec},
        }
    )
    kw = {"storage": StorageMap(), "output_dir": "/o", "output_uri": None, "progress": ProgressSink()}
    return eval_run_config(ev, job=ft_job, **kw)


DONE = {
    "phase": "Succeeded",
    "checkpoints": [
        {"name": "checkpoint-100", "step": 100, "uri": "pvc://travel-data/output/checkpoint-100"},
        {"name": "checkpoint-200", "step": 200, "uri": "pvc://travel-data/output/checkpoint-200"},
    ],
    "bestCheckpoint": "checkpoint-100",
}


def test_child_names_fit_63_chars_and_stay_distinct():
    a, b = "x" * 60 + "-one", "x" * 60 + "-two"
    assert names.child_name("travel", "train") == "travel-train"
    assert len(names.child_name(a, "train")) == 63 and names.child_name(a, "train").endswith("-train")
    assert names.child_name(a, "train") != names.child_name(b, "train")


def test_output_location_uses_created_claim_or_a_folder_in_the_users_claim():
    assert names.job_output_uri(job()) == "pvc://travel-data/output"
    shared = job(spec={**job().spec.to_k8s(), "storage": {"claimName": "team-pvc"}})
    assert names.job_output_uri(shared) == "pvc://team-pvc/kubetune/travel/output"


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("best", "checkpoint-100"),
        ("latest", "checkpoint-200"),
        ("final", "final"),
        ("checkpoint-200", "checkpoint-200"),
    ],
)
def test_resolve_checkpoint(which, expected):
    assert resolve_checkpoint(job(status=DONE), which).name == expected


def test_resolve_checkpoint_of_unfinished_job_is_none():
    assert resolve_checkpoint(job(status={"phase": "Running"}), "best") is None
    assert resolve_checkpoint(job(status=DONE), "checkpoint-999") is None


def test_train_run_config_needs_resolved_from_job():
    cont = job(spec={"baseModel": {"fromJob": {"name": "travel-v1"}}, "dataset": {"train": {"uri": "t.jsonl"}}})
    kw = {"storage": StorageMap(), "output_dir": "/mnt/kubetune/output", "progress": ProgressSink()}
    with pytest.raises(UnresolvedReference, match="fromJob 'travel-v1'"):
        train_run_config(cont, **kw)
    cfg = train_run_config(cont, source_checkpoint_uri="pvc://travel-v1-data/output/checkpoint-9", **kw)
    assert cfg.base_model_uri.endswith("checkpoint-9")
    assert cfg.job.namespace == "ns" and cfg.output_uri == "pvc://travel-data/output"


def test_eval_run_config_scores_every_checkpoint_against_the_base_with_few_shot():
    with pytest.raises(UnresolvedReference):
        eval_config(job(status={"phase": "Running"}), baseline={"fewShot": 3})
    cfg = eval_config(job(status=DONE), baseline={"fewShot": 3})
    assert [t.name for t in cfg.targets] == ["checkpoint-100", "checkpoint-200"]
    assert cfg.targets[0].base_model_uri == "hf://Qwen/Qwen2.5-0.5B-Instruct"
    assert cfg.baseline.uri == "hf://Qwen/Qwen2.5-0.5B-Instruct"
    assert cfg.few_shot_source_uri == "t.jsonl"


def test_serve_run_config_names_the_model_after_the_deployment():
    md = ModelDeployment.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "travel-assistant"},
            "spec": {"model": {"fineTuneJob": {"name": "travel"}}},
        }
    )
    cfg = serve_run_config(md, model_uri="pvc://c/o/ckpt", base_model_uri=None, storage=StorageMap(), output_dir="/o")
    assert cfg.served_model_name == "travel-assistant" and cfg.port == 8000


def test_all_checkpoints_skips_final_when_it_is_the_last_saved_checkpoint():
    same = {**DONE, "checkpoints": [*DONE["checkpoints"], {"name": "final", "step": 200}]}
    assert [t.name for t in eval_config(job(status=same)).targets] == [
        "checkpoint-100",
        "checkpoint-200",
    ]
    later = {**DONE, "checkpoints": [*DONE["checkpoints"], {"name": "final", "step": 230}]}
    assert [t.name for t in eval_config(job(status=later)).targets][-1] == "final"


def test_adapters_are_evaluated_on_the_base_revision_they_were_trained_on():
    pinned = job(
        spec={
            "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct", "revision": "a1b2c3"},
            "dataset": {"train": {"uri": "t.jsonl"}},
        },
        status=DONE,
    )
    cfg = eval_config(pinned)
    assert {t.base_model_uri for t in cfg.targets} == {"hf://Qwen/Qwen2.5-0.5B-Instruct@a1b2c3"}
    assert cfg.baseline.uri == "hf://Qwen/Qwen2.5-0.5B-Instruct@a1b2c3"
