"""`kubetune-trainer serve-adapters-sync` against a fake server that speaks vLLM's runtime adapter API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kubetune_trainer.adapters_sync import Server, Syncer, desired, main


class FakeVllm:
    """Holds loaded adapters like vLLM: /v1/models lists the base and each adapter (parent: the base); loading a
    name twice is a 400 unless `load_inplace` (vLLM's replace-in-place, off with `inplace=False`, as on an older
    vLLM); every call is recorded."""

    def __init__(self, *, inplace: bool = True) -> None:
        self.inplace = inplace
        self.adapters: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: object) -> None:
                data = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                cards = [{"id": "base", "parent": None}] + [{"id": n, "parent": "base"} for n in fake.adapters]
                self._send(200, {"object": "list", "data": cards})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name = body["lora_name"]
                fake.calls.append((self.path.rsplit("/", 1)[-1], name))
                if self.path.endswith("/load_lora_adapter"):
                    if name in fake.adapters and not (fake.inplace and body.get("load_inplace")):
                        return self._send(400, {"error": f"The lora adapter '{name}' has already been loaded."})
                    fake.adapters[name] = body["lora_path"]
                    return self._send(200, f"Success: LoRA adapter '{name}' added successfully.")
                if name not in fake.adapters:
                    return self._send(404, {"error": f"The lora adapter '{name}' cannot be found."})
                del fake.adapters[name]
                return self._send(200, "ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def vllm() -> Iterator[FakeVllm]:
    fake = FakeVllm()
    yield fake
    fake.httpd.shutdown()


def write(path: Path, adapters: dict[str, str]) -> None:
    path.write_text(json.dumps({"adapters": [{"name": n, "path": p} for n, p in adapters.items()]}))


def test_the_server_follows_the_adapter_set_load_reload_on_a_new_path_unload(vllm: FakeVllm, tmp_path: Path) -> None:
    file = tmp_path / "adapters.json"
    syncer = Syncer(Server(vllm.url))
    write(file, {"fr": "/m/fr/checkpoint-200", "de": "/m/de/checkpoint-400"})
    syncer.sync_once(desired(file))
    assert vllm.adapters == {"fr": "/m/fr/checkpoint-200", "de": "/m/de/checkpoint-400"}

    # One adapter promoted: only it is replaced, in place (no moment without it); the other is untouched.
    vllm.calls.clear()
    write(file, {"fr": "/m/fr/checkpoint-400", "de": "/m/de/checkpoint-400"})
    syncer.sync_once(desired(file))
    assert vllm.calls == [("load_lora_adapter", "fr")]
    assert vllm.adapters["fr"] == "/m/fr/checkpoint-400"

    # In sync: a round does nothing.
    vllm.calls.clear()
    assert syncer.sync_once(desired(file)) == []
    assert vllm.calls == []

    # Removed from the set: unloaded.
    write(file, {"de": "/m/de/checkpoint-400"})
    syncer.sync_once(desired(file))
    assert vllm.adapters == {"de": "/m/de/checkpoint-400"}


def test_a_restarted_sync_reloads_what_it_cannot_vouch_for(vllm: FakeVllm, tmp_path: Path) -> None:
    """/v1/models shows no paths: an adapter loaded before the sidecar restarted may be at an older checkpoint."""
    vllm.adapters = {"fr": "/m/fr/checkpoint-200"}
    file = tmp_path / "adapters.json"
    write(file, {"fr": "/m/fr/checkpoint-400"})
    assert main(["--adapters", str(file), "--server", vllm.url, "--once"]) == 0
    assert vllm.adapters == {"fr": "/m/fr/checkpoint-400"}


def test_until_the_configmap_is_mounted_nothing_is_loaded_and_an_unreachable_server_is_retried(tmp_path: Path) -> None:
    assert desired(tmp_path / "absent.json") == {}
    assert main(["--adapters", str(tmp_path / "absent.json"), "--server", "http://127.0.0.1:9", "--once"]) == 1
