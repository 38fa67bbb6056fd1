"""Each method trains the tiny model on CPU: loss goes down, checkpoints + kubetune.json, the result generates."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from trainer_helpers import (
    FIXTURES,
    TINY_MODEL_DATA,
    events,
    generate,
    logged_losses,
    make_config,
    quickstart_rows,
    write_jsonl,
)

from kubetune_trainer.train import EXIT_CONFIG, EXIT_OK, run

pytestmark = pytest.mark.slow
ASK = [{"role": "user", "content": "Hotels in Lisbon under 120 euros"}]


def _assert_checkpoints(out: Path, method: str, steps: int = 8) -> dict:
    """checkpoint-4 and -8 complete with kubetune.json; final written; returns final's kubetune.json."""
    for step in range(4, steps + 1, 4):
        meta = json.loads((out / f"checkpoint-{step}" / "kubetune.json").read_text())
        assert meta["step"] == step and meta["method"] == method
        assert meta["dataset_hash"].startswith("sha256:")
        assert "train_loss" in meta["train_metrics"]
        assert meta["base_model"]
    final = json.loads((out / "final" / "kubetune.json").read_text())
    assert final["step"] == steps
    assert final["tokens_per_second"] is None or final["tokens_per_second"] > 0
    return final


def test_sft_chat_with_lora(tmp_path, tiny_model):
    train = write_jsonl(tmp_path / "train.jsonl", quickstart_rows(48))
    val = write_jsonl(tmp_path / "val.jsonl", quickstart_rows(8, "validation"))
    cfg = make_config(tmp_path, tiny_model, train, validation=val)
    assert run(cfg) == EXIT_OK
    out = Path(cfg.output_dir)
    final = _assert_checkpoints(out, "sft")
    assert final["adapter"]["type"] == "lora" and final["adapter"]["peft"]["r"] == 8
    assert "eval_loss" in final["eval_metrics"]
    losses = logged_losses(out / "checkpoint-8")
    assert losses[-1] < losses[0]
    assert (out / "final" / "adapter_config.json").exists()  # an adapter, not a merged model
    assert isinstance(generate(out / "final", ASK), str)
    kinds = [e["event"] for e in events(tmp_path)]
    assert kinds[0] == "data" and "progress" in kinds and kinds[-1] == "finished"
    finished = events(tmp_path)[-1]
    assert finished["output"]["uri"] == "pvc://test-job-data/output"
    checkpoints = [e for e in events(tmp_path) if e["event"] == "checkpoints"][-1]
    assert [c["name"] for c in checkpoints["checkpoints"]] == ["checkpoint-4", "checkpoint-8", "final"]
    assert checkpoints["checkpoints"][0]["uri"] == "pvc://test-job-data/output/checkpoint-4"


