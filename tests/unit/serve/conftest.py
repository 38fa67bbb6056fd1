"""A tiny (untrained) Llama model and a live server for it on 127.0.0.1, for the serve tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_live import LiveServer, free_port, running_server

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
def live_server(tiny_model, tmp_path_factory) -> Iterator[LiveServer]:
    """uvicorn in a thread serving the tiny model as `tiny-chat`; waits for /healthz."""
    with running_server(tiny_model, tmp_path_factory.mktemp("serve-live")) as server:
        yield server
