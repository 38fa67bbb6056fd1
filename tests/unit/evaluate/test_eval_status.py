"""Where an evaluation's status goes: the Evaluation's status subresource (in a pod) or the local events file."""

from __future__ import annotations

import json

from kubetune.api.evaluation import EvaluationSpec
from kubetune.api.runconfig import EvalRunConfig, EvalTarget, Identity, ProgressSink
from kubetune_trainer.evaluate import status as eval_status
from kubetune_trainer.progress import KubernetesReporter

STATUS = {"passed": True, "best": "final", "results": [{"model": "final", "metrics": {"exact_match": 1.0}}]}


def _config(tmp_path, progress: ProgressSink) -> EvalRunConfig:
    return EvalRunConfig(
        job=Identity(name="travel-eval", namespace="team-travel"),
        spec=EvaluationSpec.model_validate({"model": {"uri": "m"}, "dataset": {"uri": "d.jsonl"}}),
        targets=[EvalTarget(name="m", uri="m")],
        output_dir=str(tmp_path),
        progress=progress,
    )


def test_kubernetes_backend_patches_the_evaluation_status_subresource(tmp_path, monkeypatch):
    sent = []

    def fake_send(self, status):
        sent.append((self.url, status))
        return True

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(KubernetesReporter, "send", fake_send)
    assert eval_status.publish(_config(tmp_path, ProgressSink(backend="kubernetes")), STATUS)
    assert sent == [
        (
            "https://10.0.0.1:443/apis/kubetune.dev/v1alpha1/namespaces/team-travel/evaluations/travel-eval/status",
            STATUS,
        )
    ]


def test_a_failed_patch_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(KubernetesReporter, "send", lambda self, status: False)
    assert not eval_status.publish(_config(tmp_path, ProgressSink(backend="kubernetes")), STATUS)


def test_file_backend_appends_an_evaluation_event(tmp_path):
    events = tmp_path / "events.jsonl"
    assert eval_status.publish(_config(tmp_path, ProgressSink(backend="file", path=str(events))), STATUS)
    (line,) = events.read_text().splitlines()
    event = json.loads(line)
    assert event["event"] == "evaluation" and event["status"] == STATUS
