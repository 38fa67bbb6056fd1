"""The judge metric of an Evaluation, the judge served on localhost by a stub OpenAI server the test controls."""

from __future__ import annotations

import json
import re

import pytest

from judgestub import Reply, judge_stub, user_text
from kubetune.api.evaluation import EvaluationSpec, EvaluationStatus
from kubetune.api.runconfig import EvalRunConfig, EvalTarget, Identity
from kubetune_trainer import chatretry
from kubetune_trainer.evaluate import criteria
from kubetune_trainer.evaluate.runner import run

pytestmark = pytest.mark.slow

CRITERIA = [{"metric": "judge", "min": 0.8}]


def _labels_by_reference(body: dict) -> Reply:
    """A judge that says `correct` exactly when the response is the reference."""
    case = user_text(body)
    response = re.search(r"RESPONSE:\n(.*?)\n\nREFERENCE ANSWER:", case, re.DOTALL).group(1)
    reference = case.split("REFERENCE ANSWER:\n", 1)[1]
    label = "correct" if response.strip() == reference.strip() else "wrong"
    return Reply(content=json.dumps({"reason": "compared", "label": label}))


def _config(task, tmp_path, url: str) -> EvalRunConfig:
    spec = {
        "model": {"fineTuneJob": {"name": "sentiment"}},
        "baseline": {"none": True},
        "dataset": {"uri": str(task.test)},
        "metrics": ["exact_match", "judge"],
        "judge": {
            "endpoint": {"url": url},
            "model": "judge-model",
            "rubric": "Is the sentiment label right?",
            "mode": "label",
            "labels": [{"name": "correct", "value": 1}, {"name": "wrong", "value": 0}],
            "concurrency": 1,
            "timeoutSeconds": 1,
            "retries": 1,
        },
        "generation": {"maxNewTokens": 4, "batchSize": 8},
        "passCriteria": CRITERIA,
    }
    return EvalRunConfig(
        job=Identity(name="sentiment-eval", namespace="team"),
        spec=EvaluationSpec.model_validate(spec),
        targets=[
            EvalTarget(name=name, uri=str(path), base_model_uri=str(task.base))
            for name, path in task.checkpoints.items()
        ],
        output_dir=str(tmp_path / "out"),
        output_uri="pvc://kubetune-sentiment/evaluations/sentiment-eval",
    )


def test_judge_metric_scores_counts_failures_and_decides_pass(sentiment_task, tmp_path, monkeypatch):
    monkeypatch.setattr(chatretry.time, "sleep", lambda s: None)
    slow = Reply(content='{"reason": "", "label": "correct"}', delay=2.5)
    script = [
        Reply(content="Hmm, hard to say."),  # checkpoint-15, answer 1: a parse failure, scored 0
        Reply(status=429, headers={"Retry-After": "0"}, body="{}"),  # answer 2: rate limited, retried ...
        slow,  # ... and the retry times out: given up, scored 0
        slow,  # answer 3: times out once, then answered
    ]
    with judge_stub(script=script, default=_labels_by_reference) as stub:
        cfg = _config(sentiment_task, tmp_path, stub.url)
        full = run(cfg)
        asked = len(stub.requests)

        status = full["status"]
        EvaluationStatus.model_validate(status)
        by_name = {r["model"]: r for r in full["results"]}
        early, final = by_name["checkpoint-15"], by_name["final"]
        n = full["numExamples"]

        # the final model: the judge agrees with exact match on every answer (no failures there)
        assert final["metrics"]["judge"] == pytest.approx(final["metrics"]["exact_match"])
        assert final["judge"]["judged"] == n and final["judge"]["parse_failures"] == 0
        # checkpoint-15 took the scripted trouble: each counted, each answer scored 0, nothing crashed
        counters = early["judge"]
        assert counters["parse_failures"] == 1 and counters["timeouts"] == 1 and counters["rate_limited"] == 1
        assert counters["timeout_retries"] == 1 and counters["judged"] == n - 2
        assert early["metrics"]["judge"] <= early["metrics"]["exact_match"]

        # pass/fail by the judge criterion, in status and results.json
        for name, result in by_name.items():
            assert result["passed"] is (not criteria.check(cfg.spec.pass_criteria, result["metrics"], None)), name
        assert final["passed"] is True and status["passed"] is True
        assert {r["model"]: r["metrics"]["judge"] for r in status["results"]} == {
            k: v["metrics"]["judge"] for k, v in by_name.items()
        }
        assert json.loads((tmp_path / "out" / "results.json").read_text())["results"][1]["judge"] == final["judge"]

        # a second evaluation of the same models asks the judge only for what it could not answer before
        again = run(_config(sentiment_task, tmp_path, stub.url))
        again_by_name = {r["model"]: r for r in again["results"]}
        assert again_by_name["final"]["judge"]["cache_hits"] == n
        assert again_by_name["final"]["metrics"]["judge"] == final["metrics"]["judge"]
        # (the cache is keyed by judge, rubric and input, not by model: an answer final gave too is not re-asked)
        again_asked = [user_text(b) for b in stub.requests[asked:]]
        failed_first = {user_text(stub.requests[0]), user_text(stub.requests[1])}
        assert 1 <= len(again_asked) <= 2 and set(again_asked) <= failed_first
