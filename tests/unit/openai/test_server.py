"""`kubetune api` over HTTP (aiohttp's test client), with Kubernetes played by an in-memory dict: every refusal
in OpenAI's error shape, uploads that leave nothing behind when broken, one pagination for every list, model
readiness, upstream failures as 502, and the streamed model name rewritten per SSE line."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kubetune import constants as c
from kubetune import k8s
from kubetune.openai import server
from kubetune.openai.files import FolderFileStore
from kubetune.openai.keys import KeyRing
from kubetune.openai.stored import CompletionStore

NS = "team-a"
AUTH = {"Authorization": "Bearer key-a"}
CHAT = "".join(
    json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}) + "\n"
    for i in range(12)
)


class FakeCluster:
    """The few kubetune.k8s calls the server makes, over a dict; records the Event field selectors asked."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.event_selectors: list[dict[str, str] | None] = []

    def put(self, obj: dict[str, Any]) -> None:
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj

    async def get_or_none(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((kind, name)))

    async def list_objects(self, kind: str, namespace: str | None = None, *, labels=None, fields=None) -> list:
        if kind == "Event":
            self.event_selectors.append(fields)
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind]

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        obj = {**copy.deepcopy(manifest), "status": {}}
        obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
        self.put(obj)
        return copy.deepcopy(obj)

    async def patch_merge(self, kind: str, namespace: str | None, name: str, patch: dict[str, Any]) -> dict:
        obj = self.objects[(kind, name)]
        for key, value in patch.items():
            obj.setdefault(key, {}).update(value)
        return copy.deepcopy(obj)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    for name in ("get_or_none", "list_objects", "create", "patch_merge"):
        monkeypatch.setattr(k8s, name, getattr(fake, name))
    return fake


