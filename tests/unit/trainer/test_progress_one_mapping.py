"""One way trainer events become status: what a pod's reporter sends, merged as the API server merges it,
is what `kubetune run` builds from the same events in the progress file."""

from __future__ import annotations

import json

from kubetune.api.progress import merge_patch
from kubetune.local.events import apply_event, read_events
from kubetune_trainer.progress import JsonlReporter, KubernetesReporter


def _train(reporter) -> None:
    reporter.data({"format": "chat", "trainExamples": 80})
    reporter.report(step=1, total_steps=10, epoch=0.1, loss=2.0, eval_loss=2.5, tokens_per_second=900.0, eta_seconds=30)
    reporter.report(step=5, total_steps=10, epoch=0.5, loss=1.5)  # no eval loss, no ETA this time
    reporter.checkpoints([{"name": "checkpoint-5", "step": 5, "metrics": {"eval_loss": 2.5}}], "checkpoint-5")
    reporter.data_failed("valid.jsonl:3: messages: expected an array", {"format": "chat"})
    reporter.finished({"uri": "pvc://x/output", "checkpoint": "checkpoint-5"}, {})
    reporter.interrupted(signal="SIGTERM", step=5, checkpoint="checkpoint-5")
    reporter.flush()


def test_a_pods_patches_and_a_local_runs_events_give_the_same_status(tmp_path, monkeypatch):
    sent: list[dict] = []
    monkeypatch.setattr(KubernetesReporter, "send", lambda self, status: sent.append(json.loads(json.dumps(status))))
    _train(KubernetesReporter("j", "ns", min_interval=0, api_server="http://127.0.0.1:9"))
    on_cluster: dict = {}
    for patch in sent:
        on_cluster = merge_patch(on_cluster, patch)

    path = tmp_path / "progress.jsonl"
    _train(JsonlReporter(path))
    local: dict = {}
    for event in read_events(path):
        local = apply_event(local, event)

    # Phase and message are the operator's on a cluster; locally the runtime is the operator.
    assert {k: v for k, v in local.items() if k not in ("phase", "message")} == on_cluster
    assert on_cluster["metrics"] == {"trainLoss": 1.5, "evalLoss": 2.5}
    assert on_cluster["progress"]["etaSeconds"] == 30 and on_cluster["progress"]["step"] == 5
    assert on_cluster["data"]["errors"] == ["valid.jsonl:3: messages: expected an array"]
    assert local["phase"] == "Failed"


def test_merge_patch_merges_objects_replaces_lists_and_removes_nulls():
    status = {"progress": {"step": 1, "etaSeconds": 9}, "checkpoints": [{"name": "a"}], "baseModelUri": "x"}
    patch = {"progress": {"step": 2}, "checkpoints": [{"name": "b"}], "baseModelUri": None, "output": {"uri": "u"}}
    assert merge_patch(status, patch) == {
        "progress": {"step": 2, "etaSeconds": 9},
        "checkpoints": [{"name": "b"}],
        "output": {"uri": "u"},
    }
    assert status["progress"] == {"step": 1, "etaSeconds": 9}  # a new dict; the old one is untouched
