"""Every error of the built-in server is OpenAI's JSON error with the field at fault, against the real server on a
port: malformed content, out-of-range seed, empty prompt, too many stop strings or messages, unparsable bodies,
unknown routes, and anything unexpected (500 `server_error`, no traceback) — and the connection stays open."""

from __future__ import annotations

import http.client
import json
import time

import httpx
import pytest

pytestmark = pytest.mark.timeout(120)


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.text
    return r.json()["error"]


def _chat(base_url: str, **body: object) -> httpx.Response:
    payload = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **body}
    return httpx.post(f"{base_url}/v1/chat/completions", json=payload, timeout=60)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "messages.0.content.0.text"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages.0.content.0.type"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"seed": 10**30}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": "x" * 257}, "stop"),
        ({"max_completion_tokens": 10**9}, "max_completion_tokens"),
    ],
)
def test_bad_chat_requests_are_400_naming_the_field(live_server, body, param):
    error = _error(_chat(live_server.base_url, **body), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error", error


def test_an_empty_completion_prompt_is_400(live_server):
    r = httpx.post(f"{live_server.base_url}/v1/completions", json={"model": "tiny-chat", "prompt": "", "max_tokens": 2})
    assert _error(r, 400)["param"] == "prompt"


def test_too_many_messages_are_refused_before_any_work(live_server):
    started = time.perf_counter()
    r = _chat(live_server.base_url, messages=[{"role": "user", "content": ""}] * 20_000)
    error = _error(r, 400)
    assert error["param"] == "messages" and "at most 4096" in error["message"], error
    assert time.perf_counter() - started < 2.0


def test_bodies_routes_and_methods_the_server_does_not_take_answer_in_openai_shape(live_server):
    url = live_server.base_url
    post = lambda content: httpx.post(  # noqa: E731
        f"{url}/v1/chat/completions", content=content, headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in _error(post(b"{not json"), 400)["message"]
    assert "JSON object" in _error(post(b"[1, 2]"), 400)["message"]
    _error(post(b'{"model": "\xff\xfe"}'), 400)
    assert _error(httpx.get(f"{url}/v1/nothing-here"), 404)["code"] == "not_found"
    assert _error(httpx.get(f"{url}/v1/chat/completions"), 405)["code"] == "method_not_allowed"
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{url}{path}").status_code == 404, path
    assert httpx.get(f"{url}/health").json()["status"] == "ok"  # vLLM's probe path


def test_an_unexpected_failure_is_a_500_in_openai_shape_and_keeps_the_connection(live_server, monkeypatch):
    engine = live_server.app.state.serve.engine

    def boom(_messages):
        raise RuntimeError("boom at /very/secret/place")

    monkeypatch.setattr(engine, "chat_prompt_ids", boom)
    host, port = live_server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    payload = r.read()
    assert r.status == 500 and r.getheader("content-type") == "application/json", payload
    error = json.loads(payload)["error"]
    assert error["type"] == "server_error" and "secret" not in error["message"] and "Traceback" not in payload.decode()
    sock = conn.sock
    conn.request("GET", "/v1/models")  # the same connection: the 500 did not close it
    again = conn.getresponse()
    assert again.status == 200 and conn.sock is sock
    again.read()
    conn.close()
