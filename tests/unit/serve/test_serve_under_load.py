"""The built-in server under hostile and concurrent load, on a real port: huge prompts, limits, disconnects,
a full queue, and concurrent requests batched into one generate call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve_live import metric, running_server, wait_for

from kubetune_trainer.serve.options import ServeOptions

pytestmark = pytest.mark.timeout(180)

MESSAGES = [{"role": "user", "content": "was the room clean"}]


def _chat(base_url: str, **body) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/chat/completions", json={"messages": MESSAGES, **body}, timeout=60)


def _long_stream(client: httpx.Client, base_url: str):
    """A streamed request that generates for a long time; the caller reads its first event to know it runs."""
    return client.stream(
        "POST",
        f"{base_url}/v1/completions",
        json={"prompt": "the pool was", "max_tokens": 2000, "temperature": 0, "stream": True, "ignore_eos": True},
        timeout=60,
    )


def _first_event(stream: httpx.Response) -> Iterator[str]:
    """Waits for the stream's first event; returns its lines, which must stay referenced (closing them
    closes the connection)."""
    lines = stream.iter_lines()
    while not next(lines).startswith("data:"):
        pass
    return lines


def test_healthz_stays_quick_while_a_10_mb_prompt_is_tokenised(tiny_model, tmp_path):
    options = ServeOptions(max_body_bytes=32 * 1024 * 1024)
    with running_server(tiny_model, tmp_path, options) as s:
        big = "the room was clean " * 550_000  # ~10 MB, about 2 million tokens: it used to block for seconds
        answers: list[tuple[httpx.Response, float]] = []

        def send() -> None:
            for _ in range(3):
                t0 = time.perf_counter()
                r = httpx.post(f"{s.base_url}/v1/completions", json={"prompt": big, "max_tokens": 1}, timeout=120)
                answers.append((r, time.perf_counter() - t0))

        sender = threading.Thread(target=send)
        sender.start()
        latencies = []
        while sender.is_alive():
            t0 = time.perf_counter()
            assert httpx.get(f"{s.base_url}/healthz", timeout=30).status_code == 200
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)
        assert len(latencies) >= 5 and max(latencies) < 1.0, latencies
        for r, seconds in answers:
            assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
            assert r.json()["error"]["code"] == "context_length_exceeded"
            assert seconds < 5  # refused from a prefix: it took 30 s to tokenise it all on 2 busy cores


def test_limits_answer_413_and_400_naming_the_field(tiny_model, tmp_path):
    options = ServeOptions(max_body_bytes=10_000, max_prompt_tokens=50, max_tokens_limit=64)
    with running_server(tiny_model, tmp_path, options) as s:
        r = httpx.post(f"{s.base_url}/v1/completions", json={"prompt": "x" * 20_000}, timeout=30)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

        r = _chat(s.base_url, max_tokens=65)
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
        assert "64" in r.json()["error"]["message"]
        r = _chat(s.base_url, max_completion_tokens=1000)
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_completion_tokens"

        long_prompt = [{"role": "user", "content": "the room was clean " * 30}]
        r = httpx.post(f"{s.base_url}/v1/chat/completions", json={"messages": long_prompt}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages"

        r = _chat(s.base_url, max_tokens=0)
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
        assert _chat(s.base_url, max_tokens=64, temperature=0).status_code == 200
        assert metric(s.base_url, "kubetune_serve_requests_rejected_total", reason="body_too_large") == 1


def test_a_client_that_disconnects_mid_stream_cancels_its_generation(tiny_model, tmp_path):
    with running_server(tiny_model, tmp_path) as s, httpx.Client() as client:
        with _long_stream(client, s.base_url) as stream:
            lines = _first_event(stream)
            assert metric(s.base_url, "kubetune_serve_requests_in_flight") == 1
            assert metric(s.base_url, "kubetune_serve_requests_running") == 1
            del lines  # the client goes away mid-stream
        gone = time.perf_counter()
        wait_for(lambda: metric(s.base_url, "kubetune_serve_requests_in_flight") == 0, 5, "in-flight back to 0")
        assert metric(s.base_url, "kubetune_serve_requests_running") == 0
        # the engine is free again at once (the 2000 tokens were not generated to the end)
        assert _chat(s.base_url, max_tokens=4, temperature=0).status_code == 200
        assert time.perf_counter() - gone < 5

        # a non-streaming request whose client gives up is cancelled too
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{s.base_url}/v1/completions", json={"prompt": "the pool", "max_tokens": 2000}, timeout=1.0)
        wait_for(lambda: metric(s.base_url, "kubetune_serve_requests_in_flight") == 0, 5, "in-flight back to 0")


def test_a_full_queue_answers_429_with_retry_after(tiny_model, tmp_path):
    options = ServeOptions(max_batch_size=1, max_waiting=1)
    with running_server(tiny_model, tmp_path, options) as s, httpx.Client() as client, ThreadPoolExecutor(1) as pool:
        with _long_stream(client, s.base_url) as stream:
            lines = _first_event(stream)
            waiting = pool.submit(_chat, s.base_url, max_tokens=3, temperature=0)
            wait_for(lambda: metric(s.base_url, "kubetune_serve_requests_waiting") == 1, 10, "one request waiting")
            r = _chat(s.base_url, max_tokens=3)
            assert r.status_code == 429
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "queue_full"
            del lines
        assert waiting.result().status_code == 200  # the queued one is served once the stream is gone


def test_concurrent_requests_are_batched_into_one_generate(tiny_model, tmp_path):
    prompts = ["the pool was", "breakfast", "a quiet hotel near the station", "the bed"]
    options = ServeOptions(max_batch_size=8)
    with running_server(tiny_model, tmp_path, options) as s:

        def complete(prompt: str, max_tokens: int, stop: list[str] | None = None) -> dict:
            body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stop": stop}
            r = httpx.post(f"{s.base_url}/v1/completions", json=body, timeout=60)
            assert r.status_code == 200, r.text
            return r.json()

        alone = [complete(p, 3 + i) for i, p in enumerate(prompts)]
        stop = alone[2]["choices"][0]["text"][3:5]
        alone_stopped = complete(prompts[2], 5, [stop])
        calls_before = metric(s.base_url, "kubetune_serve_batch_size_count")
        served_before = metric(s.base_url, "kubetune_serve_batch_size_sum")

        with httpx.Client() as client, ThreadPoolExecutor(len(prompts) + 1) as pool:
            with _long_stream(client, s.base_url) as stream:  # keeps the engine busy while the others queue up
                lines = _first_event(stream)
                futures = [pool.submit(complete, p, 3 + i) for i, p in enumerate(prompts)]
                futures.append(pool.submit(complete, prompts[2], 5, [stop]))
                wait_for(lambda: metric(s.base_url, "kubetune_serve_requests_waiting") == 5, 20, "five waiting")
                del lines
            batched = [f.result() for f in futures]

        # the five waiting requests were served by one generate call (the stream had one of its own)
        assert metric(s.base_url, "kubetune_serve_batch_size_count") - calls_before == 2
        assert metric(s.base_url, "kubetune_serve_batch_size_sum") - served_before == 6
        # each with its own max_tokens and stop strings, as it would have been alone (left padding)
        for got, want in zip(batched, [*alone, alone_stopped], strict=True):
            assert got["choices"][0]["text"] == want["choices"][0]["text"]
            assert got["choices"][0]["finish_reason"] == want["choices"][0]["finish_reason"]
            assert got["usage"] == want["usage"]
