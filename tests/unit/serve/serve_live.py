"""Helpers for the serve tests: a live server of its own on a free port, its metrics, waiting for a condition.

A module with a unique name (not conftest) so that `from serve_live import ...` means this file whichever
other test folders' conftest modules were imported first.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    base_url: str  # http://127.0.0.1:PORT
    app: object
    model_name: str


@contextlib.contextmanager
def running_server(model_dir: Path, tmp_path: Path, options=None, name: str = "tiny-chat") -> Iterator[LiveServer]:
    """A server of its own (uvicorn on a free port in a thread) with `options` (ServeOptions), until the block ends."""
    import uvicorn

    from kubetune.api.runconfig import Identity, ServeRunConfig
    from kubetune_trainer.serve.app import create_app

    config = ServeRunConfig(
        job=Identity(name=name),
        model_uri=str(model_dir),
        served_model_name=name,
        output_dir=str(tmp_path / "serve-out"),
        port=free_port(),
    )
    app = create_app(config, options=options)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{config.port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base_url}/healthz").status_code == 200:
                break
            if app.state.serve.error:
                raise RuntimeError(app.state.serve.error)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not become healthy within 60 s")
        time.sleep(0.05)
    try:
        yield LiveServer(base_url=base_url, app=app, model_name=name)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def metric(base_url: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` (with `labels`) on the server's /metrics."""
    total = 0.0
    for line in httpx.get(f"{base_url}/metrics").text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def wait_for(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)
