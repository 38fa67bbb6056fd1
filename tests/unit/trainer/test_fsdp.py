"""FSDP2 for real: `kubetune-trainer train` with 2 CPU worker processes (gloo) shards the model, trains,
writes checkpoints that evaluation and serving load, and resumes from its sharded checkpoint.

One module-scoped run pair (~1 min on 2 cores): a full fine-tune of the nano Llama for 6 steps with
`resources.sharding.strategy: fsdp`, then the same job with maxSteps 9 after its final/ is removed (a
retried pod whose run had not finished), which must resume from checkpoint-6's shards.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from trainer_helpers import (
    events,
    logged_losses,
    make_config,
    quickstart_rows,
    trainer_command,
    trainer_env,
    write_config,
    write_jsonl,
)

from kubetune_trainer.launcher import CPU_WORKERS_ENV
from kubetune_trainer.sharding import DEBUG_SHARDS_ENV

pytestmark = pytest.mark.slow

WORKERS = 2


def _train(d: Path, cfg, shards: Path) -> subprocess.CompletedProcess:
    env = {**trainer_env(), CPU_WORKERS_ENV: str(WORKERS), DEBUG_SHARDS_ENV: str(shards), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        trainer_command(write_config(d, cfg)), env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _config(d: Path, tiny_model: Path, train: Path, max_steps: int):
    return make_config(
        d,
        tiny_model,
        train,
        adapter={"type": "none"},
        hyperparameters={"maxSteps": max_steps, "batchSize": 4, "learningRate": 3e-3, "packing": False},
        checkpoints={"every": 3, "keep": 3},
        resources={"gpus": 0, "sharding": {"strategy": "fsdp"}},
    )


@pytest.fixture(scope="module")
def fsdp_runs(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("fsdp")
    train = write_jsonl(d / "train.jsonl", quickstart_rows(64))
    first = _train(d, _config(d, tiny_model, train, 6), d / "shards-1")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-6000:]
    out = d / "output"
    first_final = json.loads((out / "final" / "kubetune.json").read_text())
    # A retried pod whose run had not finished: no final/, more steps to go.
    import shutil

    shutil.rmtree(out / "final")
    second = _train(d, _config(d, tiny_model, train, 9), d / "shards-2")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-6000:]
    return d, first, second, first_final


def _records(shards: Path) -> list[dict]:
    return [json.loads((shards / f"shards-rank{r}.json").read_text()) for r in range(WORKERS)]


def test_each_rank_holds_half_of_every_parameter(fsdp_runs):
    """After a real optimizer step each worker's parameters are DTensors whose local shard is its half of
    dim 0 (FSDP2 shards dim 0, the last rank's shard padded short when it does not divide)."""
    d, *_ = fsdp_runs
    ranks = _records(d / "shards-1")
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {WORKERS}
    names = ranks[0]["params"].keys()
    assert any(".layers.0." in n for n in names) and any("embed_tokens" in n for n in names)
    for name in names:
        shapes = [r["params"][name] for r in ranks]
        full = shapes[0]["global"]
        assert all(s["dtensor"] for s in shapes), name
        assert shapes[0]["local"][0] == math.ceil(full[0] / WORKERS), (name, shapes)
        assert sum(s["local"][0] for s in shapes) == full[0], (name, shapes)
        assert all(s["local"][1:] == full[1:] for s in shapes), (name, shapes)


def test_loss_falls_and_checkpoints_keep_shards_and_hf_files(fsdp_runs):
    d, first, *_ = fsdp_runs
    out = d / "output"
    losses = logged_losses(out / "checkpoint-6")
    assert len(losses) >= 3 and losses[-1] < losses[0], losses
    cp = out / "checkpoint-3"
    # per-rank shards of the weights and of the optimizer state (what resume reads) ...
    assert sorted(p.name for p in (cp / "pytorch_model_fsdp_0").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert sorted(p.name for p in (cp / "optimizer_0").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    # ... and the usual HF files beside them, gathered on rank 0, written before kubetune.json
    assert (cp / "model.safetensors").is_file() and (cp / "config.json").is_file()
    assert (cp / "tokenizer_config.json").is_file() and (cp / "kubetune.json").is_file()
    assert "FSDP2 over 2 processes" in first.stderr + first.stdout


def test_sharded_checkpoint_is_served_and_evaluated(fsdp_runs, tiny_model):
    """The gathered checkpoint loads where serving and evaluation load models, and holds the trained
    weights (not the base model's)."""
    import torch
    from safetensors.torch import load_file

    from kubetune.api.evaluation import EvaluationSpec
    from kubetune.api.runconfig import EvalRunConfig, EvalTarget, Identity
    from kubetune_trainer.evaluate.runner import run as evaluate
    from kubetune_trainer.serve.engine import Engine, SamplingParams
    from kubetune_trainer.serve.loading import load_for_inference

    d, *_ = fsdp_runs
    final = d / "output" / "final"
    trained, base = load_file(final / "model.safetensors"), load_file(tiny_model / "model.safetensors")
    assert trained.keys() == base.keys()
    assert any(not torch.equal(trained[k], base[k]) for k in base)
    loaded = load_for_inference(str(final))
    engine = Engine(loaded)
    ids = engine.chat_prompt_ids([{"role": "user", "content": "Hello"}])
    completion = engine.generate(ids, SamplingParams(max_tokens=4, temperature=0.0))
    assert completion.completion_tokens > 0

    rows = quickstart_rows(4)
    test = write_jsonl(d / "test.jsonl", rows)
    spec = EvaluationSpec.model_validate(
        {
            "model": {"uri": str(final)},
            "baseline": {"none": True},
            "dataset": {"uri": str(test)},
            "metrics": ["exact_match"],
            "generation": {"maxNewTokens": 4, "batchSize": 4},
        }
    )
    config = EvalRunConfig(
        job=Identity(name="fsdp-eval"),
        spec=spec,
        targets=[EvalTarget(name="final", uri=str(final))],
        baseline=None,
        output_dir=str(d / "eval"),
    )
    results = evaluate(config)
    assert "exact_match" in json.dumps(results)


def test_second_run_resumes_from_the_sharded_checkpoint(fsdp_runs):
    d, _, second, first_final = fsdp_runs
    out = d / "output"
    assert first_final["step"] == 6
    log = second.stderr + second.stdout
    assert "resuming from" in log and "checkpoint-6" in log
    final = json.loads((out / "final" / "kubetune.json").read_text())
    assert final["step"] == 9
    # the resumed state carries the first run's log: steps 1..6 are not trained again
    steps = [e["step"] for e in json.loads((out / "checkpoint-9" / "trainer_state.json").read_text())["log_history"]]
    assert steps.count(6) >= 1 and steps == sorted(steps)
    assert len(_records(d / "shards-2")) == WORKERS  # sharded again after resuming
    assert events(d)[-1]["event"] == "finished"
