"""The adapter sync loop (`kubetune-trainer serve-adapters-sync`) against the real built-in server on a port, with
tiny PEFT adapters: the adapter set the operator writes decides what `/v1/models` lists and what a request with
`model: <adapter>` answers, and promoting one adapter (a new path) swaps only that one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from serve_live import running_server

from kubetune_trainer.adapters_sync import Server, Syncer, SyncError, desired
from kubetune_trainer.serve.options import ServeOptions
from tiny_adapters import lora_adapter

pytestmark = pytest.mark.timeout(180)


def _text(base_url: str, model: str) -> str:
    body = {"model": model, "prompt": "the pool was", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    r = httpx.post(f"{base_url}/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def _write(path: Path, adapters: dict[str, Path]) -> None:
    path.write_text(json.dumps({"adapters": [{"name": n, "path": str(p)} for n, p in adapters.items()]}))


def test_the_built_in_server_follows_the_adapter_set(tiny_model, tmp_path):
    fr200 = lora_adapter(tiny_model, tmp_path / "fr" / "checkpoint-200", 1)
    fr400 = lora_adapter(tiny_model, tmp_path / "fr" / "checkpoint-400", 2)
    de300 = lora_adapter(tiny_model, tmp_path / "de" / "checkpoint-300", 3)
    file = tmp_path / "adapters.json"
    with running_server(tiny_model, tmp_path, ServeOptions(enable_lora=True)) as s:
        syncer = Syncer(Server(s.base_url))
        _write(file, {"travel-fr": fr200, "travel-de": de300})
        syncer.sync_once(desired(file))
        models = httpx.get(f"{s.base_url}/v1/models").json()["data"]
        assert sorted((m["id"], m["parent"]) for m in models) == [
            ("tiny-chat", None),
            ("travel-de", "tiny-chat"),
            ("travel-fr", "tiny-chat"),
        ]
        before = {m: _text(s.base_url, m) for m in ("tiny-chat", "travel-fr", "travel-de")}
        assert len(set(before.values())) == 3, before  # three models behind one base, chosen by name

        # travel-fr promoted to checkpoint-400: replaced in place (never missing), it answers as that checkpoint;
        # travel-de and the base are untouched.
        _write(file, {"travel-fr": fr400, "travel-de": de300})
        assert syncer.sync_once(desired(file)) == [f"replaced travel-fr with {fr400}"]
        assert _text(s.base_url, "travel-fr") != before["travel-fr"]
        assert _text(s.base_url, "travel-de") == before["travel-de"]
        assert _text(s.base_url, "tiny-chat") == before["tiny-chat"]

        # travel-de removed from the set: unloaded, and a request for it is refused.
        _write(file, {"travel-fr": fr400})
        syncer.sync_once(desired(file))
        assert [m["id"] for m in httpx.get(f"{s.base_url}/v1/models").json()["data"]] == ["tiny-chat", "travel-fr"]
        body = {"model": "travel-de", "prompt": "x", "max_tokens": 1}
        assert httpx.post(f"{s.base_url}/v1/completions", json=body, timeout=60).status_code == 404


class _OldServer(Server):
    """A server without load_inplace (an older vLLM): an in-place load of a loaded name is refused."""

    def __init__(self) -> None:
        super().__init__("http://unused")
        self.models: dict[str, str] = {}
        self.calls: list[str] = []

    def adapters(self) -> set[str]:
        return set(self.models)

    def load(self, name: str, path: str, *, inplace: bool = False) -> None:
        self.calls.append(f"load {name} inplace={inplace}")
        if name in self.models:
            raise SyncError(f"POST /v1/load_lora_adapter: 400 the LoRA adapter {name!r} has already been loaded")
        self.models[name] = path

    def unload(self, name: str) -> None:
        self.calls.append(f"unload {name}")
        del self.models[name]


def test_a_server_without_in_place_loading_gets_an_unload_and_a_load():
    server = _OldServer()
    syncer = Syncer(server)
    syncer.sync_once({"fr": "/m/fr/200"})
    assert syncer.sync_once({"fr": "/m/fr/400"}) == ["unloaded fr", "loaded fr from /m/fr/400"]
    assert server.models == {"fr": "/m/fr/400"}
    assert server.calls[1:] == ["load fr inplace=True", "unload fr", "load fr inplace=False"]
