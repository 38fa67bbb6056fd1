"""The run report shows the baseline next to every checkpoint and embeds the loss curves."""

from kubetune.api import Evaluation, FineTuneJob
from kubetune.local.events import LossCurve
from kubetune.local.report import RunReport, comparison, write

EVAL = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "Evaluation",
    "metadata": {"name": "travel-eval"},
    "spec": {
        "model": {"fineTuneJob": {"name": "travel"}},
        "dataset": {"uri": "test.jsonl"},
        "metrics": ["exact_match", "prompt_tokens"],
        "passCriteria": [{"metric": "exact_match", "min": 0.8}],
    },
    "status": {
        "phase": "Succeeded",
        "baseline": {"metrics": {"exact_match": 0.0, "prompt_tokens": 350}},
        "results": [
            {"model": "checkpoint-100", "metrics": {"exact_match": 0.55, "prompt_tokens": 40}, "passed": False},
            {"model": "checkpoint-200", "metrics": {"exact_match": 0.91, "prompt_tokens": 40}, "passed": True},
        ],
        "best": "checkpoint-200",
        "passed": True,
    },
}
JOB = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "travel"},
    "spec": {"baseModel": {"uri": "pvc://models/tiny"}, "dataset": {"train": {"uri": "train.jsonl"}}},
    "status": {"phase": "Succeeded", "bestCheckpoint": "checkpoint-200", "metrics": {"trainLoss": 0.1}},
}


def test_comparison_has_baseline_then_checkpoints_best_marked():
    header, rows = comparison(Evaluation.model_validate(EVAL))
    assert header == ["metric", "baseline", "checkpoint-100", "checkpoint-200 *"]
    assert rows[0] == ["exact_match", "0.000", "0.550", "0.910"]
    assert rows[1][:2] == ["prompt_tokens (lower is better)", "350"]
    assert rows[-1] == ["passed", "-", "no", "yes"]


def test_report_embeds_loss_png_and_writes_it_beside(tmp_path):
    curve = LossCurve(train={1: 3.0, 2: 1.0}, eval={2: 1.2})
    path = write(
        RunReport(jobs=[(FineTuneJob.model_validate(JOB), curve)], evaluations=[Evaluation.model_validate(EVAL)]),
        tmp_path,
    )
    page = path.read_text()
    assert "data:image/png;base64," in page and "checkpoint-200 *" in page
    assert (tmp_path / "loss-default-travel.png").stat().st_size > 1000


def test_a_namespace_that_is_a_path_cannot_put_the_loss_png_elsewhere(tmp_path):
    runs = tmp_path / "deep" / "runs"
    runs.mkdir(parents=True)
    job = FineTuneJob.model_validate({**JOB, "metadata": {"name": "travel", "namespace": "../../x"}})
    write(RunReport(jobs=[(job, LossCurve(train={1: 3.0, 2: 1.0}))], evaluations=[]), runs)
    assert [p.name for p in runs.glob("*.png")] == ["loss-.._.._x-travel.png"]
    assert not list(tmp_path.glob("**/x-travel.png"))
