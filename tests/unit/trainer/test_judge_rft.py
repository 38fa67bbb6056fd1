"""RFT with a judge grader weighted with exact_match, the judge served on localhost by a stub OpenAI server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trainer_helpers import FIXTURES, make_config

from judgestub import Reply, judge_stub, user_text
from kubetune_trainer import chatretry
from kubetune_trainer.judge import CACHE_FILE
from kubetune_trainer.train import EXIT_OK, run

pytestmark = pytest.mark.slow


def test_rft_with_a_judge_grader_asks_the_judge_and_logs_its_rewards_and_counters(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr(chatretry.time, "sleep", lambda s: None)
    script = [
        Reply(content="I cannot decide."),  # a parse failure: scored 0, counted
        Reply(status=429, headers={"Retry-After": "0"}, body="{}"),  # waited out, counted
    ]
    with judge_stub(script=script, default=lambda body: Reply(content='{"reason": "fine", "score": 8}')) as stub:
        judge = {
            "endpoint": {"url": stub.url},
            "model": "judge-model",
            "rubric": "Does the response answer the prompt like the reference?",
            "range": {"min": 0, "max": 10},
            "concurrency": 2,
        }
        graders = [
            {"type": "exact_match", "field": "answer", "weight": 1.0},
            {"type": "judge", "field": "answer", "judge": judge, "weight": 0.5},
        ]
        cfg = make_config(
            tmp_path,
            tiny_model,
            FIXTURES / "reinforcement.jsonl",
            method="rft",
            rft={"graders": graders, "numGenerations": 2, "maxCompletionLength": 8, "temperature": 1.0},
            hyperparameters={"batchSize": 2, "maxSteps": 2},
            checkpoints={"every": 2, "keep": 1},
        )
        assert run(cfg) == EXIT_OK

    # the judge was asked about the model's completions, with the prompt and the example's reference
    asked = [user_text(b) for b in stub.requests]
    assert len(asked) >= 4 and all("RESPONSE:" in a and "REFERENCE ANSWER:" in a for a in asked)
    assert {b["model"] for b in stub.requests} == {"judge-model"}

    out = Path(cfg.output_dir)
    history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    logged = [e for e in history if "reward" in e]
    assert logged
    for entry in logged:  # rewards per grader, summed by weight
        assert entry["reward"] == pytest.approx(
            entry["rewards/exact_match/mean"] + 0.5 * entry["rewards/judge/mean"], abs=1e-5
        )
    last = logged[-1]
    assert last["judge/judge/parse_failures"] == 1.0
    assert last["judge/judge/rate_limited"] == 1.0
    assert last["judge/judge/judged"] >= 3
    # the first batch: one completion scored 0 (the unreadable answer), the others 8/10
    first = logged[0]["rewards/judge/mean"]
    assert 0.0 < first < 0.8
    # answers are cached in the run's output directory for a restart
    assert (
        len((out / CACHE_FILE).read_text().splitlines()) == last["judge/judge/judged"] - last["judge/judge/cache_hits"]
    )
