"""OpenAI fine-tuning requests -> FineTuneJob manifests, and FineTuneJobs -> OpenAI's objects (no cluster)."""

from __future__ import annotations

import pytest

from kubetune.openai import translate as t
from kubetune.openai.errors import OpenAIError

MODELS = {"qwen-small": "hf://Qwen/Qwen2.5-0.5B-Instruct"}
FILES = {"file-train": "pvc://kubetune-files/team-a/files/file-train.jsonl", "file-valid": "pvc://x/valid.jsonl"}


def manifest(**request) -> dict:
    body = {"model": "qwen-small", "training_file": "file-train", **request}
    return t.job_manifest(body, name="ftjob-1", namespace="team-a", file_uri=FILES.get, models=MODELS)


def refusal(**request) -> OpenAIError:
    with pytest.raises(OpenAIError) as err:
        manifest(**request)
    return err.value


def test_supervised_request_maps_onto_the_spec_and_auto_keeps_kubetune_defaults() -> None:
    job = manifest(
        suffix="travel",
        seed=3,
        validation_file="file-valid",
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 0.5}},
        },
    )
    spec = job["spec"]
    assert spec["method"] == "sft" and spec["baseModel"] == {"uri": MODELS["qwen-small"]}
    assert spec["dataset"] == {"train": {"uri": FILES["file-train"]}, "validation": {"uri": FILES["file-valid"]}}
    assert spec["hyperparameters"] == {"epochs": 2.0, "learningRate": t.DEFAULT_LEARNING_RATE * 0.5, "seed": 3}
    assert job["metadata"]["annotations"]["kubetune.dev/openai-suffix"] == "travel"


def test_dpo_beta_and_reinforcement_graders() -> None:
    dpo = manifest(method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3}}})
    assert dpo["spec"]["method"] == "dpo" and dpo["spec"]["dpo"] == {"beta": 0.3}
    grader = {
        "type": "string_check",
        "name": "right",
        "input": "{{sample.output_text}}",
        "reference": "{{item.sql}}",
        "operation": "eq",
    }
    rft = manifest(method={"type": "reinforcement", "reinforcement": {"grader": grader}})
    assert rft["spec"]["rft"] == {"graders": [{"type": "exact_match", "field": "sql", "name": "right"}]}
    python = refusal(method={"type": "reinforcement", "reinforcement": {"grader": {"type": "python", "source": "x"}}})
    assert python.param == "method.reinforcement.grader.type"


def test_refusals_name_the_request_field() -> None:
    unknown = refusal(model="gpt-4o-mini")
    assert unknown.status == 400 and unknown.param == "model" and "qwen-small" in unknown.message
    assert refusal(training_file="file-nope").status == 404
    assert refusal(method={"type": "supervised", "supervised": {"hyperparameters": {"beta": 1}}}).param == (
        "method.supervised.hyperparameters.beta"
    )
    # admission (the same as kubectl apply / kubetune validate): epochs must be positive
    zero = refusal(method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}})
    assert zero.param == "method.supervised.hyperparameters.n_epochs" and "epochs" in zero.message
    assert refusal(method={"type": "magic"}).param == "method.type"


def test_a_fine_tuned_model_continues_from_its_job() -> None:
    body = {"model": "ft:qwen-small:travel:ftjob-0", "training_file": "file-train"}
    job = t.job_manifest(
        body, name="ftjob-2", namespace="a", file_uri=FILES.get, models=MODELS, job_exists={"ftjob-0"}.__contains__
    )
    assert job["spec"]["baseModel"] == {"fromJob": {"name": "ftjob-0", "checkpoint": "best"}}


def ftj(phase: str | None, **extra) -> dict:
    job = manifest(suffix="travel")
    job["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    job["status"] = {"phase": phase, **extra} if phase else {}
    return job


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        (None, "validating_files"),
        ("Pending", "queued"),
        ("Queued", "queued"),
        ("Validating", "validating_files"),
        ("Running", "running"),
        ("Succeeded", "succeeded"),
        ("Failed", "failed"),
    ],
)
def test_phases_map_to_openai_statuses(phase: str | None, status: str) -> None:
    assert t.job_view(ftj(phase))["status"] == status


def test_cancelled_and_finished_views() -> None:
    job = ftj("Running")
    job["metadata"]["annotations"].update(t.cancel_patch("2026-01-01T00:01:00Z")["metadata"]["annotations"])
    assert t.job_view(job)["status"] == "cancelled"
    done = t.job_view(ftj("Succeeded", completionTime="2026-01-01T01:00:00Z"))
    assert done["fine_tuned_model"] == "ft:qwen-small:travel:ftjob-1" and done["finished_at"] == 1767229200
    failed = ftj(
        "Failed",
        conditions=[
            {"type": "Failed", "status": "True", "reason": "DataValidationFailed", "message": "train.jsonl:7: bad"}
        ],
    )
    assert t.job_view(failed)["error"] == {
        "code": "DataValidationFailed",
        "message": "train.jsonl:7: bad",
        "param": "training_file",
    }


