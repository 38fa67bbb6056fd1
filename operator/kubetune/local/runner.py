"""`kubetune run PATH`: the FineTuneJobs, Evaluations and ModelDeployments of PATH, on this machine.

Same run configs and trainer code as a pod: the run config is built by `kubetune.builders`, written to
the runs folder and handed to `python -m kubetune_trainer train|evaluate|serve` as a child process.
`pvc://CLAIM/PATH` means `RUNS/pvc/CLAIM/PATH`; relative paths are relative to the manifest.

Exit status: 0 everything succeeded (and a deployment served), 1 something failed or did not pass
preflight, 2 usage error, 130 interrupted (run again to resume).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from kubetune import constants as c
from kubetune.api import Evaluation, FineTuneJob, ModelDeployment, Resource, checkpoints
from kubetune.api.evaluation import EvaluationStatus
from kubetune.api.finetunejob import FineTuneJobStatus
from kubetune.api.modeldeployment import ModelDeploymentStatus
from kubetune.api.runconfig import ProgressSink
from kubetune.builders import evaluation as eval_builders
from kubetune.builders import promotion, serving
from kubetune.builders.names import job_output_uri
from kubetune.builders.runconfig import (
    UnresolvedReference,
    checkpoint_location,
    eval_run_config,
    resolve_checkpoint,
    serve_run_config,
    train_run_config,
)
from kubetune.local import plan as planning
from kubetune.local import preflight
from kubetune.local import report as run_report
from kubetune.local.children import Child, trainer_command
from kubetune.local.events import JsonlTail, LossCurve, apply_event, read_events
from kubetune.local.state import RunsDir, RunsDirError, file_digest, inputs_hash, outside_paths
from kubetune.local.summary import print_summary

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# The trainer's exit codes after SIGTERM / SIGINT, once it has saved a resumable checkpoint.
STOPPED_BY_SIGNAL = frozenset({c.EXIT_STOPPED_WITH_CHECKPOINT, 130})
RUN_CONFIG = "run-config.json"
PROGRESS = "progress.jsonl"
POLL_SECONDS = 0.5
HEALTH_TIMEOUT = 300.0


class Interrupted(Exception):
    """Ctrl-C: the current child was stopped and its state saved."""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Run:
    """Everything one `kubetune run` knows while it works through the plan."""

    runs: RunsDir
    console: Console
    manifest_path: str
    no_serve: bool = False
    no_wait: bool = False
    port: int = c.SERVE_PORT
    resources: dict[planning.Key, Resource] = field(default_factory=dict)  # with their latest status
    digests: dict[planning.Key, str] = field(default_factory=dict)
    curves: dict[planning.Key, LossCurve] = field(default_factory=dict)
    failed: set[planning.Key] = field(default_factory=set)
    servers: list[tuple[ModelDeployment, Child]] = field(default_factory=list)
    served: dict[planning.Key, run_report.Served] = field(default_factory=dict)
    items: dict[planning.Key, planning.Item] = field(default_factory=dict)

    def get(self, key: planning.Key) -> Resource | None:
        """The resource as this run left it, or as an earlier run did."""
        if key not in self.resources:
            saved, digest = self.runs.load(key)
            if saved is not None:
                self.resources[key] = saved
                self.digests[key] = digest or ""
        return self.resources.get(key)

    def save(self, item: planning.Item, resource: Resource, digest: str) -> None:
        self.resources[item.key] = resource
        self.digests[item.key] = digest
        self.runs.save(resource, digest)

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)


def _with_status(resource: Resource, status: Any) -> Any:
    return resource.model_copy(update={"status": status})


def _latest_checkpoint(output_dir: Path) -> str | None:
    """The newest complete checkpoint (one with kubetune.json) in a job's output folder."""
    latest = checkpoints.latest_complete(output_dir)
    return latest.name if latest else None


