"""`kubetune api`: the OpenAI fine-tuning API over a namespace's FineTuneJobs, files and ModelDeployments.

A thin aiohttp layer: authenticate (kubetune.openai.keys), call the pure translations
(kubetune.openai.translate) and the storage (files, stored), and talk to Kubernetes only through
kubetune.k8s. Every error is in OpenAI's shape.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from kubetune import constants as c
from kubetune import k8s
from kubetune.api.clock import now_iso
from kubetune.openai import translate as t
from kubetune.openai.errors import OpenAIError, invalid, not_found, unauthorized
from kubetune.openai.files import DEFAULT_MAX_BYTES, DEFAULT_URI_TEMPLATE, FileStore, FolderFileStore
from kubetune.openai.files_s3 import S3FileStore
from kubetune.openai.keys import KEY_SELECTOR, KeyRing
from kubetune.openai.stored import CompletionStore, messages_view, training_lines, view

log = logging.getLogger("kubetune.api")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100  # jobs, events, checkpoints, stored completions (OpenAI documents no maximum for these)
FILES_MAX_LIMIT = 10_000  # OpenAI's files.list: limit 1..10,000, default 10,000
CHUNK = 64 * 1024
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
PUBLIC_PATHS = ("/healthz",)


@dataclass
class Settings:
    files: FileStore
    store: CompletionStore
    keys_namespace: str
    models: dict[str, str] = field(default_factory=dict)  # OpenAI base model name -> hf:// / pvc:// source
    job_defaults: dict[str, Any] = field(default_factory=dict)  # merged into every created job's spec
    upstream_timeout: float = 600.0


SETTINGS = web.AppKey("settings", Settings)
KEYS = web.AppKey("keys", KeyRing)
HTTP = web.AppKey("http", aiohttp.ClientSession)


def _error_response(err: OpenAIError) -> web.Response:
    return web.json_response(err.body(), status=err.status)


@web.middleware
async def openai_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Authenticate, then turn every refusal into OpenAI's error shape."""
    try:
        if request.path not in PUBLIC_PATHS:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise unauthorized("You didn't provide an API key (Authorization: Bearer KEY).")
            namespace = await request.app[KEYS].namespace(token.strip())
            if namespace is None:
                raise unauthorized()
            request["namespace"] = namespace
        return await handler(request)
    except OpenAIError as err:
        return _error_response(err)
    except web.HTTPNotFound:
        return _error_response(OpenAIError(404, f"Unknown request URL: {request.method} {request.path}."))
    except web.HTTPMethodNotAllowed:
        return _error_response(OpenAIError(405, f"Method {request.method} not allowed for {request.path}."))
    except k8s.NotFound as err:
        return _error_response(OpenAIError(404, err.message, code="not_found"))
    except k8s.ApiError as err:
        log.warning("Kubernetes API error on %s %s: %s", request.method, request.path, err)
        return _error_response(OpenAIError(502, f"The Kubernetes API refused: {err.message}", type="api_error"))
    except web.HTTPException as err:  # aiohttp's own refusals (413 body too large, 400 bad request...)
        return _error_response(OpenAIError(err.status, err.reason, type="invalid_request_error"))
    except asyncio.CancelledError:
        raise
    except Exception:  # never a plain-text 500: log it (method and path only, no headers, no keys)
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error_response(
            OpenAIError(500, "The server had an error while processing your request.", type="server_error")
        )


def _ns(request: web.Request) -> str:
    return request["namespace"]


