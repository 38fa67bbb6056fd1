"""`/v1/files` on its two back ends (the mounted folder and s3://BUCKET/PREFIX/NAMESPACE/files/ on a real local
S3 server, moto): the same behaviour on both (upload, list, retrieve, content, delete), nothing left behind by
a refused or broken upload, and, through the official openai client against an s3-configured `kubetune api`,
team isolation and a FineTuneJob that reads its file from s3:// with spec.s3 from the API's config."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_server import FakeCluster, cluster  # noqa: F401 (the fixture)

import s3server
from kubetune import objectstore
from kubetune.openai import server
from kubetune.openai.errors import OpenAIError
from kubetune.openai.files import FileStore, FolderFileStore
from kubetune.openai.files_s3 import S3FileStore
from kubetune.openai.keys import KeyRing
from kubetune.openai.stored import CompletionStore

s3_server, s3_env = s3server.s3_server, s3server.s3_env  # the real local S3 server's fixtures

ROW = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
CHAT = b"".join(json.dumps(ROW).encode() + b"\n" for _ in range(12))
BROKEN = b"".join((b'{"messages": [ broken' if i == 6 else json.dumps(ROW).encode()) + b"\n" for i in range(12))


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def s3_config(endpoint: str, bucket: str) -> dict[str, Any]:
    """The API config's filesS3 section, as the chart renders it."""
    return {
        "uri": f"s3://{bucket}/kubetune",
        "endpoint": endpoint,
        "region": "us-east-1",
        "forcePathStyle": True,
        "credentialsSecretRef": {"name": "s3-creds"},
    }


def everything_in(store: FileStore, tmp_path: Path) -> list[str]:
    """Every object or file the store holds (the bucket, or the folder), and any temporary upload left over."""
    left = [str(p) for p in tmp_path.rglob("*.partial")]
    if isinstance(store, S3FileStore):
        return left + [k for k, _ in objectstore.list_objects(f"s3://{store.bucket}/", store.options)]
    return left + [str(p) for p in tmp_path.rglob("file-*")]


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> str:
    """A fresh bucket name per test (the S3 server lives for the whole module)."""
    return "files-" + secrets.token_hex(6)


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, bucket: str) -> Iterator[FileStore]:
    if request.param == "folder":
        yield FolderFileStore(tmp_path / "files", max_bytes=4096)
        return
    env = request.getfixturevalue("s3_env")
    env.create_bucket(bucket)
    yield S3FileStore.from_config({**s3_config(env.endpoint, bucket), "tempDir": str(tmp_path)}, max_bytes=4096)


async def content_of(store: FileStore, namespace: str, file_id: str) -> bytes:
    return b"".join([chunk async for chunk in store.content(namespace, file_id)])


async def test_a_file_goes_up_is_listed_read_back_and_deleted(store: FileStore, tmp_path: Path) -> None:
    obj = await store.upload("team-a", "train.jsonl", "fine-tune", chunks_of(CHAT))
    assert obj["bytes"] == len(CHAT) and obj["kubetune"]["format"] == "chat"
    assert store.get("team-a", obj["id"]) == obj
    assert [f["id"] for f in store.list("team-a")] == [obj["id"]]
    assert await content_of(store, "team-a", obj["id"]) == CHAT
    if isinstance(store, S3FileStore):  # the metadata lives beside the object, as a small JSON object
        keys = {k for k, _ in objectstore.list_objects(f"s3://{store.bucket}/", store.options)}
        assert keys == {f"kubetune/team-a/files/{obj['id']}.jsonl", f"kubetune/team-a/files/{obj['id']}.json"}
        assert store.uri("team-a", obj["id"]) == f"s3://{store.bucket}/kubetune/team-a/files/{obj['id']}.jsonl"
    assert store.delete("team-a", obj["id"]) == {"id": obj["id"], "object": "file", "deleted": True}
    assert store.list("team-a") == [] and everything_in(store, tmp_path) == []
    with pytest.raises(OpenAIError) as gone:
        store.get("team-a", obj["id"])
    assert gone.value.status == 404


async def test_another_namespace_sees_none_of_a_teams_files(store: FileStore) -> None:
    obj = await store.upload("team-a", "train.jsonl", "fine-tune", chunks_of(CHAT))
    await store.upload("team-a-2", "train.jsonl", "fine-tune", chunks_of(CHAT))  # a namespace whose name extends it
    assert [f["id"] for f in store.list("team-a")] == [obj["id"]]
    assert store.uri("team-b", obj["id"]) is None
    for call in (store.get, store.delete):
        with pytest.raises(OpenAIError):
            call("team-b", obj["id"])
    assert store.get("team-a", obj["id"])["id"] == obj["id"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [(BROKEN, 400, "line 7"), (CHAT * 10, 413, "limit of 4,096 bytes")],
    ids=["invalid-line-7", "too-large"],
)
async def test_a_refused_upload_leaves_nothing(store: FileStore, tmp_path: Path, body: bytes, status: int, says: str):
    with pytest.raises(OpenAIError) as refused:
        await store.upload("team-a", "train.jsonl", "fine-tune", chunks_of(body))
    assert refused.value.status == status and says in refused.value.message.replace(":7", " line 7")
    assert store.list("team-a") == [] and everything_in(store, tmp_path) == []


