"""A FineTuneJob on this machine: the trainer as a child process with the run config a pod would get.

Its status is written as the operator writes it (`kubetune.status.finetunejob`, from the process instead of
a batch Job), plus what the trainer reports (`kubetune.api.progress`, from the progress file). Ctrl-C or a
stopped trainer leaves the job Suspended; the next run resumes from its latest complete checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from kubetune import constants as c
from kubetune.api import FineTuneJob
from kubetune.api.clock import now_iso
from kubetune.api.finetunejob import FineTuneJobStatus
from kubetune.api.progress import merge_patch
from kubetune.api.runconfig import ProgressSink
from kubetune.builders.names import job_output_uri
from kubetune.builders.runconfig import JudgeNotReady, checkpoint_location, resolve_checkpoint, train_run_config
from kubetune.local.checkpoints import is_trained, latest_checkpoint, result_status
from kubetune.local.children import Child, trainer_command
from kubetune.local.context import PROGRESS, RUN_CONFIG, Run, with_status
from kubetune.local.events import JsonlTail, LossCurve, apply_event, read_events
from kubetune.local.judges import judge_endpoints
from kubetune.local.plan import Item
from kubetune.local.progress import TrainingProgress
from kubetune.local.signals import Interrupted
from kubetune.local.state import file_digest, inputs_hash
from kubetune.status import finetunejob as ftj_status
from kubetune.status.finetunejob import Outcome, TrainerProcess

POLL_SECONDS = 0.5
SAVE_EVERY_SECONDS = 1.0  # while training: how often the status file follows the progress (a small file)


def _write(item: Item, run: Run, status: dict[str, Any], outcome: Outcome, digest: str) -> dict[str, Any]:
    """`status` with the fields the outcome sets (phase, conditions, times), saved; the new status."""
    job = item.resource_as(FineTuneJob)
    current = with_status(job, FineTuneJobStatus.model_validate(status))
    status = merge_patch(status, ftj_status.local_status(current, outcome, now_iso()))
    run.save(item, with_status(job, FineTuneJobStatus.model_validate(status)), digest)
    return status


def run_job(item: Item, run: Run) -> bool:  # noqa: PLR0915 - a local run in order (source, preflight, train, record); to be split by step
    job = item.resource_as(FineTuneJob)
    storage = run.runs.storage(item.base_dir, item.namespace)
    source_uri = None
    src_ref = job.spec.base_model.from_job
    if src_ref:
        src = run.get_as((item.namespace, c.FINETUNEJOB, src_ref.name), FineTuneJob)
        cp = resolve_checkpoint(src, src_ref.checkpoint) if src is not None else None
        if cp is None or src is None:
            message = f"spec.baseModel.fromJob: FineTuneJob {src_ref.name!r} has no checkpoint {src_ref.checkpoint!r}"
            return _failed(item, run, {}, Outcome(c.Phase.FAILED, c.Reason.SOURCE_FAILED, message), digest="")
        source_uri = checkpoint_location(src, cp)
    data = [job.spec.dataset.train.uri] + ([job.spec.dataset.validation.uri] if job.spec.dataset.validation else [])
    digest = inputs_hash(job.spec.identity(), source_uri, [file_digest(storage.local_path(u)) for u in data])
    output_dir = storage.local_path(job_output_uri(job))
    assert output_dir is not None
    rdir = run.runs.resource_dir(item.key)
    progress_path = rdir / PROGRESS
    loaded, saved_digest = run.runs.load(item.key)
    saved = loaded if isinstance(loaded, FineTuneJob) else None  # the key's kind: always a FineTuneJob

    if saved is not None and saved_digest != digest:
        run.say(f"[yellow]{item}: the spec or the data changed since the last run; starting over[/]")
        run.runs.forget(item.key, output_dir)
        saved = None
    curve = LossCurve()
    for event in read_events(progress_path):
        curve.add(event)
    run.curves[item.key] = curve
    if saved is not None and saved.status and saved.status.phase == c.Phase.SUCCEEDED:
        run.resources[item.key], run.digests[item.key] = saved, digest
        best = saved.status.best_checkpoint or "final"
        run.say(f"[green]✓[/] {item}: done in an earlier run (best {best}); skipped")
        return True

    try:
        judges = judge_endpoints(job, run)
    except JudgeNotReady as err:
        return _failed(item, run, {}, Outcome(c.Phase.FAILED, c.Reason.WAITING_FOR_JUDGE, str(err)), digest=digest)
    cfg = train_run_config(
        job,
        storage=storage,
        output_dir=str(output_dir),
        progress=ProgressSink(backend="file", path=str(progress_path), min_interval_seconds=0),
        source_checkpoint_uri=source_uri,
        judge_endpoints=judges,
    )
    rdir.mkdir(parents=True, exist_ok=True)
    cfg_path = rdir / RUN_CONFIG
    cfg_path.write_text(cfg.dump())
    status: dict[str, Any] = saved.status.to_k8s() if saved is not None and saved.status else {}
    status["baseModelUri"] = cfg.base_model_uri
    resume_from = latest_checkpoint(output_dir)
    verb = f"resuming from {resume_from}" if resume_from else "training"
    collecting = is_trained(output_dir)
    if collecting:
        verb = "already trained (its output is on disk); collecting the result"
    run.say(f"[bold]{item}[/]: {verb} ({job.spec.method}, adapter {job.spec.adapter.type}, base {cfg.base_model_uri})")
    run.say(f"  run config {cfg_path}, log {rdir / 'train.log'}")
    status = _write(item, run, status, _observe(item, status, TrainerProcess()), digest)

    tail = JsonlTail(progress_path)
    tail.offset = progress_path.stat().st_size if progress_path.exists() else 0
    started_at = tail.offset
    child = Child(trainer_command("train", cfg_path), rdir / "train.log")
    try:
        status = _follow_training(item, run, child, tail, status, curve)
    except KeyboardInterrupt:
        run.say(f"[yellow]Stopping {item} (the trainer gets SIGTERM, as a pod would)...[/]")
        child.stop()
        # Every event of this run, from where it started: those `_follow_training` had applied went with it.
        replay = JsonlTail(progress_path)
        replay.offset = started_at
        for event in replay.read():
            status = apply_event(status, event)
        _suspend(item, run, status, output_dir, digest)
        raise Interrupted from None

    rc = child.poll()
    for event in tail.read():
        status = apply_event(status, event)
        curve.add(event)
    if rc in ftj_status.STOPPED_BY_SIGNAL:
        # Stopped from outside (SIGTERM/SIGINT to the trainer itself): it saved a checkpoint first.
        _suspend(item, run, status, output_dir, digest)
        raise Interrupted
    if rc == c.EXIT_OK:
        status = result_status(job, status, output_dir, collecting=collecting)
        status = _write(item, run, status, _observe(item, status, TrainerProcess(exit_code=rc)), digest)
        st = FineTuneJobStatus.model_validate(status)  # what _write saved
        facts = [f"{st.progress.step} steps"] if st.progress and st.progress.step is not None else []
        facts += [
            f"{label} {st.metrics[k]:.3f}"
            for k, label in (("trainLoss", "train loss"), ("evalLoss", "eval loss"))
            if k in st.metrics
        ]
        facts += [f"best {st.best_checkpoint}"] if st.best_checkpoint else []
        run.say(f"[green]✓[/] {item}: " + ", ".join(facts or ["finished"]))
        return True
    if rc == c.EXIT_DATA_VALIDATION_FAILED:
        report_path = output_dir / "data-validation.txt"
        text = report_path.read_text() if report_path.exists() else child.tail()
        _write(item, run, status, _observe(item, status, TrainerProcess(exit_code=rc, output=text)), digest)
        run.say(f"[red]✗ {item}: data validation failed; nothing was trained.[/]\n{escape(text)}")
        run.failed.add(item.key)
        return False
    proc = TrainerProcess(exit_code=rc, output=child.tail(), log_path=str(child.log_path))
    return _failed(item, run, status, _observe(item, status, proc), digest=digest)


def _observe(item: Item, status: dict[str, Any], proc: TrainerProcess) -> Outcome:
    job = item.resource_as(FineTuneJob)
    return ftj_status.observe_process(with_status(job, FineTuneJobStatus.model_validate(status)), proc)


def _suspend(item: Item, run: Run, status: dict[str, Any], output_dir: Path, digest: str) -> None:
    """An interrupted job is Suspended, not Failed: the next `kubetune run` resumes it."""
    latest = latest_checkpoint(output_dir)
    _write(item, run, status, _observe(item, status, TrainerProcess(stopped=True, resume_from=latest)), digest)
    where = f"it resumes from {latest}" if latest else "no checkpoint was complete yet, so it starts over"
    run.say(f"[yellow]{item} interrupted. Run `kubetune run {run.manifest_path}` again: {where}.[/]")


def _failed(item: Item, run: Run, status: dict[str, Any], outcome: Outcome, *, digest: str) -> bool:
    _write(item, run, status, outcome, digest)
    detail = f"\n{outcome.detail}" if outcome.detail else ""
    run.say(f"[red]✗ {item}: {escape(outcome.message + (':' if detail else '') + detail)}[/]")
    run.failed.add(item.key)
    return False


def _follow_training(
    item: Item, run: Run, child: Child, tail: JsonlTail, status: dict[str, Any], curve: LossCurve
) -> dict[str, Any]:
    """Tail the progress file into the status and a progress bar until the trainer exits."""
    last_saved = time.monotonic()
    with TrainingProgress(run.console, item.name) as bar:
        while True:
            rc = child.poll()
            events = tail.read()
            for event in events:
                status = apply_event(status, event)
                curve.add(event)
                bar.event(event)
            bar.show(status)
            if events and time.monotonic() - last_saved > SAVE_EVERY_SECONDS:
                status = _write(item, run, status, _observe(item, status, TrainerProcess()), run.digests[item.key])
                last_saved = time.monotonic()
            if rc is not None:
                break
            time.sleep(POLL_SECONDS)
    return status