def _limit(request: web.Request, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """The `limit` query parameter of every list: an integer from 1 to `maximum` (400 otherwise)."""
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise invalid(f"limit must be an integer from 1 to {maximum}; got {raw!r}", "limit") from None
    if not 1 <= limit <= maximum:
        raise invalid(f"limit must be an integer from 1 to {maximum}; got {limit}", "limit")
    return limit


def _order(request: web.Request, default: str) -> str:
    """The `order` query parameter: asc or desc (by creation time)."""
    order = request.query.get("order", default)
    if order not in ("asc", "desc"):
        raise invalid(f"order must be asc or desc; got {order!r}", "order")
    return order


def _page(
    request: web.Request,
    items: list[dict[str, Any]],
    *,
    default: int = DEFAULT_LIMIT,
    maximum: int = MAX_LIMIT,
) -> dict[str, Any]:
    """The one pagination of every list: `limit` checked, then the page after `after`."""
    return t.page(items, request.query.get("after"), _limit(request, default, maximum))


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


# --- files ----------------------------------------------------------------------------------------


async def upload_file(request: web.Request) -> web.Response:
    """One `file` part and a `purpose` part, as OpenAI requires. The file streams to storage as it comes; a
    body that turns out broken (no closing boundary, a second file part, no purpose) removes it again."""
    settings, namespace = request.app[SETTINGS], _ns(request)
    if not request.content_type.startswith("multipart/"):
        raise invalid("Upload a file as multipart/form-data with the fields purpose and file.", "file")
    purpose, created = None, None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader):
                raise invalid("A part of the form is itself multipart; send the fields purpose and file.", "file")
            if part.name == "purpose":
                purpose = (await part.text()).strip()
                if created is not None and purpose != created["purpose"]:
                    raise invalid(f"purpose must be fine-tune; got {purpose!r}", "purpose")
            elif part.name == "file":
                if created is not None:
                    raise invalid("Send exactly one file part per upload; this request has more.", "file")

                async def chunks(part: Any = part) -> AsyncIterator[bytes]:
                    while chunk := await part.read_chunk(CHUNK):
                        yield chunk

                filename = part.filename or "upload.jsonl"
                created = await settings.files.upload(namespace, filename, purpose or "fine-tune", chunks())
        if created is None:
            raise invalid("The request has no file part.", "file")
        if purpose is None:
            raise invalid("purpose is required (fine-tune).", "purpose")
    except (OpenAIError, ValueError, AssertionError, aiohttp.ClientPayloadError) as err:
        if created is not None:
            await asyncio.to_thread(settings.files.delete, namespace, created["id"])
        if isinstance(err, OpenAIError):
            raise
        raise invalid(f"The multipart/form-data body is malformed: {err}", "file") from None
    log.info("file %s uploaded to %s (%d bytes)", created["id"], namespace, created["bytes"])
    return web.json_response(created)


async def list_files(request: web.Request) -> web.Response:
    files = await asyncio.to_thread(request.app[SETTINGS].files.list, _ns(request), request.query.get("purpose"))
    # newest first
    if _order(request, "desc") == "asc":
        files.reverse()
    return web.json_response(_page(request, files, default=FILES_MAX_LIMIT, maximum=FILES_MAX_LIMIT))


async def get_file(request: web.Request) -> web.Response:
    files = request.app[SETTINGS].files
    return web.json_response(await asyncio.to_thread(files.get, _ns(request), request.match_info["id"]))


async def file_content(request: web.Request) -> web.StreamResponse:
    """The content as stored, streamed (from the volume or the bucket) without holding it in memory."""
    files, namespace, file_id = request.app[SETTINGS].files, _ns(request), request.match_info["id"]
    obj = await asyncio.to_thread(files.get, namespace, file_id)
    out = web.StreamResponse(headers={"Content-Type": "application/jsonl"})
    out.content_length = obj.get("bytes")
    chunks = files.content(namespace, file_id)
    first = await anext(chunks, b"")  # a store that cannot read it fails before the 200 is sent
    await out.prepare(request)
    if first:
        await out.write(first)
    async for chunk in chunks:
        await out.write(chunk)
    await out.write_eof()
    return out


async def delete_file(request: web.Request) -> web.Response:
    files = request.app[SETTINGS].files
    return web.json_response(await asyncio.to_thread(files.delete, _ns(request), request.match_info["id"]))


# --- fine-tuning jobs -----------------------------------------------------------------------------


async def _job(request: web.Request) -> dict[str, Any]:
    job = await k8s.get_or_none(c.FINETUNEJOB, _ns(request), request.match_info["id"])
    if job is None:
        raise not_found("fine-tuning job", request.match_info["id"])
    return job


async def create_job(request: web.Request) -> web.Response:
    settings, namespace = request.app[SETTINGS], _ns(request)
    body = await _json(request)
    model = body.get("model")
    source = t.job_of_model(model) if isinstance(model, str) else None
    existing = {source} if source and await k8s.get_or_none(c.FINETUNEJOB, namespace, source) else set()
    files: dict[str, dict[str, Any] | None] = {}  # the request's files, looked up off the event loop
    for key in ("training_file", "validation_file"):
        if isinstance(file_id := body.get(key), str) and file_id:
            try:
                files[file_id] = await asyncio.to_thread(settings.files.get, namespace, file_id)
            except OpenAIError:
                files[file_id] = None
    manifest = t.job_manifest(
        body,
        name=t.new_job_name(),
        namespace=namespace,
        file_uri=lambda file_id: settings.files.object_uri(namespace, file_id) if files.get(file_id) else None,
        models=settings.models,
        defaults={**settings.job_defaults, **settings.files.job_spec()},  # the files' s3 settings win
        job_exists=existing.__contains__,
        file_format=lambda file_id: ((files.get(file_id) or {}).get("kubetune") or {}).get("format"),
    )
    created = await k8s.create(manifest)
    log.info("FineTuneJob %s/%s created", namespace, manifest["metadata"]["name"])
    return web.json_response(t.job_view(created))


