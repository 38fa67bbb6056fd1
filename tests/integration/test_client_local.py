"""`kubetune.client` on the local runtime: the same calls as on a cluster, against a real (tiny) `kubetune run`
started in a subprocess, reading the state files it writes in the runs folder."""

from __future__ import annotations

import re

import pytest
import yaml
from test_quickstart_local import mini_quickstart

from kubetune.api import Evaluation, FineTuneJob, ModelDeployment
from kubetune.client import AdmissionError, Client, NotFoundError


@pytest.mark.slow
def test_local_apply_wait_checkpoints_events_logs_results_pin_delete(tmp_path) -> None:
    folder = mini_quickstart(tmp_path, max_steps=4, every=2)
    job_doc, eval_doc, md_doc = yaml.safe_load_all((folder / "quickstart.yaml").read_text())
    # Two files with paths relative to their folder; applied one after the other, as a notebook would.
    (folder / "job.yaml").write_text(yaml.safe_dump(job_doc))
    (folder / "eval.yaml").write_text(yaml.safe_dump(eval_doc))
    runs = tmp_path / "runs"

    with Client.local(runs, namespace="team-travel") as kt:
        (job,) = kt.apply(folder / "job.yaml")
        (ev,) = kt.apply(folder / "eval.yaml")
        assert isinstance(job, FineTuneJob) and isinstance(ev, Evaluation)
        assert ev.status is None  # its run waits for the job's

        done = kt.wait(job, timeout=300, interval=0.2)
        assert done.status.phase == "Succeeded", list(kt.logs(job))[-20:]
        kept = {cp.name: cp for cp in kt.checkpoints(job)}
        assert {"checkpoint-4", "final"} <= set(kept) and kept["checkpoint-4"].step == 4
        assert kt.best_checkpoint(job) in kept
        reasons = [e.reason for e in kt.events(job)]
        assert "progress" in reasons and reasons[-1] == "finished"
        assert any("resuming" in line or "step" in line or "loss" in line for line in kt.logs(job))

        scored = kt.wait(ev, timeout=300, interval=0.2)
        assert scored.status.phase == "Succeeded"
        results = kt.results("travel-assistant-eval")
        assert results.passed is True and results.best in kept
        assert results.baseline.metrics["prompt_tokens"] > results.results[0].metrics["prompt_tokens"]
        assert [r.metadata.name for r in kt.list("FineTuneJob")] == ["travel-assistant"]

        # Refused before anything runs: the field path, and no new run.
        before = sorted((runs / ".client").iterdir())
        bad = {**md_doc, "spec": {**md_doc["spec"], "replicas": -1}}
        with pytest.raises(AdmissionError, match=r"spec\.replicas"):
            kt.apply(bad)
        assert sorted((runs / ".client").iterdir()) == before

        # A ModelDeployment is decided locally, not served (--no-serve): promotion takes the best, a pin another.
        (md,) = kt.apply(md_doc)
        assert isinstance(md, ModelDeployment)

        def serves(checkpoint: str):
            return lambda r: r.status is not None and re.search(rf"would serve {checkpoint}\b", r.status.message or "")

        kt.wait(md, until=serves(results.best), timeout=120, interval=0.2)
        other = next(name for name in kept if name != results.best)
        assert kt.pin(md, other).spec.promotion.pin == other
        kt.wait(md, until=serves(other), timeout=120, interval=0.2)
        kt.pin(md, "checkpoint-999")
        failed = kt.wait(md, phases={"Failed"}, timeout=120, interval=0.2)
        assert {cd.type: cd.reason for cd in failed.status.conditions}["Stalled"] == "PinnedCheckpointNotFound"

        assert kt.delete(md) is True
        with pytest.raises(NotFoundError):
            kt.get(md)
        assert not (runs / "team-travel" / "modeldeployments" / "travel-assistant").exists()


@pytest.mark.slow
def test_local_suspend_keeps_a_checkpoint_and_resume_trains_to_the_end(tmp_path) -> None:
    # 300 nano steps take seconds: the suspend is sent on the trainer's first progress event, read live from
    # its event stream (the saved status follows it only every second), so it lands well before the end.
    folder = mini_quickstart(tmp_path, max_steps=300, every=1000)  # the checkpoint it keeps is the interruption's
    job_doc = next(yaml.safe_load_all((folder / "quickstart.yaml").read_text()))
    (folder / "job.yaml").write_text(yaml.safe_dump(job_doc))

    with Client.local(tmp_path / "runs", namespace="team-travel") as kt:
        (job,) = kt.apply(folder / "job.yaml")
        first = next(e for e in kt.events(job, follow=True, timeout=300) if e.reason == "progress")
        assert '"step": ' in first.message

        suspended = kt.suspend(job)
        assert suspended.status.phase == "Suspended"
        assert suspended.status.progress.step < 300
        assert any(e.reason == "interrupted" and e.type == "Warning" for e in kt.events(job))

        kt.resume(job)
        done = kt.wait(job, timeout=300, interval=0.2)
        assert done.status.phase == "Succeeded" and done.status.progress.step == 300
        assert any("resuming from" in line for line in kt.logs(job))