def scan_checkpoints(output_dir: Path, output_uri: str) -> list[dict[str, Any]]:
    """Status entries of the complete checkpoints (and final) on disk: for a job whose saved state was lost
    while its output was kept (the trainer then has nothing to redo and reports nothing)."""
    return [
        {
            "name": cp.name,
            "step": cp.meta.get("step"),
            "uri": f"{output_uri}/{cp.name}",
            "metrics": {k: v for k, v in cp.metrics.items() if isinstance(v, int | float)},
        }
        for cp in checkpoints.checkpoints_on_disk(output_dir)
    ]


def recovered_status(job: FineTuneJob, output_dir: Path) -> dict[str, Any]:
    """checkpoints, bestCheckpoint, progress and metrics from the checkpoints on disk (camelCase status)."""
    entries = scan_checkpoints(output_dir, job_output_uri(job))
    out: dict[str, Any] = {"checkpoints": entries}
    sel = job.spec.checkpoints.select_by
    best = checkpoints.best(checkpoints.checkpoints_on_disk(output_dir), sel.metric, sel.mode)
    if best:
        out["bestCheckpoint"] = best.name
    last = entries[-1] if entries else None
    if last and last["step"] is not None:
        out["progress"] = {"step": last["step"], "totalSteps": last["step"], "percent": 100}
        named = {"train_loss": "trainLoss", "eval_loss": "evalLoss"}
        out["metrics"] = {named[k]: v for k, v in last["metrics"].items() if k in named}
    return out


# --- FineTuneJob ------------------------------------------------------------------------------------------


def run_job(item: planning.Item, run: Run) -> bool:
    job: FineTuneJob = item.resource  # type: ignore[assignment]
    storage = run.runs.storage(item.base_dir)
    source_uri = None
    src_ref = job.spec.base_model.from_job
    if src_ref:
        src = run.get((item.namespace, c.FINETUNEJOB, src_ref.name))
        cp = resolve_checkpoint(src, src_ref.checkpoint) if isinstance(src, FineTuneJob) else None
        if cp is None or src is None:
            return _job_failed(
                item,
                run,
                f"spec.baseModel.fromJob: FineTuneJob {src_ref.name!r} has no checkpoint {src_ref.checkpoint!r}",
                digest="",
            )
        source_uri = checkpoint_location(src, cp)
    data = [job.spec.dataset.train.uri] + ([job.spec.dataset.validation.uri] if job.spec.dataset.validation else [])
    digest = inputs_hash(job.spec.to_k8s(), source_uri, [file_digest(storage.local_path(u)) for u in data])
    output_dir = storage.local_path(job_output_uri(job))
    assert output_dir is not None
    rdir = run.runs.resource_dir(item.key)
    progress_path = rdir / PROGRESS
    saved, saved_digest = run.runs.load(item.key)

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

    cfg = train_run_config(
        job,
        storage=storage,
        output_dir=str(output_dir),
        progress=ProgressSink(backend="file", path=str(progress_path), min_interval_seconds=0),
        source_checkpoint_uri=source_uri,
    )
    rdir.mkdir(parents=True, exist_ok=True)
    cfg_path = rdir / RUN_CONFIG
    cfg_path.write_text(cfg.dump())
    status: dict[str, Any] = saved.status.to_k8s() if saved is not None and saved.status else {}
    status.update(phase=c.Phase.RUNNING, startTime=status.get("startTime") or now(), baseModelUri=cfg.base_model_uri)
    status.pop("completionTime", None)
    resume_from = _latest_checkpoint(output_dir)
    verb = f"resuming from {resume_from}" if resume_from else "training"
    if checkpoints.final_checkpoint(output_dir) is not None:
        verb = "already trained (its output is on disk); collecting the result"
    run.say(f"[bold]{item}[/]: {verb} ({job.spec.method}, adapter {job.spec.adapter.type}, base {cfg.base_model_uri})")
    run.say(f"  run config {cfg_path}, log {rdir / 'train.log'}")
    run.save(item, _with_status(job, FineTuneJobStatus.model_validate(status)), digest)

    tail = JsonlTail(progress_path)
    tail.offset = progress_path.stat().st_size if progress_path.exists() else 0
    child = Child(trainer_command("train", cfg_path), rdir / "train.log")
    try:
        status = _follow_training(item, run, child, tail, status, curve)
    except KeyboardInterrupt:
        run.say(f"[yellow]Stopping {item} (the trainer gets SIGTERM, as a pod would)...[/]")
        child.stop()
        for event in tail.read():
            status = apply_event(status, event)
        _save_suspended(item, run, job, status, output_dir, digest)
        raise Interrupted from None

    rc = child.poll()
    for event in tail.read():
        status = apply_event(status, event)
        curve.add(event)
    if rc in STOPPED_BY_SIGNAL:
        # Stopped from outside (SIGTERM/SIGINT to the trainer itself): it saved a checkpoint first.
        _save_suspended(item, run, job, status, output_dir, digest)
        raise Interrupted
    status["completionTime"] = now()
    if rc == 0:
        if not status.get("checkpoints"):
            status.update(recovered_status(job, output_dir))
        status.update(phase=c.Phase.SUCCEEDED, message="training finished")
        status["conditions"] = [_condition(c.Condition.READY, "True", c.Reason.SUCCEEDED, "training finished")]
        run.save(item, _with_status(job, FineTuneJobStatus.model_validate(status)), digest)
        st = run.resources[item.key].status
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
        status.update(phase=c.Phase.FAILED, message="data validation failed")
        status["conditions"] = [_condition(c.Condition.READY, "False", c.Reason.DATA_VALIDATION_FAILED, text[:4000])]
        run.save(item, _with_status(job, FineTuneJobStatus.model_validate(status)), digest)
        run.say(f"[red]✗ {item}: data validation failed; nothing was trained.[/]\n{escape(text)}")
        run.failed.add(item.key)
        return False
    return _job_failed(
        item,
        run,
        f"the trainer exited with code {rc}; last lines of {child.log_path}:\n{child.tail()}",
        digest=digest,
        status=status,
    )


