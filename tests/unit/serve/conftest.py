"""A tiny (untrained) Llama model and a live server for it on 127.0.0.1, for the serve tests."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_live import LiveServer, free_port

SENTENCES = [
    "the room was clean and the staff were friendly",
    "breakfast was cold and the service was slow",
    "a quiet hotel near the station with a lovely view",
    "the pool was closed and the bed was broken",
]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from kubetune_trainer.tiny import init_tiny

    root = tmp_path_factory.mktemp("serve-model")
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": s, "completion": s}) + "\n" for s in SENTENCES * 5))
    return init_tiny(root / "model", [data], size="nano", vocab_size=300)


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def live_server(tiny_model, tmp_path_factory):
    """uvicorn in a thread serving the tiny model as `tiny-chat`; waits for /healthz."""
    import uvicorn

    from kubetune.api.runconfig import Identity, ServeRunConfig
    from kubetune_trainer.serve.app import create_app

    config = ServeRunConfig(
        job=Identity(name="tiny-chat"),
        model_uri=str(tiny_model),
        served_model_name="tiny-chat",
        output_dir=str(tmp_path_factory.mktemp("serve-out")),
        port=free_port(),
    )
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{config.port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base_url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not become healthy within 60 s")
        time.sleep(0.1)
    yield LiveServer(base_url=base_url, app=app, model_name="tiny-chat")
    server.should_exit = True
    thread.join(timeout=10)