@pytest.fixture
async def api(tmp_path: Path, cluster: FakeCluster) -> AsyncIterator[TestClient]:
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731

    async def secrets() -> list[dict[str, Any]]:
        return [{"data": {"key": b64("key-a"), "namespace": b64(NS)}}]

    settings = server.Settings(
        files=FolderFileStore(tmp_path / "files"),
        store=CompletionStore(tmp_path / "files"),
        keys_namespace="kubetune-system",
        models={"qwen": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
    )
    client = TestClient(TestServer(server.build_app(settings, KeyRing(secrets))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def multipart(*parts: tuple[str, str, str | None], boundary: str = "XyZ", close: bool = True) -> bytes:
    """A multipart/form-data body by hand: (name, content, filename) parts; `close=False` leaves out the end."""
    out = b""
    for name, content, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n{content}\r\n".encode()
    return out + (f"--{boundary}--\r\n".encode() if close else b"")


async def upload(api: TestClient, body: bytes, content_type: str = "multipart/form-data; boundary=XyZ"):
    return await api.post("/v1/files", data=body, headers={**AUTH, "Content-Type": content_type})


async def error_of(resp) -> dict[str, Any]:
    assert resp.content_type == "application/json", await resp.text()
    return (await resp.json())["error"]


async def files_kept(api: TestClient) -> list[str]:
    resp = await api.get("/v1/files", headers=AUTH)
    return [f["id"] for f in (await resp.json())["data"]]


# --- uploads --------------------------------------------------------------------------------------


async def test_a_truncated_upload_is_a_400_and_keeps_nothing(api: TestClient, tmp_path: Path) -> None:
    body = multipart(("purpose", "fine-tune", None), ("file", CHAT, "train.jsonl"), close=False)
    resp = await upload(api, body)
    assert resp.status == 400 and (await error_of(resp))["param"] == "file"
    assert await files_kept(api) == []
    assert not list((tmp_path / "files").rglob("file-*"))


async def test_an_upload_without_a_boundary_is_a_400(api: TestClient) -> None:
    resp = await upload(api, multipart(("file", CHAT, "train.jsonl")), content_type="multipart/form-data")
    assert resp.status == 400 and (await error_of(resp))["param"] == "file"


async def test_two_file_parts_are_refused_and_nothing_is_orphaned(api: TestClient) -> None:
    body = multipart(("purpose", "fine-tune", None), ("file", CHAT, "a.jsonl"), ("file", CHAT, "b.jsonl"))
    resp = await upload(api, body)
    assert resp.status == 400 and "exactly one file" in (await error_of(resp))["message"]
    assert await files_kept(api) == []


async def test_purpose_is_required(api: TestClient) -> None:
    resp = await upload(api, multipart(("file", CHAT, "train.jsonl")))
    assert resp.status == 400 and (await error_of(resp))["param"] == "purpose"
    assert await files_kept(api) == []
    ok = await upload(api, multipart(("file", CHAT, "train.jsonl"), ("purpose", "fine-tune", None)))
    assert ok.status == 200 and await files_kept(api) == [(await ok.json())["id"]]


# --- pagination -----------------------------------------------------------------------------------


async def uploaded(api: TestClient, n: int) -> list[str]:
    ids = []
    for i in range(n):
        resp = await upload(api, multipart(("purpose", "fine-tune", None), ("file", CHAT, f"{i}.jsonl")))
        ids.append((await resp.json())["id"])
    return ids


async def test_files_list_honours_openai_limits_and_order(api: TestClient) -> None:
    ids = await uploaded(api, 3)
    resp = await api.get("/v1/files", params={"limit": "1000"}, headers=AUTH)
    assert resp.status == 200 and len((await resp.json())["data"]) == 3
    assert (await api.get("/v1/files", params={"limit": "10001"}, headers=AUTH)).status == 400
    asc = await (await api.get("/v1/files", params={"order": "asc"}, headers=AUTH)).json()
    desc = await (await api.get("/v1/files", params={"order": "desc"}, headers=AUTH)).json()
    assert [f["id"] for f in asc["data"]] == list(reversed([f["id"] for f in desc["data"]]))
    assert sorted(f["id"] for f in asc["data"]) == sorted(ids)
    assert (await api.get("/v1/files", params={"order": "sideways"}, headers=AUTH)).status == 400


async def created_job(api: TestClient, **request: Any) -> dict[str, Any]:
    (file_id,) = await uploaded(api, 1)
    resp = await api.post(
        "/v1/fine_tuning/jobs", json={"model": "qwen", "training_file": file_id, **request}, headers=AUTH
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


@pytest.mark.parametrize("limit", ["abc", "-5", "0", "2.5", "101"])
@pytest.mark.parametrize("what", ["", "/events", "/checkpoints"])
async def test_every_job_list_refuses_a_bad_limit_in_openai_shape(api: TestClient, what: str, limit: str) -> None:
    job = await created_job(api)
    url = "/v1/fine_tuning/jobs" + (f"/{job['id']}{what}" if what else "")
    resp = await api.get(url, params={"limit": limit}, headers=AUTH)
    assert resp.status == 400 and (await error_of(resp))["param"] == "limit"


async def test_checkpoints_page_by_limit(api: TestClient, cluster: FakeCluster) -> None:
    job = await created_job(api)
    cluster.objects[(c.FINETUNEJOB, job["id"])]["status"] = {
        "phase": "Running",
        "checkpoints": [{"name": f"checkpoint-{s}", "step": s} for s in (10, 20, 30)],
    }
    page = await (await api.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints?limit=2", headers=AUTH)).json()
    assert [x["step_number"] for x in page["data"]] == [30, 20] and page["has_more"] is True


async def test_events_are_asked_for_by_field_selector(api: TestClient, cluster: FakeCluster) -> None:
    job = await created_job(api)
    assert (await api.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=AUTH)).status == 200
    assert cluster.event_selectors[-1] == {"involvedObject.kind": c.FINETUNEJOB, "involvedObject.name": job["id"]}


# --- jobs -----------------------------------------------------------------------------------------


async def test_pause_and_resume_answer_with_the_new_state(api: TestClient, cluster: FakeCluster) -> None:
    job = await created_job(api)
    cluster.objects[(c.FINETUNEJOB, job["id"])]["status"] = {"phase": "Queued"}
    paused = await (await api.post(f"/v1/fine_tuning/jobs/{job['id']}/pause", headers=AUTH)).json()
    assert paused["status"] == "paused"
    cluster.objects[(c.FINETUNEJOB, job["id"])]["status"] = {"phase": "Suspended"}
    resumed = await (await api.post(f"/v1/fine_tuning/jobs/{job['id']}/resume", headers=AUTH)).json()
    assert resumed["status"] == "queued"


async def test_a_dpo_job_on_a_chat_upload_is_refused(api: TestClient) -> None:
    (file_id,) = await uploaded(api, 1)
    resp = await api.post(
        "/v1/fine_tuning/jobs",
        json={"model": "qwen", "training_file": file_id, "method": {"type": "dpo"}},
        headers=AUTH,
    )
    error = await error_of(resp)
    assert resp.status == 400 and error["param"] == "training_file" and "chat" in error["message"]


async def test_a_missing_job_has_a_snake_case_code(api: TestClient) -> None:
    resp = await api.get("/v1/fine_tuning/jobs/ftjob-nope", headers=AUTH)
    assert resp.status == 404 and (await error_of(resp))["code"] == "fine_tuning_job_not_found"


async def test_an_unexpected_error_is_a_500_in_openai_shape(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(k8s, "get_or_none", broken)
    resp = await api.get("/v1/fine_tuning/jobs/ftjob-1", headers=AUTH)
    error = await error_of(resp)
    assert resp.status == 500 and error["type"] == "server_error"


# --- models and inference -------------------------------------------------------------------------


def deployment(name: str, endpoint: str | None, phase: str, ready: int = 0, served: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "readyReplicas": ready}
    if endpoint:
        status["endpoint"] = endpoint
    return {
        "kind": c.MODELDEPLOYMENT,
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"servedModelName": served or name},
        "status": status,
    }


async def chat(api: TestClient, model: str, **extra: Any):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return await api.post("/v1/chat/completions", json=body, headers=AUTH)


async def test_a_rolling_out_deployment_is_not_ready(api: TestClient, cluster: FakeCluster) -> None:
    cluster.put(deployment("rolling", "http://rolling.team-a.svc/v1", "Deploying"))
    cluster.put(deployment("ready", "http://ready.team-a.svc/v1", "Ready", ready=1))
    models = await (await api.get("/v1/models", headers=AUTH)).json()
    assert [m["id"] for m in models["data"]] == ["ready"]
    resp = await chat(api, "rolling")
    assert resp.status == 503 and (await error_of(resp))["code"] == "model_not_ready"


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unreachable_model_server_is_a_502(api: TestClient, cluster: FakeCluster, stream: bool) -> None:
    cluster.put(deployment("gone", "http://no-such-host.invalid/v1", "Ready", ready=1))
    resp = await chat(api, "gone", stream=stream)
    error = await error_of(resp)
    assert resp.status == 502 and error["type"] == "server_error" and "gone" in error["message"]


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A model server: /crash answers 500 as text; /v1 streams chunks split mid-JSON across writes."""
    state: dict[str, Any] = {}

    async def crash(request: web.Request) -> web.Response:
        return web.Response(status=500, text="Internal Server Error")

    async def stream(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for piece in ("he", "llo"):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"], "choices": [
                {"index": 0, "delta": {"content": piece}, "finish_reason": None}]}  # fmt: skip
            data = f"data: {json.dumps(chunk, separators=(', ', ': '))}\n\n".encode()
            await out.write(data[:9])  # the JSON split across two writes, and spaces after ':'
            await out.write(data[9:])
        await out.write(b"data: [DONE]\n\n")
        return out

    app = web.Application()
    app.router.add_post("/crash/chat/completions", crash)
    app.router.add_post("/v1/chat/completions", stream)
    srv = TestServer(app)
    await srv.start_server()
    state["url"] = str(srv.make_url(""))
    try:
        yield state["url"], state
    finally:
        await srv.close()


async def test_an_upstream_crash_is_a_502(api: TestClient, cluster: FakeCluster, upstream) -> None:
    url, _ = upstream
    cluster.put(deployment("crashy", f"{url}/crash", "Ready", ready=1))
    resp = await chat(api, "crashy")
    assert resp.status == 502 and (await error_of(resp))["type"] == "server_error"


async def test_streamed_chunks_carry_the_requested_model_name(api: TestClient, cluster: FakeCluster, upstream) -> None:
    url, _ = upstream
    cluster.put(deployment("public", f"{url}/v1", "Ready", ready=1, served="internal"))
    resp = await chat(api, "public", stream=True)
    assert resp.status == 200
    text = await resp.text()
    chunks = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data: {")]
    assert len(chunks) == 2 and {ch["model"] for ch in chunks} == {"public"}
    assert text.rstrip().endswith("data: [DONE]")
