"""The trainer's progress lines become the FineTuneJob status and the loss curves of the report."""

import json

from kubetune.api.finetunejob import FineTuneJobStatus
from kubetune.local.events import JsonlTail, LossCurve, apply_event


def progress(step, loss=None, eval_loss=None):
    metrics = {}
    if loss is not None:
        metrics["trainLoss"] = loss
    if eval_loss is not None:
        metrics["evalLoss"] = eval_loss
    return {"event": "progress", "progress": {"step": step, "totalSteps": 10}, "metrics": metrics}


def test_events_build_the_status_a_cluster_would_show():
    status = {}
    for event in [
        {"event": "data", "data": {"format": "chat", "trainExamples": 80}},
        progress(5, loss=2.0, eval_loss=2.5),
        {
            "event": "checkpoints",
            "checkpoints": [{"name": "checkpoint-5", "step": 5}],
            "bestCheckpoint": "checkpoint-5",
        },
        {"event": "finished", "output": {"uri": "pvc://x/output", "checkpoint": "checkpoint-5"}, "metrics": {}},
        {"event": "something-new"},
    ]:
        status = apply_event(status, event)
    st = FineTuneJobStatus.model_validate(status)
    assert st.data.train_examples == 80
    assert st.progress.step == 5 and st.metrics == {"trainLoss": 2.0, "evalLoss": 2.5}
    assert st.best_checkpoint == "checkpoint-5" and st.output.checkpoint == "checkpoint-5"


def test_data_failure_fails_the_job():
    status = apply_event({}, {"event": "data_failed", "report": "train.jsonl:3: bad", "data": {"errors": ["x"]}})
    assert status["phase"] == "Failed" and status["data"]["errors"] == ["x"]


def test_loss_curve_keeps_the_resumed_runs_values_and_eval_points_only_when_they_change():
    curve = LossCurve()
    for event in [progress(1, 3.0, 2.9), progress(2, 2.0, 2.9), progress(3, 1.5, 1.4), progress(2, 1.9, 2.9)]:
        curve.add(event)
    assert curve.points("train") == ([1, 2, 3], [3.0, 1.9, 1.5])
    assert curve.points("eval") == ([1, 3], [2.9, 1.4])


def test_tail_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "progress.jsonl"
    tail = JsonlTail(path)
    assert tail.read() == []
    path.write_text(json.dumps({"event": "a"}) + "\n" + '{"event": "b"')
    assert tail.read() == [{"event": "a"}]
    with path.open("a") as fh:
        fh.write("}\nnot json\n")
    assert tail.read() == [{"event": "b"}]
