"""An Evaluation of a fine-tuned tiny model against its base: improvement, prompt-token saving, pass/fail."""

from __future__ import annotations

import json

import pytest

from kubetune.api.evaluation import EvaluationSpec, EvaluationStatus
from kubetune.api.runconfig import EvalRunConfig, EvalTarget, Identity
from kubetune_trainer.evaluate import criteria, main
from kubetune_trainer.evaluate.runner import run

pytestmark = pytest.mark.slow

CRITERIA = [
    {"metric": "exact_match", "min": 0.9},
    {"metric": "exact_match", "minImprovement": 0.5},
    {"metric": "prompt_tokens", "minImprovement": 10},  # at least 10 fewer prompt tokens than the baseline
]


def _config(task, tmp_path, **spec_overrides) -> EvalRunConfig:
    spec = {
        "model": {"fineTuneJob": {"name": "sentiment"}},
        "baseline": {"fewShot": 3},
        "dataset": {"uri": str(task.test)},
        "metrics": ["exact_match", "accuracy", "f1", "rouge_l", "prompt_tokens", "perplexity", "latency"],
        "generation": {"maxNewTokens": 4, "batchSize": 8},
        "passCriteria": CRITERIA,
        **spec_overrides,
    }
    return EvalRunConfig(
        job=Identity(name="sentiment-eval", namespace="team"),
        spec=EvaluationSpec.model_validate(spec),
        targets=[
            EvalTarget(name=name, uri=str(path), base_model_uri=str(task.base))
            for name, path in task.checkpoints.items()
        ],
        baseline=EvalTarget(name="baseline", uri=str(task.base)),
        few_shot_source_uri=str(task.train),
        output_dir=str(tmp_path / "out"),
        output_uri="pvc://kubetune-sentiment/evaluations/sentiment-eval",
    )


def test_fine_tuned_model_beats_its_few_shot_base_and_passes_by_the_criteria(sentiment_task, tmp_path):
    results = run(_config(sentiment_task, tmp_path))
    status = results["status"]
    EvaluationStatus.model_validate(status)  # the payload is what the CRD's status accepts

    base = status["baseline"]["metrics"]
    assert status["baseline"]["model"].endswith("+ 3-shot")
    by_name = {r["model"]: r for r in status["results"]}
    final = by_name["final"]["metrics"]

    # The base knows nothing; the fine-tuned model labels held-out reviews.
    assert base["exact_match"] <= 0.2
    assert final["exact_match"] >= 0.9
    assert final["accuracy"] >= 0.9 and final["f1"] >= 0.9
    assert by_name["final"]["deltas"]["exact_match"] == pytest.approx(final["exact_match"] - base["exact_match"])
    assert final["perplexity"] < base["perplexity"]
    # The business case: no few-shot examples in the prompt.
    assert final["prompt_tokens"] < base["prompt_tokens"] / 2
    assert by_name["final"]["deltas"]["prompt_tokens"] < -10
    assert final["latency"] > 0

    # Pass/fail exactly by the criteria, for every checkpoint.
    for name, result in by_name.items():
        expected = criteria.check(_config(sentiment_task, tmp_path).spec.pass_criteria, result["metrics"], base)
        assert result["passed"] is (not expected), name
        assert result.get("failures", []) == expected
    assert by_name["final"]["passed"] is True
    assert status["passed"] is True
    assert status["best"] == "final"
    assert not {"conditions", "phase", "evaluatedCheckpoints"} & set(status)  # those belong to the operator
    assert status["report"] == {
        "uri": "pvc://kubetune-sentiment/evaluations/sentiment-eval/report.html",
        "jsonUri": "pvc://kubetune-sentiment/evaluations/sentiment-eval/results.json",
    }

    out = tmp_path / "out"
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["status"] == status
    assert on_disk["examples"][0]["predictions"]["final"] == on_disk["examples"][0]["reference"]
    html = (out / "report.html").read_text()
    assert "<table" in html and "data:image/png;base64," in html
    assert "fewer than baseline" in html and "checkpoint-15" in html
    assert "<script" not in html and "http" not in html.split("</style>")[0]  # self-contained


def test_unmet_criteria_fail_with_reasons(sentiment_task, tmp_path):
    cfg = _config(
        sentiment_task, tmp_path, metrics=["exact_match"], passCriteria=[{"metric": "exact_match", "min": 1.01}]
    )
    cfg.targets = cfg.targets[-1:]
    cfg.baseline = None
    status = run(cfg)["status"]
    assert status["passed"] is False
    assert status["results"][0]["failures"] == [
        f"exact_match {status['results'][0]['metrics']['exact_match']:.4g} is below min 1.01"
    ]
    assert status["best"] == "final"  # best overall when nothing passed


def test_cli_without_baseline_fails_min_improvement_and_exits_zero(sentiment_task, tmp_path, capsys):
    cfg = _config(
        sentiment_task,
        tmp_path,
        baseline={"none": True},
        metrics=["exact_match"],
        passCriteria=[{"metric": "exact_match", "minImprovement": 0.1}],
    )
    cfg.targets = cfg.targets[-1:]
    cfg.baseline = None
    cfg.few_shot_source_uri = None
    path = tmp_path / "run-config.json"
    path.write_text(cfg.dump())
    assert main(["--config", str(path)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert "baseline" not in status
    assert status["passed"] is False
    assert "needs a baseline" in status["results"][0]["failures"][0]


def test_cli_reports_a_missing_dataset(sentiment_task, tmp_path, capsys):
    cfg = _config(sentiment_task, tmp_path, dataset={"uri": str(tmp_path / "nope.jsonl")})
    path = tmp_path / "run-config.json"
    path.write_text(cfg.dump())
    assert main(["--config", str(path)]) == 2
    assert "nope.jsonl does not exist" in capsys.readouterr().err
