"""The evaluator reads its dataset from s3:// (a real local S3 server), streamed and checked like a local file."""

from __future__ import annotations

import json

import pytest
from test_eval_run import _config

import s3server
from kubetune_trainer.evaluate import main

s3_server = s3server.s3_server  # the real local S3 server's fixture

pytestmark = pytest.mark.slow


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the eval pod gets from spec.s3.credentialsSecretRef; the endpoint comes from spec.s3 alone."""
    for k, v in s3server.CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def _run_cli(task, tmp_path, uri: str, endpoint: str) -> int:
    cfg = _config(
        task,
        tmp_path,
        dataset={"uri": uri},
        s3={"endpoint": endpoint, "region": "us-east-1"},
        baseline={"none": True},
        metrics=["exact_match"],
        passCriteria=[{"metric": "exact_match", "min": 0.9}],
    )
    cfg.targets = cfg.targets[-1:]
    cfg.baseline = None
    cfg.few_shot_source_uri = None
    path = tmp_path / "run-config.json"
    path.write_text(cfg.dump())
    return main(["--config", str(path)])


def test_an_evaluation_scores_a_dataset_read_from_s3(sentiment_task, s3_server, credentials, tmp_path, capsys):
    s3_server.create_bucket("evals")
    s3_server.put("evals", "sentiment/test.jsonl", sentiment_task.test.read_bytes())
    assert _run_cli(sentiment_task, tmp_path, "s3://evals/sentiment/test.jsonl", s3_server.endpoint) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["passed"] is True and status["results"][0]["metrics"]["exact_match"] >= 0.9
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["dataset"] == "s3://evals/sentiment/test.jsonl"
    assert results["numExamples"] == len(sentiment_task.test.read_text().splitlines())


def test_a_broken_s3_dataset_is_refused_with_its_line(sentiment_task, s3_server, credentials, tmp_path, capsys):
    lines = sentiment_task.test.read_text().splitlines()
    lines[6] = '{"messages": [ oops'
    s3_server.create_bucket("broken-evals")
    s3_server.put("broken-evals", "test.jsonl", ("\n".join(lines) + "\n").encode())
    assert _run_cli(sentiment_task, tmp_path, "s3://broken-evals/test.jsonl", s3_server.endpoint) == 2
    err = capsys.readouterr().err
    assert "s3://broken-evals/test.jsonl:7" in err and "Traceback" not in err
