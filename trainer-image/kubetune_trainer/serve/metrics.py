"""Prometheus metrics of the server, in a registry of its own (one per app), exposed at /metrics.

One vocabulary with vLLM, so that one autoscaling rule (KEDA ScaledObject, HPA) and one dashboard
serve both runtimes. How vLLM's series map to ours:

| vLLM (`/metrics` of vLLM)                  | kubetune built-in server                          | meaning                                 |
|--------------------------------------------|---------------------------------------------------|-----------------------------------------|
| `vllm:num_requests_running`                | `kubetune_serve_requests_running`                 | requests in the batch being generated   |
| `vllm:num_requests_waiting`                | `kubetune_serve_requests_waiting`                 | requests queued behind it (scale on it) |
| running + waiting                          | `kubetune_serve_requests_in_flight`               | all generation requests in the server   |
| `vllm:e2e_request_latency_seconds`         | `kubetune_serve_request_duration_seconds`         | request to last byte (streams in full)  |
| `vllm:time_to_first_token_seconds`         | `kubetune_serve_time_to_first_token_seconds`      | streamed request to its first text      |
| `vllm:prompt_tokens_total`                 | `kubetune_serve_prompt_tokens_total`              | prompt tokens processed                 |
| `vllm:generation_tokens_total`             | `kubetune_serve_completion_tokens_total`          | tokens generated                        |
| `vllm:request_success_total` (+ HTTP codes)| `kubetune_serve_requests_total{route,status}`  | requests answered, by HTTP status       |
| `vllm:iteration_tokens_total` (roughly)    | `kubetune_serve_batch_size`                       | requests per generate call              |
| (up / readiness probe)                     | `kubetune_serve_model_ready{model}`               | 1 once the model is loaded              |
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Request paths counted under their own label; anything else is "other" (bounded label values).
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServeMetrics:
    def __init__(self, model: str, registry: CollectorRegistry | None = None) -> None:
        self.model = model
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "kubetune_serve_request_duration_seconds",
            "Time from request to the last byte of the response (streams included).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "kubetune_serve_time_to_first_token_seconds",
            "Time from a streamed request to its first generated text.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "kubetune_serve_requests",
            "Requests answered, by route (the API path) and HTTP status.",
            ["route", "status"],
            registry=r,
        )
        self.prompt_tokens = Counter("kubetune_serve_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r)
        self.completion_tokens = Counter(
            "kubetune_serve_completion_tokens", "Completion tokens generated.", ["model"], registry=r
        )
        self.in_flight = Gauge(
            "kubetune_serve_requests_in_flight", "Generation requests being served or queued.", registry=r
        )
        self.running = Gauge(
            "kubetune_serve_requests_running",
            "Requests in the batch being generated (vLLM's vllm:num_requests_running).",
            registry=r,
        )
        self.waiting = Gauge(
            "kubetune_serve_requests_waiting",
            "Requests queued behind the running batch (vLLM's vllm:num_requests_waiting).",
            registry=r,
        )
        self.batch_size = Histogram(
            "kubetune_serve_batch_size",
            "Requests served by one generate call (dynamic batching).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "kubetune_serve_requests_rejected",
            "Requests refused before generation, by reason (queue_full, body_too_large, unauthorized).",
            ["reason"],
            registry=r,
        )
        self.ready = Gauge("kubetune_serve_model_ready", "1 once the model is loaded.", ["model"], registry=r)
        self.ready.labels(model).set(0)

    def tokens(self, prompt: int, completion: int) -> None:
        self.prompt_tokens.labels(self.model).inc(prompt)
        self.completion_tokens.labels(self.model).inc(completion)


class MetricsMiddleware:
    """ASGI middleware: duration (to the end of the body, so streams count in full) and status per endpoint."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        status = 500
        started = time.perf_counter()

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.request_duration.labels(endpoint).observe(time.perf_counter() - started)
