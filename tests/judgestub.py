"""A stub OpenAI-compatible judge on localhost whose answers the test controls.

A real HTTP server (http.server, threads) on 127.0.0.1: each POST to /v1/chat/completions is recorded and
answered by the next scripted Reply, or, when the script is used up, by `default(request_body)`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str | None = None  # the assistant's text (a 200 with an OpenAI body)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # a raw body instead of an OpenAI one
    delay: float = 0.0  # seconds before answering (beyond the client's timeout: a timeout)


def chat(content: str) -> str:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


@dataclass
class JudgeStub:
    url: str = ""
    script: list[Reply] = field(default_factory=list)
    default: Callable[[dict[str, Any]], Reply] = lambda body: Reply(content='{"reason": "ok", "score": 5}')
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _next(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            reply = self.script.pop(0) if self.script else None
        return reply or self.default(body)

    def _done(self) -> None:
        with self.lock:
            self.in_flight -= 1


def user_text(body: dict[str, Any]) -> str:
    """The case a judge request asks about (the user message: PROMPT, RESPONSE, REFERENCE ANSWER)."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


@contextmanager
def judge_stub(**kwargs: Any) -> Iterator[JudgeStub]:
    stub = JudgeStub(**kwargs)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            reply = stub._next(body)
            try:
                if reply.delay:
                    threading.Event().wait(reply.delay)  # not time.sleep: tests patch it out
                payload = (reply.body if reply.body is not None else chat(reply.content or "")).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)
            finally:
                stub._done()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
