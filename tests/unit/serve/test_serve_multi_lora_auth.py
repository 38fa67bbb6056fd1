"""Several LoRA adapters on one base (vLLM's --lora-modules and runtime load/unload, chosen by model name),
and the API key, against the real server on a port."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from serve_live import running_server

from kubetune_trainer.serve.options import ServeOptions, from_args
from tiny_adapters import lora_adapter

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return lora_adapter(tiny_model, root / "travel", 1), lora_adapter(tiny_model, root / "legal", 2)


def _answer(base_url: str, model: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model": model, "prompt": "the pool was", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    return httpx.post(f"{base_url}/v1/completions", json=body, headers=headers, timeout=60)


def test_adapters_are_chosen_by_model_name_and_load_and_unload_at_runtime(tiny_model, adapters, tmp_path):
    travel, legal = adapters
    options = ServeOptions(lora_modules={"travel": str(travel)})
    with running_server(tiny_model, tmp_path, options) as s:
        models = httpx.get(f"{s.base_url}/v1/models").json()["data"]
        assert [(m["id"], m["parent"]) for m in models] == [("tiny-chat", None), ("travel", "tiny-chat")]

        r = httpx.post(f"{s.base_url}/v1/load_lora_adapter", json={"lora_name": "legal", "lora_path": str(legal)})
        assert r.status_code == 200, r.text
        listing = httpx.get(f"{s.base_url}/v1/models").text
        assert [m["id"] for m in json.loads(listing)["data"]] == ["tiny-chat", "legal", "travel"]
        assert str(tmp_path) not in listing and str(tiny_model) not in listing and str(legal) not in listing

        texts = {m: _answer(s.base_url, m).json()["choices"][0]["text"] for m in ("tiny-chat", "travel", "legal")}
        assert len(set(texts.values())) == 3, texts  # three different models behind one base
        assert _answer(s.base_url, "travel").json()["model"] == "travel"
        assert _answer(s.base_url, "tiny-chat").json()["choices"][0]["text"] == texts["tiny-chat"]  # adapters off

        r = httpx.post(f"{s.base_url}/v1/load_lora_adapter", json={"lora_name": "legal", "lora_path": str(legal)})
        assert r.status_code == 400 and "already" in r.json()["error"]["message"]
        r = httpx.post(f"{s.base_url}/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": str(tmp_path)})
        assert r.status_code == 400 and "not a LoRA adapter" in r.json()["error"]["message"]

        assert httpx.post(f"{s.base_url}/v1/unload_lora_adapter", json={"lora_name": "legal"}).status_code == 200
        assert _answer(s.base_url, "legal").status_code == 404
        assert _answer(s.base_url, "travel").json()["choices"][0]["text"] == texts["travel"]  # the others go on
        r = httpx.post(f"{s.base_url}/v1/unload_lora_adapter", json={"lora_name": "legal"})
        assert r.status_code == 404


def test_runtime_loading_is_off_without_enable_lora(tiny_model, adapters, tmp_path):
    with running_server(tiny_model, tmp_path) as s:
        r = httpx.post(f"{s.base_url}/v1/load_lora_adapter", json={"lora_name": "a", "lora_path": str(adapters[0])})
        assert r.status_code == 400 and "--enable-lora" in r.json()["error"]["message"]
        card = httpx.get(f"{s.base_url}/v1/models").json()["data"][0]
        assert card["root"] == "tiny-chat"  # not the local path it was loaded from


def test_api_key_is_required_on_v1_but_not_on_probes(tiny_model, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    key = "sk-test-4f9a"
    with running_server(tiny_model, tmp_path, ServeOptions(api_key=key)) as s:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
            r = httpx.get(f"{s.base_url}/v1/models", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert _answer(s.base_url, "tiny-chat").status_code == 401
        ok = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{s.base_url}/v1/models", headers=ok).status_code == 200
        assert _answer(s.base_url, "tiny-chat", ok).status_code == 200
        assert httpx.get(f"{s.base_url}/healthz").status_code == 200
        metrics = httpx.get(f"{s.base_url}/metrics").text
        assert 'kubetune_serve_requests_rejected_total{reason="unauthorized"} 4.0' in metrics
    assert key not in caplog.text


def test_api_key_comes_from_the_environment_or_a_file(tmp_path):
    import argparse

    from kubetune_trainer.serve import options

    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    args = parser.parse_args(["--lora-modules", "a=/m/a", "b=pvc://c/b", "--max-batch-size", "4"])
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    got = from_args(args, {"KUBETUNE_API_KEY_FILE": str(secret), "KUBETUNE_SERVE_MAX_WAITING": "7"})
    assert got.api_key == "from-file" and got.max_waiting == 7 and got.max_batch_size == 4
    assert got.lora_modules == {"a": "/m/a", "b": "pvc://c/b"} and got.lora
    assert from_args(args, {"KUBETUNE_API_KEY": "k"}).api_key == "k"
    assert from_args(parser.parse_args([]), {}) == ServeOptions()
    with pytest.raises(ValueError, match="NAME=PATH"):
        from_args(parser.parse_args(["--lora-modules", "nopath"]), {})
