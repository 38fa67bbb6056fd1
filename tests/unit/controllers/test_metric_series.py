"""Series a dashboard or an alert selects per object: a FineTuneJob's current phase, an Evaluation's verdict."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from kubetune import metrics


def phase_of(namespace: str, name: str) -> dict[str, float]:
    """{phase: value} of the job's kubetune_finetunejob_status_phase series."""
    found: dict[str, float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "kubetune_finetunejob_status_phase"
                and labels.get("resource_namespace") == namespace
                and labels.get("finetunejob") == name
            ):
                found[labels["phase"]] = sample.value
    return found


def test_one_phase_series_per_job_follows_its_phase_and_goes_with_it():
    recorder = metrics.Recorder()
    body = {"metadata": {"namespace": "phase-team", "name": "j1"}, "status": {"phase": "Running"}}
    recorder.observe_job(body)
    assert phase_of("phase-team", "j1") == {"Running": 1}
    body["status"]["phase"] = "Failed"
    recorder.observe_job(body)
    assert phase_of("phase-team", "j1") == {"Failed": 1}  # the Running series is gone, not 0
    recorder.forget_job("phase-team", "j1")
    assert phase_of("phase-team", "j1") == {}


def test_evaluation_verdict_is_absent_until_decided_then_one_or_zero():
    recorder = metrics.Recorder()
    labels = {"resource_namespace": "verdict-team", "evaluation": "e"}

    def passed() -> float | None:
        return REGISTRY.get_sample_value("kubetune_evaluation_passed", labels)

    body: dict[str, Any] = {"metadata": {"namespace": "verdict-team", "name": "e"}, "status": {"phase": "Running"}}
    recorder.observe_evaluation(body)
    assert passed() is None
    body["status"] = {"phase": "Succeeded", "passed": False}
    recorder.observe_evaluation(body)
    assert passed() == 0
    body["status"]["passed"] = True
    recorder.observe_evaluation(body)
    assert passed() == 1
    recorder.forget_evaluation("verdict-team", "e")
    assert passed() is None
