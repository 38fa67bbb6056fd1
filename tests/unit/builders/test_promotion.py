"""Which checkpoint a ModelDeployment serves: promotion, roll forward, pin, rollback, and the revisions."""

from __future__ import annotations

import pytest

from kubetune.api import Evaluation, FineTuneJob, ModelDeployment
from kubetune.api.modeldeployment import ModelDeploymentStatus
from kubetune.builders.promotion import best_result, decide, next_revisions

NOW = "2025-01-01T00:00:00Z"
CLAIM = "pvc://travel-data/output"


def job(checkpoints=(100, 200, 400), phase="Succeeded", best="checkpoint-400") -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "ns"},
            "spec": {"baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "dataset": {"train": {"uri": "t.jsonl"}}},
            "status": {
                "phase": phase,
                "checkpoints": [
                    {"name": f"checkpoint-{s}", "step": s, "uri": f"{CLAIM}/checkpoint-{s}"} for s in checkpoints
                ],
                "bestCheckpoint": best,
            },
        }
    )


def evaluation(results: dict[str, tuple[float, bool]], metrics=("exact_match",), select_by=None) -> Evaluation:
    """results: checkpoint -> (score of the first metric, passed)."""
    spec = {"model": {"fineTuneJob": {"name": "travel"}}, "dataset": {"uri": "test.jsonl"}, "metrics": list(metrics)}
    if select_by:
        spec["selectBy"] = select_by
    return Evaluation.model_validate(
        {
            "metadata": {"name": "travel-eval", "namespace": "ns"},
            "spec": spec,
            "status": {
                "results": [
                    {"model": m, "uri": f"{CLAIM}/{m}", "metrics": {metrics[0]: score}, "passed": ok}
                    for m, (score, ok) in results.items()
                ]
            },
        }
    )


def deployment(served=None, pin="", policy="auto", with_eval=True, history=(), model=None) -> ModelDeployment:
    promotion = {"policy": policy, "pin": pin}
    if with_eval:
        promotion["evaluation"] = {"name": "travel-eval"}
    status = None
    if served:
        revisions = [{"revision": i + 1, "checkpoint": cp, "reason": "x"} for i, cp in enumerate([*history, served])]
        status = {"servedCheckpoint": served, "servedUri": f"{CLAIM}/{served}", "revisions": revisions}
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "ns"},
            "spec": {"model": model or {"fineTuneJob": {"name": "travel"}}, "promotion": promotion},
            "status": status,
        }
    )


PASSING = {"checkpoint-200": (0.82, True), "checkpoint-400": (0.88, True), "checkpoint-100": (0.5, False)}