def _save_suspended(
    item: planning.Item, run: Run, job: FineTuneJob, status: dict[str, Any], output_dir: Path, digest: str
) -> None:
    """An interrupted job is Suspended, not Failed: the next `kubetune run` resumes it."""
    latest = _latest_checkpoint(output_dir)
    where = f"it resumes from {latest}" if latest else "no checkpoint was complete yet, so it starts over"
    status.update(phase=c.Phase.SUSPENDED, message=f"interrupted; run `kubetune run` again: {where}")
    run.save(item, _with_status(job, FineTuneJobStatus.model_validate(status)), digest)
    run.say(f"[yellow]{item} interrupted. Run `kubetune run {run.manifest_path}` again: {where}.[/]")


def _condition(type_: str, value: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": value, "reason": reason, "message": message, "lastTransitionTime": now()}


def _job_failed(item: planning.Item, run: Run, message: str, *, digest: str, status: dict | None = None) -> bool:
    status = dict(status or {})
    status.update(phase=c.Phase.FAILED, message=message.splitlines()[0], completionTime=now())
    status["conditions"] = [_condition(c.Condition.READY, "False", c.Reason.FAILED, message[:4000])]
    run.save(item, _with_status(item.resource, FineTuneJobStatus.model_validate(status)), digest)
    run.say(f"[red]✗ {item}: {escape(message)}[/]")
    run.failed.add(item.key)
    return False


def _follow_training(
    item: planning.Item, run: Run, child: Child, tail: JsonlTail, status: dict[str, Any], curve: LossCurve
) -> dict[str, Any]:
    """Tail the progress file into the status and a progress bar until the trainer exits."""
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    interactive = run.console.is_terminal
    last_saved = time.monotonic()
    reported_checkpoints: set[str] = set()
    with Progress(*columns, console=run.console, transient=False, disable=not interactive) as bars:
        task = bars.add_task(item.name, total=None, loss="starting")
        while True:
            rc = child.poll()
            events = tail.read()
            for event in events:
                status = apply_event(status, event)
                curve.add(event)
                if event.get("event") == "checkpoints" and not interactive:
                    for cp in event.get("checkpoints") or []:
                        if cp.get("name") not in reported_checkpoints:
                            reported_checkpoints.add(cp.get("name"))
                            run.say(f"  saved {cp.get('name')} (step {cp.get('step')}) {cp.get('metrics') or ''}")
            progress = status.get("progress") or {}
            metrics = status.get("metrics") or {}
            loss = " ".join(
                f"{label} {metrics[k]:.3f}"
                for k, label in (("trainLoss", "loss"), ("evalLoss", "eval"))
                if k in metrics
            )
            if progress.get("totalSteps"):
                bars.update(task, total=progress["totalSteps"], completed=progress.get("step", 0), loss=loss)
            elif status.get("data"):
                bars.update(task, loss="loading the model")
            if events and time.monotonic() - last_saved > 5:
                run.save(
                    item, _with_status(item.resource, FineTuneJobStatus.model_validate(status)), run.digests[item.key]
                )
                last_saved = time.monotonic()
            if rc is not None:
                break
            time.sleep(POLL_SECONDS)
    return status


# --- Evaluation -------------------------------------------------------------------------------------------


def run_evaluation(item: planning.Item, run: Run) -> bool:
    ev: Evaluation = item.resource  # type: ignore[assignment]
    ref = ev.spec.model
    job = run.get((item.namespace, c.FINETUNEJOB, ref.fine_tune_job.name)) if ref.fine_tune_job else None
    endpoint = None
    if ref.model_deployment:
        md = run.get((item.namespace, c.MODELDEPLOYMENT, ref.model_deployment.name))
        endpoint = md.status.endpoint if md is not None and md.status else None
    storage = run.runs.storage(item.base_dir)
    rdir = run.runs.resource_dir(item.key)
    out_uri = eval_builders.output_uri(ev, job if isinstance(job, FineTuneJob) else None)
    output_dir = (storage.local_path(out_uri) if out_uri else None) or rdir / "output"
    progress_path = rdir / PROGRESS
    try:
        cfg = eval_run_config(
            ev,
            job=job if isinstance(job, FineTuneJob) else None,
            storage=storage,
            output_dir=str(output_dir),
            output_uri=out_uri,
            progress=ProgressSink(backend="file", path=str(progress_path), min_interval_seconds=0),
            endpoint=endpoint,
        )
    except UnresolvedReference as err:
        return _eval_failed(item, run, str(err), digest="")
    upstream = run.digests.get((item.namespace, c.FINETUNEJOB, ref.fine_tune_job.name)) if ref.fine_tune_job else None
    digest = inputs_hash(
        ev.spec.to_k8s(),
        [t.to_k8s() for t in cfg.targets],
        cfg.baseline.to_k8s() if cfg.baseline else None,
        upstream,
        file_digest(storage.local_path(ev.spec.dataset.uri)),
    )
    if run.runs.is_done(item.key, digest):
        saved, _ = run.runs.load(item.key)
        run.resources[item.key], run.digests[item.key] = saved, digest
        run.say(f"[green]✓[/] {item}: done in an earlier run (best {saved.status.best}); skipped")
        return True

    rdir.mkdir(parents=True, exist_ok=True)
    cfg_path = rdir / RUN_CONFIG
    cfg_path.write_text(cfg.dump())
    status: dict[str, Any] = {"phase": c.Phase.RUNNING, "startTime": now()}
    run.save(item, _with_status(ev, EvaluationStatus.model_validate(status)), digest)
    what = ", ".join(t.name for t in cfg.targets)
    baseline = ""
    if cfg.baseline:
        baseline = f" against the baseline ({'few-shot ' + str(ev.spec.baseline.few_shot) if ev.spec.baseline.few_shot else 'zero-shot'})"
    run.say(f"[bold]{item}[/]: scoring {what}{baseline} on {ev.spec.dataset.uri}")
    run.say(f"  run config {cfg_path}, log {rdir / 'evaluate.log'}")
    child = Child(trainer_command("evaluate", cfg_path), rdir / "evaluate.log")
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            TimeElapsedColumn(),
            console=run.console,
            disable=not run.console.is_terminal,
        ) as bars:
            bars.add_task(f"evaluating {len(cfg.targets)} model(s)" + (" and the baseline" if cfg.baseline else ""))
            while child.poll() is None:
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        child.stop()
        status.update(phase=c.Phase.PENDING, message="interrupted; it runs again next time")
        run.save(item, _with_status(ev, EvaluationStatus.model_validate(status)), digest)
        run.say(f"[yellow]{item} interrupted.[/]")
        raise Interrupted from None
    rc = child.poll()
    if rc != 0:
        return _eval_failed(
            item, run, f"the evaluator exited with code {rc}; last lines of {child.log_path}:\n{child.tail()}", digest
        )
    results_path = Path(output_dir) / "results.json"
    for event in read_events(progress_path):
        status = apply_event(status, event)
    if results_path.exists():
        status.update((json.loads(results_path.read_text()).get("status")) or {})
    st = EvaluationStatus.model_validate(status)
    st.phase, st.completion_time = c.Phase.SUCCEEDED, now()
    st.evaluated_checkpoints = [t.name for t in cfg.targets]
    st.message = "passed" if st.passed else "no model met every pass criterion"
    reason = c.Reason.PASSED if st.passed else c.Reason.NOT_PASSED
    st.conditions = [
        _condition(c.Condition.READY, "True", c.Reason.SUCCEEDED, "evaluation finished"),
        _condition(c.Condition.PASSED, "True" if st.passed else "False", reason, st.message),
    ]
    run.save(item, _with_status(ev, st), digest)
    mark = "[green]✓[/]" if st.passed else "[yellow]![/]"
    run.say(f"{mark} {item}: best {st.best}; {st.message}")
    return True


