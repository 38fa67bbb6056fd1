"""The official `openai` client, unchanged, against `kubetune api` over the operator and an API server.

The test plays what has no process here: the Job controller and the trainer (as in test_finetunejob.py),
and the serving controller, whose ModelDeployment status points at a local OpenAI-compatible stub.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from harness import GROUP_PATH, NAMESPACE, ROOT, Cluster, dump, wait_for

from kubetune.api.finetunejob import Hyperparameters

TEAM_A, TEAM_B = "key-team-a-0123456789", "key-team-b-9876543210"
BASE = "qwen-tiny"  # the OpenAI-style base model name the API server's config maps
BASE_URI = "hf://Qwen/Qwen2.5-0.5B-Instruct"
DEFAULT_BATCH = Hyperparameters().batch_size


def chat_lines(n: int) -> str:
    return "".join(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"question {i}"},
                    {"role": "assistant", "content": f"answer {i}"},
                ]
            }
        )
        + "\n"
        for i in range(n)
    )


class Stub(BaseHTTPRequestHandler):
    """An OpenAI-compatible model server: answers `echo: <last user message>`, as JSON or as a stream."""

    seen: list[dict] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Stub.seen.append({"path": self.path, **body})
        text = "echo: " + body["messages"][-1]["content"]
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece, finish in ((text[:6], None), (text[6:], "stop")):
                chunk = {
                    "id": "chatcmpl-stream1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": finish}],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        answer = {
            "id": f"chatcmpl-{len(Stub.seen)}",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    Stub.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_key_secret(name: str, key: str, namespace: str) -> dict:
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"kubetune.dev/api-key": "true"}},
        "data": {"key": b64(key), "namespace": b64(namespace)},
    }


@pytest.fixture
def api(cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    """`kubetune api` as its own process, with two teams' keys: team A's namespace is the test namespace."""
    cluster.create(f"/api/v1/namespaces/{NAMESPACE}/secrets", api_key_secret("team-a", TEAM_A, NAMESPACE))
    cluster.create(f"/api/v1/namespaces/{NAMESPACE}/secrets", api_key_secret("team-b", TEAM_B, "team-b"))
    config = tmp_path / "api.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": {BASE: BASE_URI, "gpt-4o-mini-2024-07-18": BASE_URI},
                "jobDefaults": {"storage": {"size": "1Gi"}},
                "storedCompletions": {"enabled": True, "retentionDays": 7},
            }
        )
    )
    port = free_port()
    log = (tmp_path / "api.log").open("wb")
    env = {**os.environ, "KUBECONFIG": str(cluster.admin_kubeconfig)}
    args = ["--port", str(port), "--host", "127.0.0.1", "--storage-root", str(tmp_path / "storage")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubetune.cli", "api", *args, "--config", str(config), "--keys-namespace", NAMESPACE],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "api.log").read_text()
        try:
            return httpx.get(f"{url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 30, "kubetune api to listen")
        yield f"{url}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        assert TEAM_A not in (tmp_path / "api.log").read_text(), "an API key was logged"


def test_openai_client_drives_jobs_files_and_models_through_the_crs(  # noqa: PLR0915 - one scenario, steps share its state
    cluster: Cluster, operator, api: str, stub: str, tmp_path: Path
) -> None:
    client = openai.OpenAI(base_url=api, api_key=TEAM_A, max_retries=0)
    other = openai.OpenAI(base_url=api, api_key=TEAM_B, max_retries=0)

    # Files: a good upload, and a bad one refused with the lines named.
    good = client.files.create(file=("train.jsonl", chat_lines(12).encode()), purpose="fine-tune")
    assert good.status == "processed" and good.bytes == len(chat_lines(12))
    broken = chat_lines(9).splitlines(keepends=True)
    broken[6] = '{"messages": [{"role": "user", "content": "unfinished\n'
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("bad.jsonl", "".join(broken).encode()), purpose="fine-tune")
    error = refused.value.body
    assert refused.value.status_code == 400 and error["code"] == "invalid_file_format" and error["param"] == "file"
    assert "bad.jsonl:7:" in error["message"] and "at least 10" in error["message"], error["message"]
    assert [f.id for f in client.files.list()] == [good.id]
    assert client.files.content(good.id).text == chat_lines(12)

    # Jobs: each a FineTuneJob, with the OpenAI fields mapped onto its spec.
    kept = client.fine_tuning.jobs.create(
        model=BASE,
        training_file=good.id,
        suffix="travel",
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": "auto"}}},
    )
    dropped = client.fine_tuning.jobs.create(model=BASE, training_file=good.id)
    ftj = cluster.ftj(kept.id)
    assert ftj is not None and ftj["spec"]["baseModel"]["uri"] == BASE_URI
    assert ftj["spec"]["dataset"]["train"]["uri"] == f"pvc://kubetune-files/{NAMESPACE}/files/{good.id}.jsonl"
    assert ftj["spec"]["hyperparameters"]["epochs"] == 2 and ftj["spec"]["hyperparameters"]["seed"] == 7
    assert ftj["spec"]["hyperparameters"].get("batchSize", DEFAULT_BATCH) == DEFAULT_BATCH  # "auto": kubetune's
    with pytest.raises(openai.BadRequestError) as unknown:
        client.fine_tuning.jobs.create(model="gpt-9", training_file=good.id)
    assert unknown.value.body["param"] == "model" and "qwen-tiny" in unknown.value.body["message"]
    assert {j.id for j in client.fine_tuning.jobs.list()} == {kept.id, dropped.id}
    first = client.fine_tuning.jobs.list(limit=1)
    second = client.fine_tuning.jobs.list(limit=1, after=first.data[0].id)
    assert first.has_more and not second.has_more
    assert {first.data[0].id, second.data[0].id} == {kept.id, dropped.id}

    # The operator runs it; the test plays the Job controller and the trainer.
    wait_for(lambda: {f"{kept.id}-train", f"{dropped.id}-train"} <= set(cluster.objects("jobs")), what="both Jobs")
    cluster.start_job(f"{kept.id}-train")
    trainer = {
        "data": {"format": "chat", "trainExamples": 12},
        "progress": {"step": 4, "totalSteps": 8, "percent": 50},
        "metrics": {"trainLoss": 1.25},
        "checkpoints": [
            {"name": "checkpoint-2", "step": 2, "metrics": {"eval_loss": 1.5}},
            {"name": "checkpoint-4", "step": 4, "metrics": {"eval_loss": 1.1}},
        ],
        "bestCheckpoint": "checkpoint-4",
    }
    cluster.patch_status(f"{GROUP_PATH}/namespaces/{NAMESPACE}/finetunejobs/{kept.id}", trainer)
    cluster.patch_status(cluster.job_path(f"{kept.id}-train"), {"ready": 1, "active": 1})
    wait_for(lambda: client.fine_tuning.jobs.retrieve(kept.id).status == "running", what="running")
    events = client.fine_tuning.jobs.list_events(kept.id).data
    assert any(e.message.startswith("Created") for e in events), [e.message for e in events]
    assert any(e.type == "metrics" and "Step 4/8" in e.message for e in events)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(kept.id).data
    assert [(c.step_number, c.metrics.model_dump(exclude_none=True).get("eval_loss")) for c in checkpoints] == [
        (4, 1.1),
        (2, 1.5),
    ]

    # Cancel one: the CR shows it (suspended, annotated), the training Job is suspended.
    cancelled = client.fine_tuning.jobs.cancel(dropped.id)
    assert cancelled.status == "cancelled"
    ftj = cluster.ftj(dropped.id)
    assert ftj["spec"]["suspend"] is True and ftj["metadata"]["annotations"]["kubetune.dev/cancelled"]
    wait_for(lambda: cluster.objects("jobs")[f"{dropped.id}-train"]["spec"]["suspend"] is True, what="Job suspended")
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.resume(dropped.id)

    # Let the other finish.
    cluster.finish_job(f"{kept.id}-train")
    done = wait_for(
        lambda: (j := client.fine_tuning.jobs.retrieve(kept.id)).status == "succeeded" and j, what="succeeded"
    )
    assert done.fine_tuned_model == f"ft:{BASE}:travel:{kept.id}"

    # Serve it: a ModelDeployment whose endpoint (as the serving controller reports it) is the stub.
    operator.stop()  # the stub's address is ours to write in status; the controller would write the Service's
    cluster.apply(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "travel", "namespace": NAMESPACE},
            "spec": {"model": {"fineTuneJob": {"name": kept.id}}},
        }
    )
    cluster.patch_status(
        f"{GROUP_PATH}/namespaces/{NAMESPACE}/modeldeployments/travel", {"phase": "Ready", "endpoint": stub}
    )
    assert [m.id for m in client.models.list()] == [done.fine_tuned_model]
    reply = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=[{"role": "user", "content": "hello"}],
        store=True,
        metadata={"app": "web"},
    )
    assert reply.choices[0].message.content == "echo: hello" and reply.model == done.fine_tuned_model
    assert Stub.seen[-1]["model"] == "travel" and "store" not in Stub.seen[-1]  # the served name; store stays here
    stream = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=[{"role": "user", "content": "streamed"}],
        stream=True,
        store=True,
        metadata={"app": "web"},
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "echo: streamed"
    client.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "not kept"}])

    # Stored completions: only those that asked, filtered by metadata.
    stored = client.chat.completions.list(metadata={"app": "web"}).data
    assert sorted(s.choices[0].message.content for s in stored) == ["echo: hello", "echo: streamed"], dump(
        [s.model_dump() for s in stored]
    )
    assert client.chat.completions.list(metadata={"app": "mobile"}).data == []
    assert [m.content for m in client.chat.completions.messages.list(stored[0].id).data] in (["hello"], ["streamed"])

    # ... exported as a chat training file (10 examples: the least a job takes) that `kubetune validate` accepts.
    for i in range(8):
        client.chat.completions.create(
            model=done.fine_tuned_model,
            messages=[{"role": "user", "content": f"q{i}"}],
            store=True,
            metadata={"app": "web"},
        )
    exported = client.post(
        "/kubetune/stored_completions/export", body={"metadata": {"app": "web"}}, cast_to=openai.types.FileObject
    )
    data = tmp_path / "exported.jsonl"
    data.write_bytes(client.files.content(exported.id).content)
    assert json.loads(data.read_text().splitlines()[0])["messages"][-1] == {
        "role": "assistant",
        "content": "echo: hello",
    }
    validated = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "validate", str(data)], capture_output=True, text=True, timeout=60
    )
    assert validated.returncode == 0 and "10 examples" in validated.stdout, validated.stdout + validated.stderr

    # Another team sees none of it.
    assert other.fine_tuning.jobs.list().data == [] and other.files.list().data == []
    for call in (
        lambda: other.fine_tuning.jobs.retrieve(kept.id),
        lambda: other.files.retrieve(good.id),
        lambda: other.fine_tuning.jobs.cancel(kept.id),
        lambda: other.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "x"}]),
    ):
        with pytest.raises(openai.NotFoundError) as hidden:
            call()
        assert set(hidden.value.body) == {"message", "type", "param", "code"}
    with pytest.raises(openai.AuthenticationError) as bad_key:
        openai.OpenAI(base_url=api, api_key="wrong", max_retries=0).files.list()
    assert bad_key.value.body["code"] == "invalid_api_key"

    # Continual fine-tuning from the fine-tuned model by its name.
    again = client.fine_tuning.jobs.create(model=done.fine_tuned_model, training_file=good.id)
    assert cluster.ftj(again.id)["spec"]["baseModel"]["fromJob"] == {"name": kept.id, "checkpoint": "best"}
