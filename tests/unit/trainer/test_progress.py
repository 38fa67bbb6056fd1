"""Progress: JSON lines for local runs, merge patches of the FineTuneJob's status in a pod."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from kubetune_trainer.progress import JsonlReporter, KubernetesReporter, make_reporter


@pytest.fixture
def api_server():
    """A stand-in API server that records every request."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"method": "PATCH", "path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def _report(r, step, loss=1.0):
    r.report(
        step=step,
        total_steps=100,
        epoch=step / 50,
        loss=loss,
        eval_loss=None,
        tokens_per_second=900.0,
        eta_seconds=12.3,
    )


def test_jsonl_reporter_writes_one_event_per_line(tmp_path):
    path = tmp_path / "runs" / "progress.jsonl"
    r = make_reporter("file", path=str(path), name="j", namespace="ns", min_interval=5)
    assert isinstance(r, JsonlReporter)
    _report(r, 10, loss=2.5)
    r.checkpoints([{"name": "checkpoint-10", "step": 10}], "checkpoint-10")
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["event"] for e in events] == ["progress", "checkpoints"]
    assert events[0]["progress"] == {
        "step": 10,
        "totalSteps": 100,
        "epoch": 0.2,
        "percent": 10,
        "etaSeconds": 12,
        "tokensPerSecond": 900.0,
    }
    assert events[0]["metrics"] == {"trainLoss": 2.5}
    assert events[1]["bestCheckpoint"] == "checkpoint-10"


def test_kubernetes_reporter_merge_patches_its_own_job_status(api_server, tmp_path):
    url, seen = api_server
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    r = KubernetesReporter(
        "travel", "team-travel", min_interval=60, api_server=url, token_path=token, ca_path=tmp_path / "none"
    )
    _report(r, 1)
    r.checkpoints([{"name": "checkpoint-5", "step": 5, "uri": "pvc://x/output/checkpoint-5"}], "checkpoint-5")
    assert len(seen) == 2
    first = seen[0]
    assert first["path"] == "/apis/kubetune.dev/v1alpha1/namespaces/team-travel/finetunejobs/travel/status"
    assert first["headers"]["Content-Type"] == "application/merge-patch+json"
    assert first["headers"]["Authorization"] == "Bearer sa-token"
    assert first["body"]["status"]["progress"]["step"] == 1
    assert seen[1]["body"]["status"]["bestCheckpoint"] == "checkpoint-5"


def test_progress_patches_are_throttled_and_the_latest_is_flushed(api_server, tmp_path):
    url, seen = api_server
    r = KubernetesReporter("j", "ns", min_interval=3600, api_server=url, token_path=tmp_path / "none")
    for step in range(1, 6):
        _report(r, step)
    assert len(seen) == 1  # the first goes out, the next four wait
    r.flush()
    assert len(seen) == 2 and seen[1]["body"]["status"]["progress"]["step"] == 5


def test_data_failure_reports_the_errors_and_leaves_phase_and_conditions_to_the_operator(api_server, tmp_path):
    url, seen = api_server
    r = KubernetesReporter("j", "ns", api_server=url, token_path=tmp_path / "none")
    r.data_failed("train.jsonl:3: messages: expected an array\ntrain.jsonl:9: not valid JSON", {"format": "chat"})
    status = seen[0]["body"]["status"]
    assert status["data"]["errors"] == ["train.jsonl:3: messages: expected an array", "train.jsonl:9: not valid JSON"]
    assert status["data"]["format"] == "chat"
    assert "phase" not in status and "conditions" not in status  # a merge patch would replace the operator's list


def test_an_unreachable_api_server_never_breaks_training(tmp_path):
    r = KubernetesReporter("j", "ns", api_server="http://127.0.0.1:9", token_path=tmp_path / "none", timeout=0.5)
    _report(r, 1)  # logs a warning, raises nothing
    r.flush()
