"""Teacher labelling for endpoint distillation against a local stub teacher server (real HTTP): prompts go
out in parallel but never more than maxConcurrentRequests at once, answers are kept as they come so a
restart asks only for the rest, and only the first process of a run asks: the others wait for its labels."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kubetune.api.finetunejob import TeacherEndpoint
from kubetune_trainer import teacher

PROMPTS = [{"prompt": f"question {i}"} for i in range(12)]


class StubTeacher:
    """An OpenAI-compatible /chat/completions that answers `answer to <prompt>` after `delay` seconds,
    counts requests and the most in flight at once, and answers 400 once `fail_after` requests were served."""

    def __init__(self, delay: float = 0.0, fail_after: int | None = None) -> None:
        self.delay, self.fail_after = delay, fail_after
        self.asked: list[str] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                with stub.lock:
                    refused = stub.fail_after is not None and len(stub.asked) >= stub.fail_after
                    if not refused:
                        stub.asked.append(prompt)
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                time.sleep(stub.delay)
                with stub.lock:
                    stub.in_flight -= 1
                if refused:
                    self._send(400, {"error": {"message": "quota exhausted"}})
                else:
                    self._send(200, {"choices": [{"message": {"role": "assistant", "content": f"answer to {prompt}"}}]})

            def _send(self, status: int, doc: dict) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> StubTeacher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _label(stub: StubTeacher, out, concurrency: int = 3, **kw):
    endpoint = TeacherEndpoint(url=stub.url, model="big", max_concurrent_requests=concurrency)
    return teacher.label(PROMPTS, endpoint, out, max_tokens=8, api_key_env=None, **kw)


def _answers(records: list[dict]) -> list[str]:
    return [r["messages"][-1]["content"] for r in records]


@pytest.fixture(autouse=True)
def first_process(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)


def test_prompts_are_asked_in_parallel_within_the_bound_and_kept_in_order(tmp_path):
    with StubTeacher(delay=0.15) as stub:
        records = _label(stub, tmp_path, concurrency=3)
    assert stub.max_in_flight == 3  # parallel, and never more than maxConcurrentRequests
    assert sorted(stub.asked) == sorted(p["prompt"] for p in PROMPTS)  # each prompt once
    assert _answers(records) == [f"answer to {p['prompt']}" for p in PROMPTS]
    assert records[0]["messages"][0] == {"role": "user", "content": "question 0"}
    cached = [json.loads(line) for line in (tmp_path / teacher.LABELS_FILE).read_text().splitlines()]
    assert cached == records


def test_a_restart_asks_only_for_the_prompts_without_an_answer(tmp_path):
    with StubTeacher(fail_after=5) as stub, pytest.raises(teacher.TeacherError, match="answered 400"):
        _label(stub, tmp_path, concurrency=1)
    assert not (tmp_path / teacher.LABELS_FILE).exists()
    kept = (tmp_path / teacher.PARTIAL_FILE).read_text().splitlines()
    assert len(kept) == 5  # answered before the failure, kept on the PVC

    with StubTeacher() as again:
        records = _label(again, tmp_path, concurrency=4)
    assert len(again.asked) == len(PROMPTS) - 5 and not set(again.asked) & set(stub.asked)
    assert _answers(records) == [f"answer to {p['prompt']}" for p in PROMPTS]
    assert not (tmp_path / teacher.PARTIAL_FILE).exists()


def test_kept_answers_of_other_prompts_are_not_reused(tmp_path):
    """The data changed between two starts: an answer is reused only for the same prompt."""
    (tmp_path / teacher.PARTIAL_FILE).write_text(
        json.dumps({"index": 0, "key": "0" * 16, "answer": "stale"}) + "\n" + '{"index": 1, "key"'
    )
    with StubTeacher() as stub:
        records = _label(stub, tmp_path)
    assert len(stub.asked) == len(PROMPTS) and "stale" not in _answers(records)


def test_other_processes_wait_for_the_first_ones_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    labels = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]

    def first_process_finishes() -> None:
        time.sleep(0.5)
        (tmp_path / teacher.LABELS_FILE).write_text("".join(json.dumps(r) + "\n" for r in labels))

    monkeypatch.setattr(teacher, "POLL_SECONDS", 0.05)
    with StubTeacher() as stub:
        writer = threading.Thread(target=first_process_finishes)
        writer.start()
        records = _label(stub, tmp_path)
        writer.join()
    assert stub.asked == [] and records == labels
    with pytest.raises(teacher.TeacherError, match="waited 0s"):
        _label(stub, tmp_path / "nothing", wait_seconds=0.1)