def test_events_checkpoints_and_pages() -> None:
    job = ftj(
        "Running",
        progress={"step": 5, "totalSteps": 10},
        metrics={"trainLoss": 0.5},
        checkpoints=[{"name": "checkpoint-5", "step": 5, "metrics": {"eval_loss": 0.7}}],
    )
    events = [
        {"metadata": {"uid": "u1"}, "reason": "Created", "message": "Job made", "lastTimestamp": "2026-01-01T00:00:05Z"}
    ]
    view = t.events_view(job, events)
    assert [e["message"] for e in view] == ["Step 5/10: training loss=0.5000", "Created: Job made"]
    (ckpt,) = t.checkpoints_view(job)
    assert ckpt["step_number"] == 5 and ckpt["metrics"] == {"eval_loss": 0.7, "step": 5}
    items = [{"id": str(i)} for i in range(5)]
    assert [x["id"] for x in t.page(items, "1", 2)["data"]] == ["2", "3"] and t.page(items, "3", 2)["has_more"] is False


def supervised(**hyperparameters) -> dict:
    return {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}


@pytest.mark.parametrize(
    ("hyperparameters", "param"),
    [
        ({"batch_size": 2.7}, "batch_size"),  # was truncated to 2
        ({"n_epochs": 2.5}, "n_epochs"),  # was accepted and echoed as 2.5
        ({"n_epochs": True}, "n_epochs"),  # was 1
        ({"learning_rate_multiplier": True}, "learning_rate_multiplier"),
        ({"learning_rate_multiplier": "2"}, "learning_rate_multiplier"),
    ],
)
def test_hyperparameters_are_strictly_typed(hyperparameters: dict, param: str) -> None:
    err = refusal(method=supervised(**hyperparameters))
    assert err.status == 400 and err.param == f"method.supervised.hyperparameters.{param}"


def test_learning_rate_multiplier_limit_is_named_as_the_user_sent_it() -> None:
    limit = t.MAX_LEARNING_RATE / t.DEFAULT_LEARNING_RATE
    assert manifest(method=supervised(learning_rate_multiplier=limit))["spec"]["hyperparameters"]["learningRate"] == (
        pytest.approx(t.MAX_LEARNING_RATE)
    )
    err = refusal(method=supervised(learning_rate_multiplier=limit * 2))
    assert err.param == "method.supervised.hyperparameters.learning_rate_multiplier"
    assert f"at most {limit:g}" in err.message and "learningRate" not in err.message


@pytest.mark.parametrize("seed", [2**32, -1, 1.5, True])
def test_seeds_outside_the_trainers_range_are_refused(seed: object) -> None:
    err = refusal(seed=seed)
    assert err.param == "seed" and "4294967295" in err.message
    assert manifest(seed=2**32 - 1)["spec"]["hyperparameters"]["seed"] == 2**32 - 1


def test_metadata_is_openai_shaped_and_any_valid_key_round_trips() -> None:
    metadata = {"team name": "Ünïcode ok", "k" * 64: "v" * 512}
    job = manifest(metadata=metadata)
    assert [k for k in job["metadata"]["annotations"] if "metadata" in k] == ["kubetune.dev/openai-metadata"]
    job["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert t.job_view(job)["metadata"] == metadata
    assert refusal(metadata={"n": {"nested": 1}}).param == "metadata.n"
    assert refusal(metadata={"n": 1}).param == "metadata.n"
    assert refusal(metadata={"k" * 65: "v"}).param == "metadata"
    assert refusal(metadata={"v": "x" * 513}).param == "metadata.v"
    assert refusal(metadata={str(i): "v" for i in range(17)}).param == "metadata"


def test_a_dpo_job_on_a_chat_file_is_refused_as_kubetune_validate_does() -> None:
    body = {"model": "qwen-small", "training_file": "file-train", "method": {"type": "dpo"}}
    with pytest.raises(OpenAIError) as err:
        t.job_manifest(
            body, name="ftjob-1", namespace="team-a", file_uri=FILES.get, models=MODELS, file_format=lambda _: "chat"
        )
    assert err.value.status == 400 and err.value.param == "training_file"
    assert "dpo" in err.value.message and "chat" in err.value.message
    ok = t.job_manifest(
        body, name="ftjob-1", namespace="team-a", file_uri=FILES.get, models=MODELS, file_format=lambda _: "preference"
    )
    assert ok["spec"]["dataset"]["format"] == "preference"


def test_the_requested_suspend_state_shows_before_the_operator_acts() -> None:
    paused = ftj("Queued")
    paused["spec"]["suspend"] = True
    assert t.job_view(paused)["status"] == "paused"
    resumed = ftj("Suspended")
    resumed["spec"]["suspend"] = False
    assert t.job_view(resumed)["status"] == "queued"
