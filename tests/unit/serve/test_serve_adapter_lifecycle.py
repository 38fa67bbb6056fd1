"""Runtime LoRA loading is atomic, against the real server on a port: a failed load (an adapter of another base,
a config that does not match its weights, a bad name) leaves the server exactly as it was; unloading the last
adapter gives the plain base model back; a load with `load_inplace` swaps an adapter with no gap; requests queued
for an adapter that is unloaded hear 404."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from serve_live import running_server

from kubetune_trainer.serve.options import ServeOptions
from tiny_adapters import lora_adapter

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def kit(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """Two good adapters, one of another base (other shapes), one whose config says r=4 for r=8 weights."""
    from kubetune_trainer.tiny import init_tiny

    root = tmp_path_factory.mktemp("lifecycle")
    data = root / "d.jsonl"
    data.write_text(json.dumps({"prompt": "a b c", "completion": "d e"}) + "\n")
    other_base = init_tiny(root / "other-base", [data], size="tiny", vocab_size=300)
    travel, legal = lora_adapter(tiny_model, root / "travel", 1), lora_adapter(tiny_model, root / "legal", 2)
    wrong_r = shutil.copytree(travel, root / "wrong-r")
    cfg = json.loads((wrong_r / "adapter_config.json").read_text())
    (wrong_r / "adapter_config.json").write_text(json.dumps({**cfg, "r": 4}))  # fits no module: fails after injecting
    garbage = root / "garbage"
    garbage.mkdir()
    (garbage / "adapter_config.json").write_text("not json {")
    return {
        "travel": travel,
        "legal": legal,
        "other": lora_adapter(other_base, root / "other", 3),
        "wrong_r": wrong_r,
        "garbage": garbage,
    }


def _text(base_url: str, model: str, max_tokens: int = 8) -> httpx.Response:
    body = {"model": model, "prompt": "the pool was", "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    return httpx.post(f"{base_url}/v1/completions", json=body, timeout=60)


def _load(base_url: str, name: str, path: Path, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path), **extra}, timeout=60
    )


def _unload(base_url: str, name: str) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=60)


def _error_of(r: httpx.Response) -> dict:
    assert r.status_code == 400, r.text
    return r.json()["error"]


def _models(base_url: str) -> list[str]:
    return [m["id"] for m in httpx.get(f"{base_url}/v1/models").json()["data"]]


def test_a_failed_first_load_leaves_the_base_model_serving(tiny_model, kit, tmp_path):
    with running_server(tiny_model, tmp_path, ServeOptions(enable_lora=True)) as s:
        base_text = _text(s.base_url, "tiny-chat").json()["choices"][0]["text"]
        for bad, words in (("other", "another base model"), ("wrong_r", "cannot be loaded"), ("garbage", "JSON")):
            r = _load(s.base_url, "first", kit[bad])
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["param"] == "lora_path" and words in error["message"], error
            after = _text(s.base_url, "tiny-chat")
            assert after.status_code == 200 and after.json()["choices"][0]["text"] == base_text, (bad, after.text)
        r = httpx.post(
            f"{s.base_url}/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "../../no-such-adapter"}
        )
        error = _error_of(r)
        assert error["param"] == "lora_path" and "no-such-adapter" in error["message"], error
        assert httpx.get(f"{s.base_url}/healthz").status_code == 200
        assert _models(s.base_url) == ["tiny-chat"]

        assert _load(s.base_url, "first", kit["travel"]).status_code == 200  # the same name, now a good adapter
        travel_text = _text(s.base_url, "first").json()["choices"][0]["text"]
        assert travel_text != base_text
        assert _text(s.base_url, "tiny-chat").json()["choices"][0]["text"] == base_text


def test_unloading_the_last_adapter_gives_the_base_model_back(tiny_model, kit, tmp_path):
    options = ServeOptions(lora_modules={"travel": str(kit["travel"]), "legal": str(kit["legal"])})
    with running_server(tiny_model, tmp_path, options) as s:
        base_text = _text(s.base_url, "tiny-chat").json()["choices"][0]["text"]
        assert _unload(s.base_url, "travel").status_code == 200
        assert _unload(s.base_url, "legal").status_code == 200
        r = _text(s.base_url, "tiny-chat")
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == base_text, r.text
        r = _unload(s.base_url, "tiny-chat")
        assert r.status_code == 400 and "is the base model" in r.json()["error"]["message"]
        assert _load(s.base_url, "legal", kit["legal"]).status_code == 200  # and adapters load again
        assert _text(s.base_url, "legal").status_code == 200


def test_a_failed_load_registers_nothing_and_bad_names_are_refused(tiny_model, kit, tmp_path):
    with running_server(tiny_model, tmp_path, ServeOptions(lora_modules={"travel": str(kit["travel"])})) as s:
        base_text = _text(s.base_url, "tiny-chat").json()["choices"][0]["text"]
        travel_text = _text(s.base_url, "travel").json()["choices"][0]["text"]
        for bad in ("other", "wrong_r"):
            r = _load(s.base_url, "mism", kit[bad])
            assert r.status_code == 400 and r.json()["error"]["param"] == "lora_path", r.text
        for name in ("a.b", "-x", "x" * 64, "a/b"):
            r = _load(s.base_url, name, kit["legal"])
            assert r.status_code == 400 and r.json()["error"]["param"] == "lora_name", (name, r.text)
        assert _models(s.base_url) == ["tiny-chat", "travel"]
        assert _load(s.base_url, "mism", kit["legal"]).status_code == 200  # the name was never half-registered
        assert _text(s.base_url, "mism").status_code == 200
        assert _text(s.base_url, "travel").json()["choices"][0]["text"] == travel_text
        assert _unload(s.base_url, "travel").status_code == 200
        r = _text(s.base_url, "tiny-chat")
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == base_text, r.text
        r = _load(s.base_url, "mism", kit["travel"])
        assert r.status_code == 400 and r.json()["error"]["param"] == "lora_name"


def test_load_inplace_replaces_an_adapter_and_queued_requests_of_an_unloaded_one_hear_404(tiny_model, kit, tmp_path):
    options = ServeOptions(lora_modules={"travel": str(kit["travel"])}, max_batch_size=1)
    with running_server(tiny_model, tmp_path, options) as s:
        travel_ref = _text(s.base_url, "travel").json()["choices"][0]["text"]
        statuses: list[int] = []

        def ask() -> None:
            statuses.append(_text(s.base_url, "travel", max_tokens=48).status_code)

        clients = [threading.Thread(target=ask) for _ in range(6)]
        for t in clients:
            t.start()
        r = _load(s.base_url, "travel", kit["legal"], load_inplace=True)
        for t in clients:
            t.join()
        assert r.status_code == 200, r.text
        assert statuses == [200] * 6  # no request of the name failed while it was replaced
        swapped = _text(s.base_url, "travel").json()["choices"][0]["text"]
        assert swapped != travel_ref and _models(s.base_url) == ["tiny-chat", "travel"]

        answers: list[httpx.Response] = []
        clients = [
            threading.Thread(target=lambda: answers.append(_text(s.base_url, "travel", max_tokens=48)))
            for _ in range(6)
        ]
        for t in clients:
            t.start()
        assert _unload(s.base_url, "travel").status_code == 200
        for t in clients:
            t.join()
        refused = [a for a in answers if a.status_code != 200]
        assert refused, "every request finished before the unload"
        for a in refused:
            assert a.status_code == 404 and a.json()["error"]["code"] == "model_not_found", a.text
