"""The local model server over HTTP: a free port, waiting until it is healthy, one chat request."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

from kubetune.local.children import Child

POLL_SECONDS = 0.5
HEALTH_TIMEOUT = 300.0


def free_port(start: int, host: str = "127.0.0.1") -> int:
    """`start`, or the next port after it that nothing listens on."""
    for port in range(start, start + 100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {start}-{start + 99}")


def wait_healthy(child: Child, url: str, timeout: float = HEALTH_TIMEOUT) -> bool:
    """True once `url` answers 200; False when the server exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(POLL_SECONDS)
    return False


def ask(endpoint: str, model: str, messages: list[dict[str, Any]]) -> str:
    """The answer to one chat request (or why there is none), as the OpenAI-compatible API gives it."""
    body = {"model": model, "messages": messages, "max_tokens": 64, "temperature": 0}
    try:
        resp = httpx.post(f"{endpoint}/chat/completions", json=body, timeout=120)
        resp.raise_for_status()
        return resp.json()["choices"][0]["message"]["content"]
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
        return f"(request failed: {err})"