def _newest_first(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        objects, key=lambda o: (o["metadata"].get("creationTimestamp") or "", o["metadata"]["name"]), reverse=True
    )


async def list_jobs(request: web.Request) -> web.Response:
    jobs = _newest_first(await k8s.list_objects(c.FINETUNEJOB, _ns(request)))
    views = [t.job_view(j) for j in jobs]
    wanted = {k[len("metadata[") : -1]: v for k, v in request.query.items() if k.startswith("metadata[")}
    views = [v for v in views if all((v["metadata"] or {}).get(k) == x for k, x in wanted.items())]
    return web.json_response(_page(request, views))


async def get_job(request: web.Request) -> web.Response:
    return web.json_response(t.job_view(await _job(request)))


async def cancel_job(request: web.Request) -> web.Response:
    job = await _job(request)
    if t.job_status(job) in ("succeeded", "failed", "cancelled"):
        raise invalid(f"Job {t.job_id(job)} has already {t.job_status(job)} and cannot be cancelled.")
    patched = await k8s.patch_merge(c.FINETUNEJOB, _ns(request), t.job_id(job), t.cancel_patch(now_iso()))
    log.info("FineTuneJob %s/%s cancelled", _ns(request), t.job_id(job))
    return web.json_response(t.job_view(patched))


async def _suspend(request: web.Request, suspend: bool) -> web.Response:
    job = await _job(request)
    state = t.job_status(job)
    if state in ("succeeded", "failed", "cancelled"):
        verb = "paused" if suspend else "resumed"
        raise invalid(f"Job {t.job_id(job)} has {state} and cannot be {verb}.")
    patched = await k8s.patch_merge(c.FINETUNEJOB, _ns(request), t.job_id(job), {"spec": {"suspend": suspend}})
    # the view of the requested state (paused / queued again), whatever the patched object's phase says yet
    return web.json_response(t.job_view({**patched, "spec": {**(patched.get("spec") or {}), "suspend": suspend}}))


async def pause_job(request: web.Request) -> web.Response:
    return await _suspend(request, True)


async def resume_job(request: web.Request) -> web.Response:
    return await _suspend(request, False)


async def job_events(request: web.Request) -> web.Response:
    _limit(request)  # a bad limit is refused before the cluster is asked
    job = await _job(request)
    uid = job["metadata"].get("uid")
    selector = {"involvedObject.kind": c.FINETUNEJOB, "involvedObject.name": t.job_id(job)}
    if uid:
        selector["involvedObject.uid"] = uid
    events = await k8s.list_objects("Event", _ns(request), fields=selector)
    return web.json_response(_page(request, t.events_view(job, events)))


async def job_checkpoints(request: web.Request) -> web.Response:
    _limit(request, 10)
    job = await _job(request)
    return web.json_response(_page(request, t.checkpoints_view(job), default=10))


# --- models and inference -------------------------------------------------------------------------


def _served_by(deployment: dict[str, Any]) -> str | None:
    return (((deployment.get("spec") or {}).get("model") or {}).get("fineTuneJob") or {}).get("name")


def _model_names(deployment: dict[str, Any], jobs: dict[str, dict[str, Any]]) -> list[str]:
    """The names a ModelDeployment answers to: its job's fine-tuned model name, its own and its served name."""
    names = []
    job = jobs.get(_served_by(deployment) or "")
    if job is not None:
        names.append(t.fine_tuned_model(job))
    names.append(deployment["metadata"]["name"])
    served = (deployment.get("spec") or {}).get("servedModelName")
    if served and served not in names:
        names.append(served)
    return names


