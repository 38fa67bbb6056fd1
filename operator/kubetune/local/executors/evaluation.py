"""An Evaluation on this machine: the evaluator as a child process with the run config a pod would get.

Its status is written as the operator writes it (`kubetune.status.evaluation`, from the process instead of
the evaluation Job), plus the results the evaluator reports (results.json and its `evaluation` event).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from kubetune import constants as c
from kubetune.api import Evaluation, FineTuneJob, ModelDeployment
from kubetune.api.clock import now_iso
from kubetune.api.evaluation import EvaluationStatus
from kubetune.api.progress import merge_patch
from kubetune.api.runconfig import ProgressSink
from kubetune.builders import evaluation as eval_builders
from kubetune.builders.runconfig import UnresolvedReference, eval_run_config
from kubetune.local.children import Child, trainer_command
from kubetune.local.context import PROGRESS, RUN_CONFIG, Run, with_status
from kubetune.local.events import apply_event, read_events
from kubetune.local.judges import judge_endpoints
from kubetune.local.plan import Item
from kubetune.local.progress import spinner
from kubetune.local.signals import Interrupted
from kubetune.local.state import file_digest, inputs_hash
from kubetune.status import evaluation as ev_status
from kubetune.status.evaluation import EvalOutcome, EvalRun

POLL_SECONDS = 0.5


def _write(item: Item, run: Run, status: dict[str, Any], outcome: EvalOutcome, models: list[str], digest: str):
    """`status` with the fields the outcome sets (phase, conditions, times, verdict), saved; the new status."""
    ev = item.resource_as(Evaluation)
    current = with_status(ev, EvaluationStatus.model_validate(status))
    observed = EvalRun(models, start_time=status.get("startTime"))
    status = merge_patch(status, ev_status.status_patch(current, outcome, observed, now_iso()))
    run.save(item, with_status(ev, EvaluationStatus.model_validate(status)), digest)
    return status


def run_evaluation(item: Item, run: Run) -> bool:
    ev = item.resource_as(Evaluation)
    ref = ev.spec.model
    job = run.get((item.namespace, c.FINETUNEJOB, ref.fine_tune_job.name)) if ref.fine_tune_job else None
    endpoint = None
    if ref.model_deployment:
        md = run.get_as((item.namespace, c.MODELDEPLOYMENT, ref.model_deployment.name), ModelDeployment)
        endpoint = md.status.endpoint if md is not None and md.status else None
    storage = run.runs.storage(item.base_dir, item.namespace)
    rdir = run.runs.resource_dir(item.key)
    out_uri = eval_builders.output_uri(ev, job if isinstance(job, FineTuneJob) else None)
    output_dir = (storage.local_path(out_uri) if out_uri else None) or rdir / "output"
    progress_path = rdir / PROGRESS
    try:
        judges = judge_endpoints(ev, run)
        cfg = eval_run_config(
            ev,
            job=job if isinstance(job, FineTuneJob) else None,
            storage=storage,
            output_dir=str(output_dir),
            output_uri=out_uri,
            progress=ProgressSink(backend="file", path=str(progress_path), min_interval_seconds=0),
            endpoint=endpoint,
            judge_endpoints=judges,
        )
    except UnresolvedReference as err:
        outcome = EvalOutcome(c.Phase.FAILED, c.Reason.EVALUATION_FAILED, str(err).splitlines()[0])
        return _failed(item, run, outcome, str(err), digest="")
    upstream = run.digests.get((item.namespace, c.FINETUNEJOB, ref.fine_tune_job.name)) if ref.fine_tune_job else None
    digest = inputs_hash(
        ev.spec.identity(),
        [t.to_k8s() for t in cfg.targets],
        cfg.baseline.to_k8s() if cfg.baseline else None,
        upstream,
        file_digest(storage.local_path(ev.spec.dataset.uri)),
    )
    if run.runs.is_done(item.key, digest):
        saved, _ = run.runs.load(item.key)
        assert isinstance(saved, Evaluation) and saved.status is not None  # is_done: saved and Succeeded
        run.resources[item.key], run.digests[item.key] = saved, digest
        run.say(f"[green]✓[/] {item}: done in an earlier run (best {saved.status.best}); skipped")
        return True

    rdir.mkdir(parents=True, exist_ok=True)
    cfg_path = rdir / RUN_CONFIG
    cfg_path.write_text(cfg.dump())
    models = [t.name for t in cfg.targets]
    status = _write(item, run, {}, ev_status.observe_process(ev, models, None), models, digest)
    what = ", ".join(models)
    baseline = ""
    if cfg.baseline:
        baseline = f" against the baseline ({'few-shot ' + str(ev.spec.baseline.few_shot) if ev.spec.baseline.few_shot else 'zero-shot'})"
    run.say(f"[bold]{item}[/]: scoring {what}{baseline} on {ev.spec.dataset.uri}")
    run.say(f"  run config {cfg_path}, log {rdir / 'evaluate.log'}")
    child = Child(trainer_command("evaluate", cfg_path), rdir / "evaluate.log")
    try:
        description = f"evaluating {len(cfg.targets)} model(s)" + (" and the baseline" if cfg.baseline else "")
        with spinner(run.console, description):
            while child.poll() is None:
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        child.stop()
        _write(item, run, status, ev_status.observe_process(ev, models, None, stopped=True), models, digest)
        run.say(f"[yellow]{item} interrupted.[/]")
        raise Interrupted from None
    rc = child.poll()
    if rc != c.EXIT_OK:
        outcome = ev_status.observe_process(ev, models, rc, log_path=str(child.log_path))
        text = f"the evaluator exited with code {rc}; last lines of {child.log_path}:\n{child.tail()}"
        return _failed(item, run, outcome, text, digest)
    results_path = Path(output_dir) / "results.json"
    for event in read_events(progress_path):
        status = apply_event(status, event)
    if results_path.exists():
        status = merge_patch(status, json.loads(results_path.read_text()).get("status") or {})
    scored = with_status(ev, EvaluationStatus.model_validate(status))
    status = _write(item, run, status, ev_status.observe_process(scored, models, rc), models, digest)
    st = EvaluationStatus.model_validate(status)  # what _write saved
    mark = "[green]✓[/]" if st.passed else "[yellow]![/]"
    run.say(f"{mark} {item}: {escape(st.message or '')}")
    return True


def _failed(item: Item, run: Run, outcome: EvalOutcome, message: str, digest: str) -> bool:
    """Failed before or while the evaluator ran: the status says why in a line, the console all of it."""
    _write(item, run, {}, outcome, [], digest)
    run.say(f"[red]✗ {item}: {escape(message)}[/]")
    run.failed.add(item.key)
    return False