async def test_an_upload_cut_off_midway_leaves_nothing(store: FileStore, tmp_path: Path) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield CHAT[:100]
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await store.upload("team-a", "train.jsonl", "fine-tune", broken())
    assert everything_in(store, tmp_path) == []


async def test_a_large_upload_goes_up_in_parts(s3_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objectstore, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(objectstore, "PART_SIZE", 5 * 1024 * 1024)
    s3_env.create_bucket("big")
    store = S3FileStore.from_config(s3_config(s3_env.endpoint, "big"), max_bytes=64 * 1024 * 1024)
    row = json.dumps({**ROW, "messages": [ROW["messages"][0], {"role": "assistant", "content": "a" * 4000}]})
    data = (row + "\n").encode() * (6 * 1024 * 1024 // (len(row) + 1) + 1)  # a little over 6 MiB: two parts
    obj = await store.upload("team-a", "big.jsonl", "fine-tune", chunks_of(data, 64 * 1024))
    assert obj["bytes"] == len(data)
    assert await content_of(store, "team-a", obj["id"]) == data


# --- the official openai client against an s3-configured `kubetune api` ---------------------------


@pytest.fixture
async def s3_api(
    s3_env,
    tmp_path: Path,
    cluster: FakeCluster,  # noqa: F811 (the imported fixture, requested by name)
    bucket: str,
) -> AsyncIterator[Callable[[str], openai.AsyncOpenAI]]:
    s3_env.create_bucket(bucket)
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731

    async def secrets() -> list[dict[str, Any]]:
        return [{"data": {"key": b64(f"key-{t}"), "namespace": b64(f"team-{t}")}} for t in ("a", "b")]

    config = {"filesS3": s3_config(s3_env.endpoint, bucket), "models": {"qwen": "hf://Qwen/Qwen2.5-0.5B-Instruct"}}
    settings = server.Settings(
        files=server.file_store(config, tmp_path / "root"),
        store=CompletionStore(tmp_path / "root"),
        keys_namespace="kubetune-system",
        models=config["models"],
        job_defaults={"resources": {"gpus": 1}},
    )
    test_server = TestServer(server.build_app(settings, KeyRing(secrets)))
    async with TestClient(test_server) as client:
        base = str(client.make_url("/v1"))
        yield lambda team: openai.AsyncOpenAI(base_url=base, api_key=f"key-{team}", max_retries=0)


async def test_the_openai_client_keeps_files_in_s3_per_team(s3_api, bucket) -> None:
    a, b = s3_api("a"), s3_api("b")
    uploaded = await a.files.create(file=("train.jsonl", CHAT), purpose="fine-tune")
    assert uploaded.bytes == len(CHAT) and uploaded.filename == "train.jsonl"
    keys = [k for k, _ in objectstore.list_objects(f"s3://{bucket}/kubetune/team-a/files/")]
    assert f"kubetune/team-a/files/{uploaded.id}.jsonl" in keys
    assert [f.id for f in (await a.files.list()).data] == [uploaded.id]
    assert (await a.files.retrieve(uploaded.id)).id == uploaded.id
    assert (await a.files.content(uploaded.id)).read() == CHAT
    # the second team's key sees nothing of the first team's files, and cannot delete them
    assert (await b.files.list()).data == []
    for call in (b.files.retrieve, b.files.content, b.files.delete):
        with pytest.raises(openai.NotFoundError):
            await call(uploaded.id)
    with pytest.raises(openai.BadRequestError) as refused:
        await a.files.create(file=("bad.jsonl", BROKEN), purpose="fine-tune")
    assert ":7" in refused.value.message
    assert len(objectstore.list_objects(f"s3://{bucket}/")) == 2  # the refused upload left nothing
    assert (await a.files.delete(uploaded.id)).deleted
    assert objectstore.list_objects(f"s3://{bucket}/") == []
    with pytest.raises(openai.NotFoundError):
        await a.files.retrieve(uploaded.id)


async def test_a_job_on_an_s3_file_reads_it_by_uri_with_the_apis_s3_settings(s3_api, s3_env, cluster, bucket) -> None:  # noqa: F811
    a = s3_api("a")
    uploaded = await a.files.create(file=("train.jsonl", CHAT), purpose="fine-tune")
    job = await a.fine_tuning.jobs.create(model="qwen", training_file=uploaded.id)
    spec = cluster.objects[("FineTuneJob", job.id)]["spec"]
    assert spec["dataset"]["train"]["uri"] == f"s3://{bucket}/kubetune/team-a/files/{uploaded.id}.jsonl"
    assert spec["s3"] == {
        "endpoint": s3_env.endpoint,
        "region": "us-east-1",
        "forcePathStyle": True,
        "credentialsSecretRef": {"name": "s3-creds"},
    }
    assert spec["resources"] == {"gpus": 1}  # jobDefaults still apply
    assert not {v for v in s3server.CREDENTIALS.values() if v in json.dumps(spec)}  # the Secret's name, no values
    # the trainer can read the file at that URI with those settings (and the Secret's variables)
    with objectstore.configured(
        objectstore.S3Options.from_spec(S3FileStore.from_config(s3_config(s3_env.endpoint, bucket)).s3)
    ):
        assert objectstore.read_bytes(spec["dataset"]["train"]["uri"]) == CHAT
