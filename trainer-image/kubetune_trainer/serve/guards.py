"""ASGI middleware in front of the API: the API key (401), the request body limit (413), and OpenAI's error
shape for anything unexpected (500).

Both apply to /v1/* only: /healthz and /metrics stay open to probes and Prometheus. Answers use
OpenAI's error shape. The key is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from kubetune_trainer.serve.metrics import ServeMetrics

log = logging.getLogger(__name__)


def error_body(message: str, *, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


async def _answer(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006 - never mutated
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _guarded(scope: dict) -> bool:
    return scope["type"] == "http" and scope["path"].startswith("/v1/")


class ApiKeyMiddleware:
    """401 without `Authorization: Bearer <key>` on /v1/*."""

    def __init__(self, app: Any, api_key: str, metrics: ServeMetrics) -> None:
        self.app, self.key, self.metrics = app, api_key.encode(), metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if _guarded(scope):
            auth = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                self.metrics.rejected.labels("unauthorized").inc()
                body = error_body(
                    "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                    type_="invalid_request_error",
                    code="invalid_api_key",
                )
                await _answer(send, 401, body, [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes` on /v1/*: by Content-Length at once, else as the bytes arrive."""

    def __init__(self, app: Any, max_bytes: int, metrics: ServeMetrics) -> None:
        self.app, self.max_bytes, self.metrics = app, max_bytes, metrics

    async def _too_large(self, send: Any) -> None:
        self.metrics.rejected.labels("body_too_large").inc()
        body = error_body(
            f"the request body is larger than this server's limit of {self.max_bytes} bytes (--max-body-bytes)",
            type_="invalid_request_error",
            code="request_too_large",
        )
        await _answer(send, 413, body)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not _guarded(scope) or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:  # buffer the body (FastAPI would anyway) so that an oversized one is refused before parsing
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ErrorShapeMiddleware:
    """Anything a route raises unhandled becomes a 500 in OpenAI's shape (`server_error`, no traceback: that
    goes to the log), answered like any other error, so the connection stays open for its next request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def note(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, note)
        except Exception:
            log.exception("unexpected error answering %s %s", scope.get("method"), scope.get("path"))
            if started:  # a stream already under way: nothing more can be said in it
                raise
            body = error_body("the server failed to answer this request; see its log", type_="server_error", code=None)
            await _answer(send, 500, body)