def _eval_failed(item: planning.Item, run: Run, message: str, digest: str) -> bool:
    st = EvaluationStatus(phase=c.Phase.FAILED, message=message.splitlines()[0], completion_time=now())
    run.save(item, _with_status(item.resource, st), digest)
    run.say(f"[red]✗ {item}: {escape(message)}[/]")
    run.failed.add(item.key)
    return False


# --- ModelDeployment --------------------------------------------------------------------------------------


def free_port(start: int, host: str = "127.0.0.1") -> int:
    """`start`, or the next port after it that nothing listens on."""
    for port in range(start, start + 100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {start}-{start + 99}")


def sample_request(run: Run, evaluation: Evaluation | None, job: FineTuneJob | None):
    """One conversation to send the served model, and the answer it should give: the first example of the
    evaluation's data (or else the job's training data)."""
    for res in (evaluation, job):
        if res is None:
            continue
        item = run.items.get(_key(res))
        uri = res.spec.dataset.uri if isinstance(res, Evaluation) else res.spec.dataset.train.uri
        path = run.runs.storage(item.base_dir if item else Path.cwd()).local_path(uri)
        record = _first_record(path) if path is not None else None
        if record and isinstance(record.get("messages"), list):
            msgs = record["messages"]
            expected = msgs[-1].get("content") if msgs and msgs[-1].get("role") == "assistant" else None
            return (msgs[:-1] if expected is not None else msgs), expected
        if record and "prompt" in record:
            prompt, completion = record["prompt"], record.get("completion")
            msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
            return msgs, completion if isinstance(completion, str) else None
    return [{"role": "user", "content": "Hello!"}], None


def _first_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    return None
                return record if isinstance(record, dict) else None
    return None


def _key(resource: Resource) -> planning.Key:
    return (resource.metadata.namespace or "default", resource.kind, resource.metadata.name)


def start_deployment(item: planning.Item, run: Run) -> bool:
    md: ModelDeployment = item.resource  # type: ignore[assignment]
    ns = item.namespace
    job = run.get((ns, c.FINETUNEJOB, md.spec.model.fine_tune_job.name)) if md.spec.model.fine_tune_job else None
    ev_ref = md.spec.promotion.evaluation
    evaluation = run.get((ns, c.EVALUATION, ev_ref.name)) if ev_ref else None
    saved, _ = run.runs.load(item.key)
    previous = saved.status if saved is not None and saved.status else ModelDeploymentStatus()
    md_now = _with_status(md, previous)
    decision = promotion.decide(md_now, evaluation, job)
    digest = inputs_hash(md.spec.to_k8s())
    status = previous.model_copy(deep=True)
    if decision.stalled:  # e.g. promotion.pin names no checkpoint: fail, as the operator does
        status.phase, status.message, status.endpoint, status.ready_replicas = c.Phase.FAILED, decision.message, None, 0
        status.conditions = [  # type: ignore[assignment]
            _condition(c.Condition.READY, "False", decision.reason, decision.message),
            _condition(c.Condition.STALLED, "True", decision.reason, decision.message),
        ]
        run.save(item, _with_status(md, status), digest)
        run.say(f"[red]✗ {item}: {escape(decision.message)}[/]")
        run.failed.add(item.key)
        return False
    if not decision.checkpoint or not decision.uri:
        status.phase, status.message, status.endpoint, status.ready_replicas = (
            c.Phase.PENDING,
            decision.message,
            None,
            0,
        )
        run.save(item, _with_status(md, status), digest)
        run.say(f"[red]✗ {item}: nothing to serve: {escape(decision.message)}[/]")
        run.failed.add(item.key)
        return False
    if run.no_serve:
        status.phase, status.ready_replicas, status.endpoint = c.Phase.PENDING, 0, None
        status.message = f"would serve {decision.checkpoint} ({decision.message}); not started (--no-serve)"
        run.save(item, _with_status(md, status), digest)
        run.say(f"[green]✓[/] {item}: would serve {decision.checkpoint}; --no-serve, not started")
        return True

    plan = serving.plan(
        md, decision, job if isinstance(job, FineTuneJob) else None, serving.ServingSettings(merge_adapters=False)
    )
    port = free_port(run.port + len(run.servers))
    storage = run.runs.storage(item.base_dir)
    rdir = run.runs.resource_dir(item.key)
    rdir.mkdir(parents=True, exist_ok=True)
    cfg = serve_run_config(
        md,
        model_uri=plan.model_uri,
        base_model_uri=plan.base_model_uri,
        storage=storage,
        output_dir=str(rdir / "output"),
        host="127.0.0.1",
        port=port,
    )
    cfg_path = rdir / RUN_CONFIG
    cfg_path.write_text(cfg.dump())
    endpoint = f"http://127.0.0.1:{port}/v1"
    run.say(f"[bold]{item}[/]: serving {decision.checkpoint} ({decision.message}) at {endpoint}")
    run.say(f"  run config {cfg_path}, log {rdir / 'serve.log'}")
    child = Child(trainer_command("serve", cfg_path), rdir / "serve.log")
    run.servers.append((md, child))
    status.phase, status.message = c.Phase.DEPLOYING, f"starting {decision.checkpoint}"
    run.save(item, _with_status(md, status), digest)
    try:
        ready = _wait_healthy(child, f"http://127.0.0.1:{port}/healthz", run)
    except KeyboardInterrupt:
        raise Interrupted from None
    if not ready:
        status.phase, status.message = c.Phase.FAILED, f"the server did not become ready; see {child.log_path}"
        run.save(item, _with_status(md, status), digest)
        run.say(
            f"[red]✗ {item}: the server did not become ready; last lines of {child.log_path}:[/]\n{escape(child.tail())}"
        )
        run.failed.add(item.key)
        return False
    if decision.changes:
        status.revisions = [r for r in promotion.next_revisions(previous, decision, now())]  # type: ignore[misc]
    status = ModelDeploymentStatus.model_validate(
        {
            **status.to_k8s(),
            "phase": c.Phase.READY,
            "message": f"serving {decision.checkpoint}",
            "servedCheckpoint": decision.checkpoint,
            "servedUri": decision.uri,
            "endpoint": endpoint,
            "readyReplicas": 1,
            "conditions": [_condition(c.Condition.READY, "True", c.Reason.READY, f"serving {decision.checkpoint}")],
        }
    )
    run.save(item, _with_status(md, status), digest)
    messages, expected = sample_request(
        run,
        evaluation if isinstance(evaluation, Evaluation) else None,
        job if isinstance(job, FineTuneJob) else None,
    )
    answer = _ask(endpoint, cfg.served_model_name, messages)
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    run.served[item.key] = run_report.Served(question, answer, expected, messages)
    run.say(f"  request: {escape(question)}")
    run.say(f"  answer:  [bold]{escape(answer)}[/]")
    return True


def _wait_healthy(child: Child, url: str, run: Run) -> bool:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    with run.console.status("starting the server..."):
        while time.monotonic() < deadline:
            if child.poll() is not None:
                return False
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(POLL_SECONDS)
    return False


def _ask(endpoint: str, model: str, messages: list[dict[str, Any]]) -> str:
    body = {"model": model, "messages": messages, "max_tokens": 64, "temperature": 0}
    try:
        resp = httpx.post(f"{endpoint}/chat/completions", json=body, timeout=120)
        resp.raise_for_status()
        return resp.json()["choices"][0]["message"]["content"]
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
        return f"(request failed: {err})"


# --- main -------------------------------------------------------------------------------------------------


RUNNERS = {c.FINETUNEJOB: run_job, c.EVALUATION: run_evaluation, c.MODELDEPLOYMENT: start_deployment}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubetune run",
        description="Run the FineTuneJobs, Evaluations and ModelDeployments of a file or folder on this machine, "
        "in dependency order, with the run configs and trainer a cluster would use. pvc://CLAIM/PATH means "
        "RUNS_DIR/pvc/CLAIM/PATH; relative paths are relative to the manifest. Ctrl-C stops; running again resumes.",
    )
    p.add_argument("path", type=Path, metavar="PATH", help="a manifest file, or a folder of them (*.yaml, *.yml)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where checkpoints, logs and state go (./runs)")
    p.add_argument("--no-serve", action="store_true", help="do not start the ModelDeployments' servers")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="after each server answered its first request, stop it and exit (scripts, CI, make demo)",
    )
    p.add_argument("--port", type=int, default=c.SERVE_PORT, help=f"first port to serve on (default {c.SERVE_PORT})")
    p.add_argument("--fresh", action="store_true", help="forget earlier runs of these resources and start over")
    return p