async def _deployments(namespace: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    deployments, jobs = await asyncio.gather(
        k8s.list_objects(c.MODELDEPLOYMENT, namespace), k8s.list_objects(c.FINETUNEJOB, namespace)
    )
    return deployments, {j["metadata"]["name"]: j for j in jobs}


def _ready(deployment: dict[str, Any]) -> bool:
    """Serving now: an endpoint and phase Ready or a ready replica (the operator sets the endpoint as soon
    as the rollout starts, so an endpoint alone is not readiness)."""
    status = deployment.get("status") or {}
    return bool(status.get("endpoint")) and (status.get("phase") == "Ready" or (status.get("readyReplicas") or 0) > 0)


async def list_models(request: web.Request) -> web.Response:
    deployments, jobs = await _deployments(_ns(request))
    data = []
    for d in deployments:
        if _ready(d):
            created = t._seconds(d["metadata"].get("creationTimestamp")) or 0
            name = _model_names(d, jobs)[0]
            data.append({"id": name, "object": "model", "created": created, "owned_by": _ns(request)})
    return web.json_response({"object": "list", "data": data})


async def _route(namespace: str, model: str) -> tuple[str, str]:
    """(endpoint, the model name the server behind it serves) of the ModelDeployment serving `model`."""
    deployments, jobs = await _deployments(namespace)
    for d in deployments:
        if model in _model_names(d, jobs):
            status = d.get("status") or {}
            if not _ready(d):
                raise OpenAIError(
                    503,
                    f"The model {model!r} is not ready yet (ModelDeployment {d['metadata']['name']} is "
                    f"{status.get('phase') or 'Pending'}).",
                    type="server_error",
                    code="model_not_ready",
                )
            return status["endpoint"].rstrip("/"), (d.get("spec") or {}).get("servedModelName") or d["metadata"]["name"]
    job = t.job_of_model(model)
    hint = f" Serve it with a ModelDeployment whose spec.model.fineTuneJob.name is {job}." if job in jobs else ""
    raise OpenAIError(
        404, f"The model {model!r} does not exist or is not served.{hint}", param="model", code="model_not_found"
    )


def _sse_completion(events: list[bytes], model: str) -> dict[str, Any]:
    """The chat.completion a stream of chunks adds up to (what is stored for a streamed `store: true`)."""
    content, first, finish, usage = [], {}, None, None
    for line in b"".join(events).splitlines():
        if not line.startswith(b"data:") or line.strip() == b"data: [DONE]":
            continue
        try:
            chunk = json.loads(line[5:])
        except ValueError:
            continue
        first = first or chunk
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) == 0:
                content.append((choice.get("delta") or {}).get("content") or "")
                finish = choice.get("finish_reason") or finish
    message = {"role": "assistant", "content": "".join(content)}
    return {
        "id": first.get("id"),
        "object": "chat.completion",
        "created": first.get("created"),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def _renamed(line: bytes, model: str) -> bytes:
    """One SSE line with the chunk's `model` field set to the name the user asked for (other lines as they are)."""
    if not line.startswith(b"data:") or line[5:].strip() in (b"", b"[DONE]"):
        return line
    try:
        chunk = json.loads(line[5:])
    except ValueError:
        return line
    if not isinstance(chunk, dict) or "model" not in chunk:
        return line
    chunk["model"] = model
    ending = line[len(line.rstrip(b"\r\n")) :]
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + ending


def _upstream_error(model: str, err: BaseException | str) -> OpenAIError:
    return OpenAIError(
        502,
        f"The model server of {model!r} failed: {err}",
        type="server_error",
        code="upstream_error",
    )


def _upstream_refusal(status: int, text: bytes, model: str) -> web.Response:
    """An upstream error answer in OpenAI's shape: a 4xx as it came (its JSON error, or the text wrapped),
    a 5xx as 502 (the model server failed, not this one)."""
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    upstream = answer.get("error") if isinstance(answer, dict) else None
    message = (upstream.get("message") if isinstance(upstream, dict) else upstream) or text.decode(errors="replace")
    if status >= 500:
        return _error_response(_upstream_error(model, f"HTTP {status}: {str(message)[:500]}"))
    if isinstance(answer, dict) and isinstance(upstream, dict):
        return web.json_response(answer, status=status)
    return _error_response(OpenAIError(status, str(message)[:2000] or f"HTTP {status}"))


async def _proxy(request: web.Request, route: str) -> web.StreamResponse:
    settings, namespace = request.app[SETTINGS], _ns(request)
    body = await _json(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model is required", "model")
    endpoint, served = await _route(namespace, model)
    upstream = {k: v for k, v in body.items() if k not in ("store", "metadata")}
    upstream["model"] = served
    store = route == "chat/completions" and body.get("store") is True and settings.store.enabled
    session = request.app[HTTP]
    out: web.StreamResponse | None = None
    stored = False
    try:
        async with session.post(f"{endpoint}/{route}", json=upstream) as resp:
            if resp.status >= 400:
                return _upstream_refusal(resp.status, await resp.read(), model)
            if not body.get("stream"):
                text = await resp.read()
                try:
                    answer = json.loads(text)
                except ValueError:
                    raise _upstream_error(model, "its answer is not JSON") from None
                if isinstance(answer, dict):
                    answer["model"] = model
                    if store:
                        await asyncio.to_thread(settings.store.store, namespace, body, answer)
                return web.json_response(answer)
            out = web.StreamResponse(status=resp.status, headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            seen: list[bytes] = []
            async for line in resp.content:  # line by line: a chunk split across reads is whole here
                if store and not stored:
                    if line.strip() == b"data: [DONE]":
                        # stored before the client hears the end, so a list right after the stream finds it
                        await asyncio.to_thread(settings.store.store, namespace, body, _sse_completion(seen, model))
                        stored = True
                    else:
                        seen.append(line)
                await out.write(_renamed(line, model))
    except (aiohttp.ClientError, TimeoutError) as err:
        log.warning("model server of %r at %s failed: %r", model, endpoint, err)
        failure = _upstream_error(model, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
        if out is None:
            raise failure from None
        # the stream has begun with 200: end it with an error event, as OpenAI's streams do
        await out.write(b"data: " + json.dumps(failure.body()).encode() + b"\n\n")
        await out.write_eof()
        return out
    if store and not stored:
        await asyncio.to_thread(settings.store.store, namespace, body, _sse_completion(seen, model))
    await out.write_eof()
    return out


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _proxy(request, "chat/completions")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _proxy(request, "completions")


# --- stored completions ---------------------------------------------------------------------------


def _metadata_filter(request: web.Request) -> dict[str, str]:
    return {
        k[len("metadata[") : -1]: v for k, v in request.query.items() if k.startswith("metadata[") and k.endswith("]")
    }


def _store(request: web.Request) -> CompletionStore:
    store = request.app[SETTINGS].store
    if not store.enabled:
        raise OpenAIError(
            400, "Stored completions are off on this server (storedCompletions.enabled).", code="store_disabled"
        )
    return store


async def list_stored(request: web.Request) -> web.Response:
    store = _store(request)
    found = await asyncio.to_thread(store.select, _ns(request), _metadata_filter(request), request.query.get("model"))
    views = [view(r) for r in found]
    if _order(request, "asc") == "asc":
        views.reverse()
    return web.json_response(_page(request, views))


async def get_stored(request: web.Request) -> web.Response:
    record = await asyncio.to_thread(_store(request).get, _ns(request), request.match_info["id"])
    return web.json_response(view(record))


async def stored_messages(request: web.Request) -> web.Response:
    record = await asyncio.to_thread(_store(request).get, _ns(request), request.match_info["id"])
    return web.json_response(_page(request, messages_view(record)))


async def delete_stored(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_store(request).delete, _ns(request), request.match_info["id"]))


async def export_stored(request: web.Request) -> web.Response:
    """kubetune's own call: the stored completions matching `metadata` (and `model`) as a chat-format
    training file in /v1/files (purpose fine-tune), ready for `POST /v1/fine_tuning/jobs`."""
    store, settings, namespace = _store(request), request.app[SETTINGS], _ns(request)
    body = await _json(request)
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise invalid("metadata must be an object of strings", "metadata")
    records = await asyncio.to_thread(store.select, namespace, metadata, body.get("model"))
    lines = training_lines(records)
    if not lines:
        raise invalid("No stored completion with a text answer matches this filter.", "metadata")

    async def chunks() -> AsyncIterator[bytes]:
        for line in lines:
            yield line.encode()

    filename = str(body.get("filename") or "stored-completions.jsonl")
    return web.json_response(await settings.files.upload(namespace, filename, "fine-tune", chunks()))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def build_app(settings: Settings, keys: KeyRing | None = None) -> web.Application:
    app = web.Application(middlewares=[openai_errors], client_max_size=32 * 1024 * 1024)
    app[SETTINGS] = settings
    app[KEYS] = keys or KeyRing(lambda: k8s.list_objects("Secret", settings.keys_namespace, labels=KEY_SELECTOR))

    async def http_session(app: web.Application) -> AsyncIterator[None]:
        app[HTTP] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.upstream_timeout))
        yield
        await app[HTTP].close()

    app.cleanup_ctx.append(http_session)
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_post("/v1/files", upload_file)
    r.add_get("/v1/files", list_files)
    r.add_get("/v1/files/{id}", get_file)
    r.add_get("/v1/files/{id}/content", file_content)
    r.add_delete("/v1/files/{id}", delete_file)
    r.add_post("/v1/fine_tuning/jobs", create_job)
    r.add_get("/v1/fine_tuning/jobs", list_jobs)
    r.add_get("/v1/fine_tuning/jobs/{id}", get_job)
    r.add_post("/v1/fine_tuning/jobs/{id}/cancel", cancel_job)
    r.add_post("/v1/fine_tuning/jobs/{id}/pause", pause_job)
    r.add_post("/v1/fine_tuning/jobs/{id}/resume", resume_job)
    r.add_get("/v1/fine_tuning/jobs/{id}/events", job_events)
    r.add_get("/v1/fine_tuning/jobs/{id}/checkpoints", job_checkpoints)
    r.add_get("/v1/models", list_models)
    r.add_post("/v1/chat/completions", chat_completions)
    r.add_post("/v1/completions", completions)
    r.add_get("/v1/chat/completions", list_stored)
    r.add_get("/v1/chat/completions/{id}", get_stored)
    r.add_get("/v1/chat/completions/{id}/messages", stored_messages)
    r.add_delete("/v1/chat/completions/{id}", delete_stored)
    r.add_post("/v1/kubetune/stored_completions/export", export_stored)
    return app


# --- command --------------------------------------------------------------------------------------


def load_config(path: str | None) -> dict[str, Any]:
    """The config file (Helm renders it from values): models, jobDefaults, storedCompletions, filesUri,
    maxUploadBytes, filesS3."""
    if not path:
        return {}
    config = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping with models, jobDefaults, storedCompletions")
    return config


def file_store(config: dict[str, Any], root: Path) -> FileStore:
    """Where `/v1/files` keeps uploads: under `filesS3.uri` (s3://BUCKET/PREFIX) when the config sets it, else
    the mounted storage root (training pods read it through `filesUri`)."""
    max_bytes = int(config.get("maxUploadBytes") or DEFAULT_MAX_BYTES)
    if config.get("filesS3"):
        return S3FileStore.from_config(config["filesS3"], max_bytes=max_bytes)
    return FolderFileStore(root, uri_template=config.get("filesUri") or DEFAULT_URI_TEMPLATE, max_bytes=max_bytes)


def settings_from(args: argparse.Namespace) -> Settings:
    config = load_config(args.config)
    stored = config.get("storedCompletions") or {}
    root = Path(args.storage_root)
    keys_namespace = args.keys_namespace or (
        SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.exists() else "kubetune-system"
    )
    return Settings(
        files=file_store(config, root),
        store=CompletionStore(
            root,
            enabled=bool(stored.get("enabled", False)),
            retention_days=int(stored.get("retentionDays", 30)),
            max_bytes=int(stored.get("maxBytes", 1024**3)),
        ),
        keys_namespace=keys_namespace,
        models={str(k): str(v) for k, v in (config.get("models") or {}).items()},
        job_defaults=config.get("jobDefaults") or {},
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubetune api",
        description="Serve the OpenAI fine-tuning API (files, fine_tuning.jobs, chat completions) over "
        "kubetune's resources. Credentials: in-cluster service account, else the kubeconfig (KUBECONFIG).",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--storage-root",
        default=os.environ.get("KUBETUNE_API_STORAGE_ROOT", "/mnt/kubetune-files"),
        help="the mounted dataset storage: files and stored completions live under ROOT/NAMESPACE/",
    )
    p.add_argument("--config", default=os.environ.get("KUBETUNE_API_CONFIG"), help="YAML config file")
    p.add_argument(
        "--keys-namespace",
        default=os.environ.get("KUBETUNE_API_KEYS_NAMESPACE"),
        help="namespace of the API-key Secrets (default: the server's own namespace)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    import kopf

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from(args)
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"kubetune api: {err}", file=sys.stderr)
        return c.EXIT_USAGE
    if k8s.login(settings=kopf.OperatorSettings(), logger=log) is None:
        print("kubetune api: no Kubernetes credentials (in-cluster or KUBECONFIG)", file=sys.stderr)
        return c.EXIT_USAGE
    web.run_app(build_app(settings), host=args.host, port=args.port, print=None, access_log=None)
    return c.EXIT_OK
