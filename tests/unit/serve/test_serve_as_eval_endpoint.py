"""An Evaluation whose target is a live ModelDeployment endpoint: the evaluator talks to our server over HTTP."""

from __future__ import annotations

import json

import pytest

from kubetune.api.evaluation import EvaluationSpec
from kubetune.api.runconfig import EvalRunConfig, EvalTarget, Identity
from kubetune_trainer.evaluate.runner import run

pytestmark = pytest.mark.timeout(120)


def test_endpoint_target_is_scored_with_prompt_tokens_and_latency_from_the_server(live_server, tmp_path):
    data = tmp_path / "test.jsonl"
    rows = [{"prompt": f"was the room clean {i}", "completion": "yes"} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = EvaluationSpec.model_validate(
        {
            "model": {"modelDeployment": {"name": "tiny-chat"}},
            "baseline": {"none": True},
            "dataset": {"uri": str(data)},
            "metrics": ["exact_match", "perplexity", "prompt_tokens", "latency"],
            "generation": {"maxNewTokens": 3},
            "passCriteria": [{"metric": "latency", "max": 60}, {"metric": "perplexity", "max": 1000}],
        }
    )
    config = EvalRunConfig(
        job=Identity(name="tiny-eval"),
        spec=spec,
        targets=[EvalTarget(name="tiny-chat", endpoint=f"{live_server.base_url}/v1", endpoint_model="tiny-chat")],
        output_dir=str(tmp_path / "out"),
    )
    status = run(config)["status"]
    result = status["results"][0]
    engine = live_server.app.state.serve.engine
    expected_tokens = sum(len(engine.chat_prompt_ids([{"role": "user", "content": r["prompt"]}])) for r in rows) / 3
    assert result["metrics"]["prompt_tokens"] == pytest.approx(expected_tokens)
    assert result["metrics"]["latency"] > 0
    assert result["metrics"]["exact_match"] == 0.0  # an untrained model
    assert "perplexity" not in result["metrics"]  # an endpoint gives no log-likelihoods...
    assert result["passed"] is False  # ...so a perplexity criterion cannot hold, and says so
    assert result["failures"] == ["perplexity was not measured for this model, so its criterion cannot hold"]
    assert result["uri"] == f"{live_server.base_url}/v1"