def test_sft_prompt_completion_full_fine_tuning_with_frozen_layers(tmp_path, tiny_model):
    import torch
    from safetensors.torch import load_file

    cfg = make_config(
        tmp_path,
        tiny_model,
        FIXTURES / "prompt_completion.jsonl",
        adapter={"type": "none"},
        freezeLayers=1,
        hyperparameters={"learningRate": 2e-3},
    )
    assert run(cfg) == EXIT_OK
    out = Path(cfg.output_dir)
    final = _assert_checkpoints(out, "sft")
    assert final["adapter"] is None and final["freeze_layers"] == 1
    before, after = load_file(tiny_model / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    frozen = "model.layers.0.self_attn.q_proj.weight"
    trained = "model.layers.1.self_attn.q_proj.weight"
    assert torch.equal(before[frozen], after[frozen])
    assert not torch.equal(before[trained], after[trained])
    losses = logged_losses(out / "checkpoint-8")
    assert losses[-1] < losses[0]
    assert isinstance(generate(out / "final", ASK), str)


def test_pretraining_on_plain_text(tmp_path, tiny_model):
    cfg = make_config(tmp_path, tiny_model, FIXTURES / "text.jsonl", method="pretraining", adapter={"type": "none"})
    assert run(cfg) == EXIT_OK
    out = Path(cfg.output_dir)
    _assert_checkpoints(out, "pretraining")
    losses = logged_losses(out / "checkpoint-8")
    assert losses[-1] < losses[0]


def test_dpo_on_preference_data(tmp_path, tiny_model):
    cfg = make_config(tmp_path, tiny_model, FIXTURES / "preference_openai.jsonl", method="dpo", dpo={"beta": 0.2})
    assert run(cfg) == EXIT_OK
    out = Path(cfg.output_dir)
    _assert_checkpoints(out, "dpo")
    losses = logged_losses(out / "checkpoint-8")
    assert losses[-1] < losses[0]
    margins = logged_losses(out / "checkpoint-8", "rewards/margins")
    assert margins[-1] > margins[0]  # chosen answers pull ahead of rejected ones
    assert isinstance(generate(out / "final", ASK), str)


def test_robust_dpo_trains_with_the_label_smoothing_of_the_spec(tmp_path, tiny_model):
    import torch

    dpo = {"beta": 0.2, "lossType": "robust", "labelSmoothing": 0.1}
    cfg = make_config(
        tmp_path, tiny_model, FIXTURES / "preference_trl.jsonl", method="dpo", dpo=dpo, hyperparameters={"maxSteps": 4}
    )
    assert run(cfg) == EXIT_OK
    args = torch.load(Path(cfg.output_dir) / "checkpoint-4" / "training_args.bin", weights_only=False)
    assert args.loss_type == ["robust"] and args.label_smoothing == 0.1


def test_distillation_from_a_local_teacher(tmp_path, tiny_model):
    from kubetune_trainer.tiny import init_tiny

    # another random model with the same tokenizer: distillation compares next-token distributions
    teacher = init_tiny(tmp_path / "teacher", TINY_MODEL_DATA, size="nano", vocab_size=512, seed=7)
    cfg = make_config(
        tmp_path,
        tiny_model,
        FIXTURES / "prompt_completion.jsonl",
        method="distillation",
        distillation={"teacher": {"uri": str(teacher)}, "lmbda": 0.0, "beta": 0.5},
        adapter={"type": "none"},
    )
    assert run(cfg) == EXIT_OK
    out = Path(cfg.output_dir)
    _assert_checkpoints(out, "distillation")
    losses = logged_losses(out / "checkpoint-8")
    assert losses[-1] < losses[0]
    assert isinstance(generate(out / "final", ASK), str)


@pytest.fixture
def teacher_endpoint():
    """An OpenAI-compatible endpoint whose answer is a StayQL query; records the requests."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            reply = {"choices": [{"message": {"role": "assistant", "content": "SHOW hotels IN lisbon"}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", seen
    server.shutdown()


def test_distillation_from_an_endpoint_labels_then_trains(tmp_path, tiny_model, teacher_endpoint, monkeypatch):
    url, seen = teacher_endpoint
    monkeypatch.setenv("TEACHER_KEY", "sk-test")
    cfg = make_config(
        tmp_path,
        tiny_model,
        FIXTURES / "reinforcement.jsonl",  # prompts only: the teacher writes the answers
        method="distillation",
        distillation={
            "teacher": {"endpoint": {"url": url, "model": "big", "apiKeySecretRef": {"name": "k", "key": "k"}}},
            "maxNewTokens": 32,
        },
    )
    cfg.teacher_api_key_env = "TEACHER_KEY"
    assert run(cfg) == EXIT_OK
    n = len((FIXTURES / "reinforcement.jsonl").read_text().splitlines())
    assert len(seen) == n
    assert seen[0]["path"] == "/v1/chat/completions" and seen[0]["auth"] == "Bearer sk-test"
    assert seen[0]["body"]["model"] == "big" and seen[0]["body"]["max_tokens"] == 32
    out = Path(cfg.output_dir)
    labels = [json.loads(line) for line in (out / "teacher-labels.jsonl").read_text().splitlines()]
    assert labels[0]["messages"][-1] == {"role": "assistant", "content": "SHOW hotels IN lisbon"}
    _assert_checkpoints(out, "distillation")
    losses = logged_losses(out / "checkpoint-8")
    assert losses[-1] < losses[0]


def test_rft_with_declared_graders(tmp_path, tiny_model):
    cfg = make_config(
        tmp_path,
        tiny_model,
        FIXTURES / "reinforcement.jsonl",
        method="rft",
        rft={
            "graders": [
                {"type": "exact_match", "field": "answer", "weight": 1.0},
                {"type": "regex", "pattern": "^SHOW", "weight": 0.5},
                {"type": "string_similarity", "field": "answer", "weight": 0.5},
            ],
            "numGenerations": 2,
            "maxCompletionLength": 8,
        },
        hyperparameters={"batchSize": 2},
    )
    assert run(cfg) == EXIT_OK
    out = Path(cfg.output_dir)
    _assert_checkpoints(out, "rft")
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    logged = {k for e in state["log_history"] for k in e}
    assert {"rewards/exact_match/mean", "rewards/regex/mean", "rewards/string_similarity/mean"} <= logged
    assert isinstance(generate(out / "final", ASK), str)


def test_qlora_without_a_gpu_is_a_clear_error(tmp_path, tiny_model, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = make_config(tmp_path, tiny_model, FIXTURES / "prompt_completion.jsonl", adapter={"type": "qlora"})
    assert run(cfg) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "spec.adapter.type qlora" in err and "spec.resources.gpus" in err
    assert not list(Path(cfg.output_dir).glob("checkpoint-*"))
