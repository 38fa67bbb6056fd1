"""The trainer refuses what cannot train with kubetune's words (LoRA targets the model lacks), and endpoint
distillation trains on prompts only, as examples/distillation-endpoint.yaml promises."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from trainer_helpers import make_config, write_jsonl

from kubetune_trainer.train import EXIT_CONFIG, EXIT_OK, run

pytestmark = pytest.mark.slow
QUESTIONS = [f"Hotels in city {i} under {100 + i} euros" for i in range(12)]


@pytest.fixture
def teacher_url():
    """An OpenAI-compatible teacher that answers every prompt; yields (base URL, requests seen)."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "SHOW hotels"}}]}).encode()
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


def test_endpoint_distillation_trains_on_chat_prompts_only(tmp_path, tiny_model, teacher_url):
    url, seen = teacher_url
    rows = [{"messages": [{"role": "user", "content": q}]} for q in QUESTIONS]
    cfg = make_config(
        tmp_path,
        tiny_model,
        write_jsonl(tmp_path / "prompts.jsonl", rows),
        method="distillation",
        dataset={"format": "chat", "validationSplit": 0.2},  # as examples/distillation-endpoint.yaml
        distillation={"teacher": {"endpoint": {"url": url, "model": "big"}}, "maxNewTokens": 8},
    )
    assert run(cfg) == EXIT_OK
    assert {m["content"] for body in seen for m in body["messages"]} <= set(QUESTIONS)
    out = Path(cfg.output_dir)
    labels = [json.loads(line) for line in (out / "teacher-labels.jsonl").read_text().splitlines()]
    assert labels[0]["messages"][-1] == {"role": "assistant", "content": "SHOW hotels"}
    assert (out / "final" / "kubetune.json").is_file()


def test_endpoint_distillation_trains_on_bare_prompts(tmp_path, tiny_model, teacher_url):
    url, seen = teacher_url
    cfg = make_config(
        tmp_path,
        tiny_model,
        write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": q} for q in QUESTIONS]),
        method="distillation",
        distillation={"teacher": {"endpoint": {"url": url, "model": "big"}}, "maxNewTokens": 8},
        hyperparameters={"maxSteps": 2},
    )
    assert run(cfg) == EXIT_OK
    # Each prompt asked once, bare (the teacher is called concurrently: in no particular order).
    assert sorted(m["content"] for r in seen for m in r["messages"]) == sorted(QUESTIONS)
    assert all(r["messages"] == [{"role": "user", "content": r["messages"][0]["content"]}] for r in seen)


@pytest.mark.parametrize(
    ("targets", "expected"),
    [("lm_head", "lm_head is the output layer"), ("q_proj,c_attn", "c_attn names no module of the model")],
)
def test_lora_targets_the_model_lacks_are_a_kubetune_error_before_training(
    tmp_path, tiny_model, capsys, targets, expected
):
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "SHOW hotels"}]}
        for q in QUESTIONS
    ]
    cfg = make_config(
        tmp_path, tiny_model, write_jsonl(tmp_path / "train.jsonl", rows), adapter={"targetModules": targets}
    )
    assert run(cfg) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"error: spec.adapter.targetModules: {expected}" in err
    assert "q_proj" in err.split("linear layers are", 1)[1] and "Traceback" not in err
    assert not list(Path(cfg.output_dir).glob("checkpoint-*"))