def _forget_all(items: list[planning.Item], runs: RunsDir) -> None:
    for it in items:
        extra = []
        if isinstance(it.resource, FineTuneJob):
            out = runs.storage(it.base_dir).local_path(job_output_uri(it.resource))
            extra += [out] if out else []
        runs.forget(it.key, *extra)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))  # logs and CI: tables a little wider than 80 columns
    runs = RunsDir(args.runs_dir)

    def known(key: planning.Key) -> bool:
        try:
            saved, _ = runs.load(key)
        except RunsDirError:  # not a folder name: outside_paths() below refuses it, naming the file
            return False
        return saved is not None

    try:
        items = planning.order(planning.load(args.path), known=known)
    except planning.PlanError as err:
        for line in err.errors:
            console.print(Text("error: ", style="red") + Text(line), highlight=False, soft_wrap=True)
        return EXIT_FAILED
    outside = outside_paths(items, runs)
    if outside:
        for line in outside:
            console.print(Text("error: ", style="red") + Text(line), highlight=False, soft_wrap=True)
        console.print(f"[red]{len(outside)} problem(s); nothing was started or removed.[/]")
        return EXIT_FAILED

    found = preflight.check(items, runs)
    for note in found.notes:
        console.print(f"note: {note}", highlight=False)
    if found.errors:
        for e in found.errors:
            console.print(Text("error: ", style="red") + Text(e), highlight=False, soft_wrap=True)
        console.print(f"[red]{len(found.errors)} problem(s); nothing was started.[/]")
        return EXIT_FAILED
    console.print(
        f"{len(items)} resource(s) from {args.path}: "
        + ", ".join(str(it) for it in items)
        + f"; {found.datasets} dataset(s) valid; runs folder {runs.root}",
        highlight=False,
    )
    if args.fresh:
        _forget_all(items, runs)

    run = Run(
        runs=runs,
        console=console,
        manifest_path=str(args.path),
        no_serve=args.no_serve,
        no_wait=args.no_wait,
        port=args.port,
    )
    run.items = {it.key: it for it in items}
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for item in items:
            blocked = [d for d in planning.dependencies(item.resource) if d.key in run.failed]
            if blocked:
                console.print(
                    f"[red]✗ {item}: skipped; {blocked[0].key[1]} {blocked[0].key[2]} failed[/]", highlight=False
                )
                run.failed.add(item.key)
                continue
            RUNNERS[item.kind](item, run)
        html = _report(items, run)
        print_summary(console, items, run.resources, run.served, html)
        if run.servers and not run.no_wait:
            return _serve_until_interrupted(run)
        return EXIT_FAILED if run.failed else EXIT_OK
    except (Interrupted, KeyboardInterrupt):
        console.print("[yellow]Interrupted.[/] Run the same command again to resume.")
        return EXIT_INTERRUPTED
    finally:
        for md, child in run.servers:
            child.stop(grace=10)
            _mark_stopped(run, md)
        signal.signal(signal.SIGTERM, previous)


