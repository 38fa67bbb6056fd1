"""An OpenAI-compatible server for one model: a merged model or a base model plus a LoRA adapter.

Endpoints: POST /v1/chat/completions (streaming with server-sent events), POST /v1/completions,
GET /v1/models, GET /healthz (200 once the model is loaded, 503 before), GET /metrics (Prometheus).
The model loads in a background thread so the server answers /healthz while it loads. Generation
runs off the event loop, one request at a time (see engine.py); errors use OpenAI's error shape.

A model trained on raw text prompts (kubetune.json `prompt_format: raw-text`) is prompted as in
training: /v1/completions takes the raw prompt; /v1/chat/completions takes exactly one user message
and prompts its text raw, and answers 400 (`raw_text_model`) to any other conversation
(kubetune.data.promptformat). Its /v1/models card says `prompt_format`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from kubetune.api.runconfig import ServeRunConfig
from kubetune.data.promptformat import CHAT_TEMPLATE, RawPromptError
from kubetune_trainer.serve.engine import Completion, Engine, PromptTooLong, SamplingParams
from kubetune_trainer.serve.loading import InferenceModel, load_for_inference
from kubetune_trainer.serve.metrics import MetricsMiddleware, ServeMetrics

log = logging.getLogger(__name__)

DEFAULT_CHAT_MAX_TOKENS = 256
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}


# --- request models (unknown OpenAI fields are accepted and ignored) ---


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    seed: int | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Request):
    prompt: str | list[str]
    echo: bool = False


def _content_text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") != "text":
            raise OpenAIError(400, f"content parts of type {part.get('type')!r} are not supported; send text")
        parts.append(part.get("text", ""))
    return "".join(parts)


class _State:
    """The engine once loaded (or the error that prevented it)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.error: str | None = None

    def require(self) -> Engine:
        if self.engine is None:
            reason = f"the model failed to load: {self.error}" if self.error else "the model is still loading"
            raise OpenAIError(503, reason, type_="service_unavailable", code="model_not_ready")
        return self.engine


