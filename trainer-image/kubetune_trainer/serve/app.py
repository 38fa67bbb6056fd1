"""An OpenAI-compatible server for one model (merged, or base plus a LoRA adapter) and its LoRA adapters.

Endpoints: POST /v1/chat/completions (streaming with server-sent events), POST /v1/completions,
GET /v1/models, POST /v1/load_lora_adapter and /v1/unload_lora_adapter (vLLM's, with --enable-lora),
GET /healthz and /health (vLLM's path; 200 once the model is loaded, 503 before it or once a failed adapter
load could not be undone), GET /metrics (Prometheus). No /docs or /openapi.json (they would answer without
the key). Requests choose
an adapter by its name in `model`. The model loads in a background thread so the server answers
/healthz while it loads. Tokenisation runs in a worker thread and generation in the batching thread
(batching.py), so the event loop only moves bytes. Limits (options.py): body size (413), prompt
tokens and max_tokens (400 naming the field), waiting requests (429 with Retry-After); with an API
key, /v1/* wants `Authorization: Bearer` (401). A client that disconnects cancels its generation.
Every error uses OpenAI's error shape, an unexpected one too (500 `server_error`, the traceback only in the
log), and keeps the connection open. Requests: `stop` holds at most MAX_STOP strings of MAX_STOP_CHARS
characters (OpenAI's limit of 4; vLLM has none), `messages` at most MAX_MESSAGES, `seed` fits torch's.

A model trained on raw text prompts (kubetune.json `prompt_format: raw-text`) is prompted as in
training: /v1/completions takes the raw prompt; /v1/chat/completions takes exactly one user message
and prompts its text raw, and answers 400 (`raw_text_model`) to any other conversation
(kubetune.data.promptformat). Its /v1/models card says `prompt_format`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from kubetune.api.runconfig import ServeRunConfig
from kubetune.data.promptformat import CHAT_TEMPLATE, RawPromptError
from kubetune_trainer.serve.adapters import AdapterError, EngineBroken, load_adapter, unload_adapter
from kubetune_trainer.serve.batching import GenerationFailed, QueueFull, Scheduler, Ticket
from kubetune_trainer.serve.engine import Completion, Engine, PromptTooLong, SamplingParams
from kubetune_trainer.serve.guards import ApiKeyMiddleware, BodyLimitMiddleware, ErrorShapeMiddleware, error_body
from kubetune_trainer.serve.loading import InferenceModel, load_for_inference
from kubetune_trainer.serve.metrics import MetricsMiddleware, ServeMetrics
from kubetune_trainer.serve.options import ServeOptions
from kubetune_trainer.sources import ModelSourceError, resolve_model

log = logging.getLogger(__name__)

DEFAULT_CHAT_MAX_TOKENS = 256
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
MAX_STOP = 4  # stop strings per request (OpenAI's limit; each is searched for at every generated token)
MAX_STOP_CHARS = 256
MAX_MESSAGES = 4096  # refused before any per-message work
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch.manual_seed takes


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type_=self.type, code=self.code, param=self.param)


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
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    ignore_eos: bool = False  # vLLM's extension


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Request):
    prompt: str | list[str]
    echo: bool = False


class LoadLoraRequest(BaseModel):
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1, description="a local directory or a model URI (pvc://, hf://, s3://)")
    load_inplace: bool = Field(default=False, description="vLLM's: replace an adapter of this name between batches")


class UnloadLoraRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lora_name: str = Field(min_length=1)


def _content_text(content: str | list[dict[str, Any]] | None, where: str) -> str:
    """The text of a message's content; `where`: its field path (messages.I.content) for errors."""
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for j, part in enumerate(content):
        if part.get("type") != "text":
            kind = str(part.get("type"))[:40]
            raise OpenAIError(
                400,
                f"{where}.{j}.type: content parts of type {kind!r} are not supported; send text",
                param=f"{where}.{j}.type",
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise OpenAIError(
                400, f"{where}.{j}.text: a text part needs its text as a string", param=f"{where}.{j}.text"
            )
        parts.append(text)
    return "".join(parts)


def _field_path(loc: Any) -> str:
    """A pydantic error location as the request's field path (union member tags such as `str` dropped)."""
    parts = [str(p) for p in loc[1:] if isinstance(p, int) or ("[" not in str(p) and str(p) not in _TAGS)]
    return ".".join(parts)


_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _generation_error(e: Exception) -> OpenAIError:
    """What a failed generation tells its client: a request for an adapter unloaded while it waited is a 404."""
    if isinstance(e, AdapterError):
        return OpenAIError(e.status, str(e), code="model_not_found", param="model")
    if isinstance(e, EngineBroken):
        return OpenAIError(503, str(e), type_="service_unavailable", code="model_broken")
    return OpenAIError(500, str(e), type_="server_error")


def _redact(message: str, shown: str) -> str:
    """`message` without local paths other than (parts of) what the client sent itself."""
    return re.sub(r"/[^\s;'\"()]+", lambda m: m.group(0) if m.group(0) in shown else "<local path>", message)


class _State:
    """The engine and its scheduler once loaded (or the error that prevented it)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.scheduler: Scheduler | None = None
        self.error: str | None = None

    def require(self) -> tuple[Engine, Scheduler]:
        if self.engine is not None and self.engine.broken:
            raise OpenAIError(503, self.engine.broken, type_="service_unavailable", code="model_broken")
        if self.engine is None or self.scheduler is None:
            reason = f"the model failed to load: {self.error}" if self.error else "the model is still loading"
            raise OpenAIError(503, reason, type_="service_unavailable", code="model_not_ready")
        return self.engine, self.scheduler


async def _client_gone(request: Request) -> None:
    """Returns once the client has disconnected (the body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(  # noqa: PLR0915 - FastAPI's app factory: the routes are closures over the loaded model and settings
    config: ServeRunConfig,
    *,
    options: ServeOptions | None = None,
    loaded: InferenceModel | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The server for `config`; pass `loaded` to serve an already loaded model (tests, notebooks)."""
    opts = options or ServeOptions()
    name = config.served_model_name
    state = _State()
    metrics = ServeMetrics(name)
    created = int(time.time())

    def load() -> None:
        try:
            model = loaded or load_for_inference(
                config.model_uri, base_model_uri=config.base_model_uri, storage=config.storage, name=name
            )
            engine = Engine(model, max_model_len=config.max_model_len)
            for lora_name, uri in opts.lora_modules.items():
                load_adapter(engine, lora_name, resolve_model(uri, config.storage), uri=uri)
            state.scheduler = Scheduler(
                engine,
                metrics,
                max_batch_size=opts.max_batch_size,
                max_waiting=opts.max_waiting,
                batch_wait_s=opts.batch_wait_ms / 1000,
            )
            state.engine = engine
            metrics.ready.labels(name).set(1)
            log.info("model %s ready on %s", name, model.device)
        except BaseException as e:
            state.error = str(e)
            log.exception("loading %s failed", name)
            if on_load_error:
                on_load_error(e)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if loaded is not None:
            load()
        else:
            threading.Thread(target=load, name="kubetune-load-model", daemon=True).start()
        yield
        if state.scheduler is not None:
            state.scheduler.stop()

    app = FastAPI(title="kubetune model server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(ErrorShapeMiddleware)  # innermost: whatever escapes a route becomes a 500 in OpenAI's shape
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=opts.max_body_bytes, metrics=metrics)
    if opts.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=opts.api_key, metrics=metrics)  # outermost: before the body
    app.state.serve = state
    app.state.metrics = metrics

    @app.exception_handler(OpenAIError)
    async def _openai_error(_: Request, exc: OpenAIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown routes (404), wrong methods (405) and bodies that cannot be parsed (400), in OpenAI's shape."""
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {404: "no such route", 405: "method not allowed on this route"}.get(exc.status_code, str(exc.detail))
        error = OpenAIError(exc.status_code, message, code=codes.get(exc.status_code))
        return JSONResponse(error.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            error = OpenAIError(400, f"the request body is not valid JSON: {errors[0].get('ctx', {}).get('error', '')}")
            return JSONResponse(error.body(), status_code=400)
        seen: dict[str, str] = {}
        for e in errors:
            seen.setdefault(_field_path(e["loc"]), e["msg"])
        if "" in seen:
            return JSONResponse(OpenAIError(400, "the request body must be a JSON object").body(), status_code=400)
        message = "; ".join(f"{path}: {msg}" for path, msg in seen.items())
        param = next(iter(seen), None)
        return JSONResponse(OpenAIError(400, message or "invalid request", param=param).body(), status_code=400)

    def check(req: _Request) -> tuple[Engine, Scheduler, str | None]:
        """The engine, its scheduler and the adapter the request's `model` names (None: the base model)."""
        engine, scheduler = state.require()
        if req.model and req.model != name and req.model not in engine.adapters:
            served = ", ".join(repr(m) for m in [name, *engine.adapters])
            raise OpenAIError(
                404, f"model {req.model!r} does not exist; this server serves {served}", code="model_not_found"
            )
        if req.n != 1:
            raise OpenAIError(400, "n must be 1: this server returns one choice per request", param="n")
        return engine, scheduler, req.model if req.model in engine.adapters else None

    def params(engine: Engine, req: _Request, max_tokens: int | None, field_name: str, default: int) -> SamplingParams:
        if max_tokens is not None and opts.max_tokens_limit and max_tokens > opts.max_tokens_limit:
            raise OpenAIError(
                400,
                f"{field_name} is {max_tokens}: more than this server's limit of {opts.max_tokens_limit}",
                param=field_name,
                code="max_tokens_too_large",
            )
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        if len(stop) > MAX_STOP or any(len(s) > MAX_STOP_CHARS for s in stop):
            raise OpenAIError(
                400,
                f"stop holds {len(stop)} strings of up to {max(map(len, stop))} characters: this server takes at most "
                f"{MAX_STOP} of at most {MAX_STOP_CHARS} characters each",
                param="stop",
            )
        return SamplingParams(
            max_tokens=max_tokens or min(default, opts.max_tokens_limit or default),
            temperature=req.temperature,
            top_p=req.top_p,
            stop=stop,
            seed=req.seed,
            ignore_eos=req.ignore_eos,
        )

    def prompt_limit(engine: Engine, p: SamplingParams) -> int | None:
        context = engine.max_model_len - p.max_tokens if engine.max_model_len else None
        limits = [n for n in (opts.max_prompt_tokens, context) if n is not None]
        return min(limits) if limits else None

    def too_long(engine: Engine, count: int, field_name: str, at_least: bool = False) -> OpenAIError:
        bound = "at least " if at_least else ""
        if opts.max_prompt_tokens and count > opts.max_prompt_tokens:
            reason = f"more than this server's limit of {opts.max_prompt_tokens}; shorten it"
        else:
            reason = (
                f"with max_tokens, more than the model's context of {engine.max_model_len} tokens; "
                "shorten the prompt or lower max_tokens"
            )
        return OpenAIError(
            400,
            f"the prompt ({field_name}) has {bound}{count} tokens: {reason}",
            param=field_name,
            code="context_length_exceeded",
        )

    async def encode(
        engine: Engine, prompt: str | list[dict[str, str]], p: SamplingParams, field_name: str, max_field: str
    ) -> list[int]:
        """The prompt's token ids, tokenised off the event loop; a prompt over the limits is refused (400)."""
        limit = prompt_limit(engine, p)
        if limit is not None and limit < 1:
            raise OpenAIError(
                400,
                f"{max_field} is {p.max_tokens}: it leaves no room for a prompt in the model's context of "
                f"{engine.max_model_len} tokens; lower it",
                param=max_field,
                code="context_length_exceeded",
            )
        texts = [prompt] if isinstance(prompt, str) else [m["content"] for m in prompt]
        if limit is not None and sum(map(len, texts)) > 16 * limit:  # long enough to be worth a cheap look first
            bound = await asyncio.to_thread(engine.surely_longer_than, texts, limit)
            if bound is not None:
                raise too_long(engine, bound, field_name, at_least=True)
        try:
            if isinstance(prompt, str):
                ids = await asyncio.to_thread(engine.text_prompt_ids, prompt)
            else:
                ids = await asyncio.to_thread(engine.chat_prompt_ids, prompt)
        except RawPromptError as e:
            raise OpenAIError(400, str(e), param=field_name, code="raw_text_model") from None
        if not ids:
            raise OpenAIError(400, f"{field_name} is empty: give the model some text to continue", param=field_name)
        if limit is not None and len(ids) > limit:
            raise too_long(engine, len(ids), field_name)
        try:
            engine.check_length(ids, p)
        except PromptTooLong as e:
            raise OpenAIError(400, str(e), param=field_name, code="context_length_exceeded") from None
        return ids

    def submit(scheduler: Scheduler, ids: list[int], p: SamplingParams, adapter: str | None, stream: bool) -> Ticket:
        try:
            return scheduler.submit(ids, p, adapter, stream=stream)
        except QueueFull as e:
            metrics.rejected.labels("queue_full").inc()
            raise OpenAIError(
                429,
                f"the server is busy: {e}",
                type_="rate_limit_exceeded",
                code="queue_full",
                headers={"Retry-After": str(opts.retry_after_s)},
            ) from None

    async def complete(request: Request, scheduler: Scheduler, ticket: Ticket) -> Completion:
        """The ticket's completion; a client that disconnects first cancels it."""
        result = asyncio.ensure_future(ticket.result())
        gone = asyncio.ensure_future(_client_gone(request))
        try:
            await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not result.done():
                raise asyncio.CancelledError  # nobody is left to answer
            try:
                completion = result.result()
            except (GenerationFailed, AdapterError, EngineBroken) as e:
                raise _generation_error(e) from None
        finally:
            gone.cancel()
            result.cancel()
            scheduler.cancel(ticket)  # a no-op once it has finished
        metrics.tokens(completion.prompt_tokens, completion.completion_tokens)
        return completion

    def usage(c: Completion) -> dict[str, int]:
        return {
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens,
        }

    async def sse(
        scheduler: Scheduler,
        ticket: Ticket,
        chunk: Callable[[str | None, str | None], dict[str, Any]],
        first: dict[str, Any] | None,
        include_usage: bool,
        base: dict[str, Any],
    ) -> AsyncIterator[str]:
        """Server-sent events in OpenAI's streaming format, ending with `data: [DONE]`.

        A client that disconnects cancels this generator (Starlette), which cancels the generation."""
        started = time.perf_counter()
        first_text = True
        try:
            if first is not None:
                yield f"data: {json.dumps(first)}\n\n"
            async for piece in ticket:
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
        except (GenerationFailed, AdapterError, EngineBroken) as e:
            yield f"data: {json.dumps(_generation_error(e).body())}\n\n"
        finally:
            scheduler.cancel(ticket)
        yield "data: [DONE]\n\n"

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
        engine, scheduler, adapter = check(req)
        field_name = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        p = params(engine, req, req.max_completion_tokens or req.max_tokens, field_name, DEFAULT_CHAT_MAX_TOKENS)
        messages = [
            {
                "role": "system" if m.role == "developer" else m.role,
                "content": _content_text(m.content, f"messages.{i}.content"),
            }
            for i, m in enumerate(req.messages)
        ]
        ids = await encode(engine, messages, p, "messages", field_name)
        ticket = submit(scheduler, ids, p, adapter, req.stream)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": req.model or name}
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
                sse(scheduler, ticket, chunk, first, include_usage, base), media_type="text/event-stream"
            )
        result = await complete(request, scheduler, ticket)
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
    async def completions(req: CompletionRequest, request: Request) -> Any:
        engine, scheduler, adapter = check(req)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(prompts) != 1:
            raise OpenAIError(
                400, "prompt must be one string: this server completes one prompt per request", param="prompt"
            )
        if req.echo:
            raise OpenAIError(400, "echo is not supported", param="echo")
        p = params(engine, req, req.max_tokens, "max_tokens", DEFAULT_COMPLETION_MAX_TOKENS)
        ids = await encode(engine, prompts[0], p, "prompt", "max_tokens")
        ticket = submit(scheduler, ids, p, adapter, req.stream)
        base = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": req.model or name,
        }
        if req.stream:

            def chunk(text: str | None, finish: str | None) -> dict[str, Any]:
                return {
                    **base,
                    "choices": [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}],
                }

            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                sse(scheduler, ticket, chunk, None, include_usage, base), media_type="text/event-stream"
            )
        result = await complete(request, scheduler, ticket)
        return {
            **base,
            "choices": [{"index": 0, "text": result.text, "logprobs": None, "finish_reason": result.finish_reason}],
            "usage": usage(result),
        }

    # --- models and LoRA adapters (vLLM's runtime adapter endpoints) ---

    def model_cards() -> list[dict[str, Any]]:
        """The base model and its adapters, named as requests name them; no local paths (vLLM shows them)."""
        card: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "kubetune",
            "root": name,
            "parent": None,
        }
        if state.engine is None:
            return [card]
        card["prompt_format"] = state.engine.loaded.prompt_format or CHAT_TEMPLATE
        adapters = [
            {**card, "id": adapter, "root": adapter, "parent": name} for adapter in sorted(state.engine.adapters)
        ]
        return [card, *adapters]

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": model_cards()}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        for card in model_cards():
            if card["id"] == model_id:
                return card
        raise OpenAIError(
            404, f"model {model_id!r} does not exist; this server serves {name!r}", code="model_not_found"
        )

    def lora_engine() -> Engine:
        engine, _ = state.require()
        if not opts.lora:
            raise OpenAIError(
                400, "runtime LoRA loading is off: start the server with --enable-lora", code="lora_disabled"
            )
        return engine

    @app.post("/v1/load_lora_adapter")
    async def load_lora(req: LoadLoraRequest) -> PlainTextResponse:
        engine = lora_engine()
        if req.lora_name == name:
            raise OpenAIError(400, f"lora_name {req.lora_name!r} is the base model's name", param="lora_name")
        try:
            path = await asyncio.to_thread(resolve_model, req.lora_path, config.storage)
            await asyncio.to_thread(
                load_adapter, engine, req.lora_name, path, uri=req.lora_path, replace=req.load_inplace
            )
        except ModelSourceError as e:
            raise OpenAIError(400, f"lora_path: {_redact(str(e), req.lora_path)}", param="lora_path") from None
        except AdapterError as e:
            raise OpenAIError(e.status, _redact(str(e), req.lora_path), param=e.param) from None
        except EngineBroken as e:
            raise OpenAIError(503, str(e), type_="service_unavailable", code="model_broken") from None
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora(req: UnloadLoraRequest) -> PlainTextResponse:
        engine = lora_engine()
        try:
            await asyncio.to_thread(unload_adapter, engine, req.lora_name, base_name=name)
        except AdapterError as e:
            raise OpenAIError(e.status, str(e), param=e.param) from None
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' removed successfully.")

    @app.get("/healthz")
    @app.get("/health")
    async def healthz() -> JSONResponse:
        if state.engine is not None and state.engine.broken:
            return JSONResponse({"status": "failed", "error": state.engine.broken}, status_code=503)
        if state.engine is not None:
            return JSONResponse({"status": "ok", "model": name})
        body = {"status": "failed", "error": state.error} if state.error else {"status": "loading"}
        return JSONResponse(body, status_code=503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
