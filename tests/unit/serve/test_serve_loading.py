"""Loading for inference: merged models, base + LoRA adapter (merged on load), and errors that say what to fix."""

from __future__ import annotations

import json
import time

import pytest
import torch

from kubetune.api.runconfig import Identity, ServeRunConfig
from kubetune_trainer.serve.loading import load_for_inference
from kubetune_trainer.sources import ModelSourceError


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    """A LoRA adapter with non-zero weights (so it changes the outputs), saved without a tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter") / "checkpoint-10"
    peft_model.save_pretrained(out)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
    return out, ids, expected


def test_lora_adapter_is_applied_to_the_base_named_in_its_config(adapter, tiny_model):
    path, ids, expected = adapter
    loaded = load_for_inference(str(path), device="cpu")
    with torch.no_grad():
        got = loaded.model(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not hasattr(loaded.model, "peft_config")  # merged: served at the speed of a plain model
    assert loaded.tokenizer.padding_side == "left"  # the base's tokenizer, ready for batched generation


def test_explicit_base_model_uri_wins_over_the_adapter_config(adapter, tiny_model, tmp_path):
    path, ids, expected = adapter
    cfg = json.loads((path / "adapter_config.json").read_text())
    moved = tmp_path / "adapter"
    moved.mkdir()
    for f in path.iterdir():
        (moved / f.name).write_bytes(f.read_bytes())
    (moved / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "/nowhere/base"}))
    loaded = load_for_inference(str(moved), base_model_uri=f"file://{tiny_model}", device="cpu")
    with torch.no_grad():
        assert torch.allclose(loaded.model(input_ids=ids).logits, expected, atol=1e-4)


def test_missing_model_names_the_uri(tmp_path):
    with pytest.raises(ModelSourceError, match="nothing at"):
        load_for_inference(str(tmp_path / "no-model"), device="cpu")


def test_server_reports_a_model_that_failed_to_load(tmp_path):
    from fastapi.testclient import TestClient

    from kubetune_trainer.serve.app import create_app

    errors: list[BaseException] = []
    config = ServeRunConfig(
        job=Identity(name="broken"),
        model_uri=str(tmp_path / "no-model"),
        served_model_name="broken",
        output_dir=str(tmp_path),
    )
    app = create_app(config, on_load_error=errors.append)
    with TestClient(app) as client:
        for _ in range(100):
            if errors:
                break
            time.sleep(0.05)
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        assert "no-model" in health.json()["error"]
        resp = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "model_not_ready"
    assert len(errors) == 1


def test_serve_main_exits_1_when_the_model_cannot_load_and_2_on_a_bad_config(tmp_path, capsys, unused_port):
    from kubetune_trainer.serve import main

    config = ServeRunConfig(
        job=Identity(name="broken"), model_uri=str(tmp_path / "no-model"), served_model_name="b", output_dir="."
    )
    path = tmp_path / "serve.json"
    path.write_text(config.dump())
    assert main(["--config", str(path), "--host", "127.0.0.1", "--port", str(unused_port), "--log-level", "error"]) == 1
    assert "could not load" in capsys.readouterr().err
    path.write_text("{}")
    assert main(["--config", str(path)]) == 2