@pytest.mark.parametrize(
    ("case", "md", "results", "kind", "checkpoint", "reason", "message_part"),
    [
        (
            "first promotion: best passing",
            deployment(),
            PASSING,
            "promote",
            "checkpoint-400",
            "Promoted",
            "exact_match 0.88 passed",
        ),
        (
            "failing checkpoints are never promoted",
            deployment(),
            {"checkpoint-100": (0.99, False), "checkpoint-200": (0.81, True)},
            "promote",
            "checkpoint-200",
            "Promoted",
            "",
        ),
        (
            "roll forward to a strictly better one",
            deployment(served="checkpoint-200"),
            PASSING,
            "rollforward",
            "checkpoint-400",
            "RolledForward",
            "better than checkpoint-200 (0.82)",
        ),
        (
            "equal score does not move",
            deployment(served="checkpoint-200"),
            {"checkpoint-200": (0.88, True), "checkpoint-400": (0.88, True)},
            "none",
            "checkpoint-200",
            "UpToDate",
            "",
        ),
        ("already on the best", deployment(served="checkpoint-400"), PASSING, "none", "checkpoint-400", "UpToDate", ""),
        (
            "nothing passes: nothing to serve",
            deployment(),
            {"checkpoint-400": (0.5, False)},
            "none",
            None,
            "NoPassingCheckpoint",
            "no checkpoint passed",
        ),
        (
            "nothing passes: keep serving",
            deployment(served="checkpoint-200"),
            {"checkpoint-400": (0.5, False)},
            "none",
            "checkpoint-200",
            "NoPassingCheckpoint",
            "still serving checkpoint-200",
        ),
        ("no results yet", deployment(), {}, "none", None, "NoPassingCheckpoint", "has no results yet"),
        (
            "served one no longer passes: move",
            deployment(served="checkpoint-200"),
            {"checkpoint-200": (0.9, False), "checkpoint-400": (0.85, True)},
            "rollforward",
            "checkpoint-400",
            "RolledForward",
            "checkpoint-200 did not pass",
        ),
        (
            "manual: first time takes the best",
            deployment(policy="manual"),
            PASSING,
            "promote",
            "checkpoint-400",
            "Promoted",
            "",
        ),
        (
            "manual: stays put",
            deployment(served="checkpoint-200", policy="manual"),
            PASSING,
            "none",
            "checkpoint-200",
            "UpToDate",
            "policy manual",
        ),
        (
            "pin to an older one is a rollback",
            deployment(served="checkpoint-400", pin="checkpoint-200"),
            PASSING,
            "rollback",
            "checkpoint-200",
            "RolledBack",
            "pinned to checkpoint-200 (rollback from checkpoint-400)",
        ),
        (
            "pin wins over a failing score",
            deployment(served="checkpoint-400", pin="checkpoint-100"),
            PASSING,
            "rollback",
            "checkpoint-100",
            "RolledBack",
            "",
        ),
        (
            "pin to a newer one is a pin",
            deployment(served="checkpoint-200", pin="checkpoint-400", policy="manual"),
            PASSING,
            "pin",
            "checkpoint-400",
            "Pinned",
            "pinned to checkpoint-400 (was checkpoint-200)",
        ),
        ("pin when nothing is served", deployment(pin="checkpoint-200"), {}, "pin", "checkpoint-200", "Pinned", ""),
        (
            "pin already served",
            deployment(served="checkpoint-200", pin="checkpoint-200"),
            PASSING,
            "none",
            "checkpoint-200",
            "Pinned",
            "",
        ),
        (
            "unknown pin keeps serving and says what to set",
            deployment(served="checkpoint-400", pin="checkpoint-999"),
            PASSING,
            "none",
            "checkpoint-400",
            "PinnedCheckpointNotFound",
            "spec.promotion.pin 'checkpoint-999'",
        ),
        (
            "pin removed: back to the best passing",
            deployment(served="checkpoint-200", history=["checkpoint-400"]),
            PASSING,
            "rollforward",
            "checkpoint-400",
            "RolledForward",
            "",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_decide_with_an_evaluation(case, md, results, kind, checkpoint, reason, message_part):
    d = decide(md, evaluation(results), job())
    assert (d.kind, d.checkpoint, d.reason) == (kind, checkpoint, reason), case
    assert message_part in d.message
    if kind != "none":
        assert d.uri == f"{CLAIM}/{checkpoint}"


@pytest.mark.parametrize(
    ("metric", "scores", "expected"),
    [
        ("exact_match", {"checkpoint-200": 0.7, "checkpoint-400": 0.9}, "checkpoint-400"),
        ("perplexity", {"checkpoint-200": 3.1, "checkpoint-400": 4.2}, "checkpoint-200"),  # lower is better
        ("latency", {"checkpoint-200": 0.2, "checkpoint-400": 0.2}, "checkpoint-400"),  # tie: the later one
    ],
)
def test_best_respects_metric_direction(metric, scores, expected):
    ev = evaluation({k: (v, True) for k, v in scores.items()}, metrics=(metric,))
    assert best_result(ev, ev.status.results).model == expected
    assert decide(deployment(), ev, job()).checkpoint == expected


def test_select_by_picks_the_ranking_metric():
    ev = evaluation({}, metrics=("exact_match", "prompt_tokens"), select_by="prompt_tokens")
    ev.status.results = [
        r.model_copy(update={"metrics": m})
        for r, m in zip(
            evaluation({"checkpoint-200": (0, True), "checkpoint-400": (0, True)}).status.results,
            [{"exact_match": 0.8, "prompt_tokens": 30}, {"exact_match": 0.9, "prompt_tokens": 50}],
            strict=True,
        )
    ]
    assert decide(deployment(), ev, job()).checkpoint == "checkpoint-200"


def test_rollforward_is_lower_is_better_aware():
    ev = evaluation({"checkpoint-200": (4.0, True), "checkpoint-400": (3.0, True)}, metrics=("perplexity",))
    d = decide(deployment(served="checkpoint-200"), ev, job())
    assert (d.kind, d.checkpoint) == ("rollforward", "checkpoint-400")
    d = decide(deployment(served="checkpoint-400"), ev, job())
    assert d.kind == "none"


def test_missing_evaluation_waits():
    d = decide(deployment(), None, job())
    assert (d.kind, d.reason) == ("none", "WaitingForEvaluation")


@pytest.mark.parametrize(
    ("which", "served", "kind", "checkpoint"),
    [
        ("best", None, "promote", "checkpoint-400"),
        ("best", "checkpoint-400", "none", "checkpoint-400"),
        ("best", "checkpoint-200", "rollforward", "checkpoint-400"),
        ("checkpoint-100", "checkpoint-400", "rollback", "checkpoint-100"),
        ("final", None, "promote", "final"),
    ],
)
def test_without_an_evaluation_the_job_checkpoint_is_served(which, served, kind, checkpoint):
    md = deployment(served=served, with_eval=False, model={"fineTuneJob": {"name": "travel", "checkpoint": which}})
    d = decide(md, None, job())
    assert (d.kind, d.checkpoint) == (kind, checkpoint)


def test_without_an_evaluation_an_unfinished_job_waits():
    md = deployment(with_eval=False)
    d = decide(md, None, job(checkpoints=(), phase="Running", best=None))
    assert (d.kind, d.reason) == ("none", "WaitingForCheckpoints")
    assert decide(md, None, None).reason == "WaitingForCheckpoints"


def test_model_uri_is_served_as_is():
    md = deployment(with_eval=False, model={"uri": "pvc://models/qwen-merged"})
    d = decide(md, None, None)
    assert (d.kind, d.checkpoint, d.uri) == ("promote", "qwen-merged", "pvc://models/qwen-merged")
    served = md.model_copy(update={"status": ModelDeploymentStatus(served_checkpoint="qwen-merged", served_uri=d.uri)})
    assert decide(served, None, None).kind == "none"


def test_revisions_count_up_and_keep_the_reason():
    md = deployment()
    ev = evaluation(PASSING)
    d1 = decide(md, ev, job())
    revs = next_revisions(md.status, d1, NOW)
    assert revs == [
        {
            "revision": 1,
            "checkpoint": "checkpoint-400",
            "uri": f"{CLAIM}/checkpoint-400",
            "promotedAt": NOW,
            "reason": "exact_match 0.88 passed Evaluation travel-eval",
        }
    ]
    status = ModelDeploymentStatus.model_validate(
        {"servedCheckpoint": "checkpoint-400", "servedUri": f"{CLAIM}/checkpoint-400", "revisions": revs}
    )
    pinned = deployment(pin="checkpoint-200").model_copy(update={"status": status})
    d2 = decide(pinned, ev, job())
    revs2 = next_revisions(status, d2, NOW)
    assert [r["revision"] for r in revs2] == [1, 2]
    assert revs2[-1]["reason"] == "pinned to checkpoint-200 (rollback from checkpoint-400)"
    # Nothing changes: no new revision.
    unchanged = decide(deployment(served="checkpoint-400"), ev, job())
    assert unchanged.kind == "none" and next_revisions(status, unchanged, NOW) == revs


def test_revision_history_is_bounded_but_numbering_goes_on():
    status = ModelDeploymentStatus.model_validate(
        {"revisions": [{"revision": i, "checkpoint": f"checkpoint-{i}"} for i in range(1, 51)]}
    )
    d = decide(deployment(), evaluation(PASSING), job())
    revs = next_revisions(status, d, NOW)
    assert len(revs) == 50 and revs[-1]["revision"] == 51 and revs[0]["revision"] == 2


def test_a_pin_to_a_missing_checkpoint_stalls_naming_the_pin_and_the_checkpoints_there_are():
    d = decide(deployment(served="checkpoint-400", pin="checkpoint-999"), evaluation(PASSING), job())
    assert d.stalled and not d.changes and d.reason == "PinnedCheckpointNotFound"
    assert d.checkpoint == "checkpoint-400"  # what was served stays served meanwhile
    assert "'checkpoint-999'" in d.message and "FineTuneJob 'travel'" in d.message
    assert "it has: checkpoint-100, checkpoint-200, checkpoint-400" in d.message
    assert "still serving checkpoint-400" in d.message
    fresh = decide(deployment(pin="checkpoint-999", with_eval=False), None, job(checkpoints=()))
    assert fresh.stalled and fresh.checkpoint is None and "(it has: none)" in fresh.message
    running = decide(deployment(pin="checkpoint-999", with_eval=False), None, job(phase="Running"))
    assert running.stalled and "the job is Running" in running.message
    assert not decide(deployment(pin="checkpoint-200"), evaluation(PASSING), job()).stalled