def create_app(  # noqa: PLR0915 - FastAPI's app factory: the routes are closures over the loaded model and settings
    config: ServeRunConfig,
    *,
    loaded: InferenceModel | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The server for `config`; pass `loaded` to serve an already loaded model (tests, notebooks)."""
    name = config.served_model_name
    state = _State()
    metrics = ServeMetrics(name)
    created = int(time.time())

    def load() -> None:
        try:
            model = loaded or load_for_inference(
                config.model_uri, base_model_uri=config.base_model_uri, storage=config.storage, name=name
            )
            state.engine = Engine(model, max_model_len=config.max_model_len)
            metrics.ready.labels(name).set(1)
            log.info("model %s ready on %s", name, model.device)
        except BaseException as e:
            state.error = str(e)
            log.exception("loading %s failed", config.model_uri)
            if on_load_error:
                on_load_error(e)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if loaded is not None:
            load()
        else:
            threading.Thread(target=load, name="kubetune-load-model", daemon=True).start()
        yield

    app = FastAPI(title="kubetune model server", lifespan=lifespan)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.serve = state
    app.state.metrics = metrics

    @app.exception_handler(OpenAIError)
    async def _openai_error(_: Request, exc: OpenAIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return JSONResponse(OpenAIError(400, errors or "invalid request").body(), status_code=400)

    def check(req: _Request) -> Engine:
        engine = state.require()
        if req.model and req.model != name:
            raise OpenAIError(
                404, f"model {req.model!r} does not exist; this server serves {name!r}", code="model_not_found"
            )
        if req.n != 1:
            raise OpenAIError(400, "n must be 1: this server returns one choice per request")
        return engine

    def params(engine: Engine, ids: list[int], req: _Request, max_tokens: int | None, default: int) -> SamplingParams:
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        p = SamplingParams(
            max_tokens=max_tokens or default, temperature=req.temperature, top_p=req.top_p, stop=stop, seed=req.seed
        )
        try:
            engine.check_length(ids, p)
        except PromptTooLong as e:
            raise OpenAIError(400, str(e), code="context_length_exceeded") from None
        return p

    async def complete(engine: Engine, ids: list[int], p: SamplingParams) -> Completion:
        metrics.in_flight.inc()
        try:
            result = await asyncio.to_thread(engine.generate, ids, p)
        finally:
            metrics.in_flight.dec()
        metrics.tokens(result.prompt_tokens, result.completion_tokens)
        return result

    def usage(c: Completion) -> dict[str, int]:
        return {
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens,
        }

    def sse(
        engine: Engine,
        ids: list[int],
        p: SamplingParams,
        chunk: Callable[[str | None, str | None], dict[str, Any]],
        first: dict[str, Any] | None,
        include_usage: bool,
        base: dict[str, Any],
    ) -> Iterator[str]:
        """Server-sent events in OpenAI's streaming format, ending with `data: [DONE]`."""
        metrics.in_flight.inc()
        started = time.perf_counter()
        first_text = True
        try:
            if first is not None:
                yield f"data: {json.dumps(first)}\n\n"
            for piece in engine.stream(ids, p):
                if isinstance(piece, Completion):
                    metrics.tokens(piece.prompt_tokens, piece.completion_tokens)
                    yield f"data: {json.dumps(chunk(None, piece.finish_reason))}\n\n"
                    if include_usage:
                        yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage(piece)})}\n\n"
                    continue
                if first_text:
                    metrics.time_to_first_token.labels(name).observe(time.perf_counter() - started)
                    first_text = False
                yield f"data: {json.dumps(chunk(piece, None))}\n\n"
        except Exception as e:
            log.exception("streaming generation failed")
            yield f"data: {json.dumps(OpenAIError(500, str(e), type_='server_error').body())}\n\n"
        finally:
            metrics.in_flight.dec()
        yield "data: [DONE]\n\n"

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest) -> Any:
        engine = check(req)
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": _content_text(m.content)}
            for m in req.messages
        ]
        try:
            ids = engine.chat_prompt_ids(messages)
        except RawPromptError as e:
            raise OpenAIError(400, str(e), code="raw_text_model") from None
        p = params(engine, ids, req, req.max_completion_tokens or req.max_tokens, DEFAULT_CHAT_MAX_TOKENS)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": name}
        if req.stream:
            base = {**base, "object": "chat.completion.chunk"}

            def chunk(text: str | None, finish: str | None) -> dict[str, Any]:
                delta = {"content": text} if text is not None else {}
                return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

            first = {
                **base,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                ],
            }
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                sse(engine, ids, p, chunk, first, include_usage, base), media_type="text/event-stream"
            )
        result = await complete(engine, ids, p)
        return {
            **base,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "logprobs": None,
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": usage(result),
        }

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Any:
        engine = check(req)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(prompts) != 1:
            raise OpenAIError(400, "prompt must be one string: this server completes one prompt per request")
        if req.echo:
            raise OpenAIError(400, "echo is not supported")
        ids = engine.text_prompt_ids(prompts[0])
        p = params(engine, ids, req, req.max_tokens, DEFAULT_COMPLETION_MAX_TOKENS)
        base = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": name,
        }
        if req.stream:

            def chunk(text: str | None, finish: str | None) -> dict[str, Any]:
                return {
                    **base,
                    "choices": [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}],
                }

            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                sse(engine, ids, p, chunk, None, include_usage, base), media_type="text/event-stream"
            )
        result = await complete(engine, ids, p)
        return {
            **base,
            "choices": [{"index": 0, "text": result.text, "logprobs": None, "finish_reason": result.finish_reason}],
            "usage": usage(result),
        }

    def model_card() -> dict[str, Any]:
        card = {"id": name, "object": "model", "created": created, "owned_by": "kubetune", "root": config.model_uri}
        if state.engine is not None:
            card["prompt_format"] = state.engine.loaded.prompt_format or CHAT_TEMPLATE
        return card

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != name:
            raise OpenAIError(
                404, f"model {model_id!r} does not exist; this server serves {name!r}", code="model_not_found"
            )
        return model_card()

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if state.engine is not None:
            return JSONResponse({"status": "ok", "model": name})
        body = {"status": "failed", "error": state.error} if state.error else {"status": "loading"}
        return JSONResponse(body, status_code=503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