def _mark_stopped(run: Run, md: ModelDeployment) -> None:
    """The saved status of a deployment whose local server has stopped: not Ready, no endpoint."""
    key = _key(md)
    current = run.resources.get(key)
    if not isinstance(current, ModelDeployment) or current.status is None:
        return
    st = current.status.model_copy(update={"phase": c.Phase.PENDING, "endpoint": None, "ready_replicas": 0})
    st.message = f"{st.served_checkpoint} was served until `kubetune run` stopped"
    st.conditions = [_condition(c.Condition.READY, "False", c.Reason.PENDING, st.message)]
    run.runs.save(_with_status(md, st), run.digests.get(key, ""))


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _report(items: list[planning.Item], run: Run) -> Path:
    rep = run_report.RunReport()
    for it in items:
        res = run.resources.get(it.key, it.resource)
        if isinstance(res, FineTuneJob):
            rep.jobs.append((res, run.curves.get(it.key, LossCurve())))
        elif isinstance(res, Evaluation):
            rep.evaluations.append(res)
        elif isinstance(res, ModelDeployment):
            rep.deployments.append((res, run.served.get(it.key)))
    return run_report.write(rep, run.runs.root)


def _serve_until_interrupted(run: Run) -> int:
    for md, _ in run.servers:
        st = run.resources[_key(md)].status
        run.say(f"Serving [bold]{md.metadata.name}[/] at {st.endpoint}  (Ctrl-C to stop)")
        sample = run.served.get(_key(md))
        messages = sample.messages if sample else [{"role": "user", "content": "Hello!"}]
        body = json.dumps({"model": md.spec.served_model_name or md.metadata.name, "messages": messages})
        run.say(
            f"  try: curl -s {st.endpoint}/chat/completions -H 'Content-Type: application/json' -d {shlex.quote(body)}"
        )
    try:
        while True:
            for md, child in run.servers:
                if child.poll() is not None:
                    run.say(f"[red]the server of {md.metadata.name} stopped; last lines:[/]\n{escape(child.tail())}")
                    return EXIT_FAILED
            time.sleep(1)
    except KeyboardInterrupt:
        run.say("Stopping the server(s).")
        return EXIT_OK
