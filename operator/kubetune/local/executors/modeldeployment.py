"""A ModelDeployment on this machine: the OpenAI-compatible server of the trainer image on localhost.

Promotion decides what to serve exactly as on a cluster (`kubetune.builders.promotion`); the status is
written as the operator writes it (`kubetune.status.modeldeployment`, from the server process instead of
an apps/v1 Deployment). Once it answers, the server gets one request from the held-out data.
With `spec.adapters` the server starts with runtime adapter loading, and each adapter (promoted on its own, as
on a cluster) is loaded by one round of `kubetune-trainer serve-adapters-sync`, the pod's sidecar, from the
adapter set written beside the run config.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from rich.markup import escape

from kubetune import constants as c
from kubetune.api import Evaluation, FineTuneJob, ModelDeployment
from kubetune.api.clock import now_iso
from kubetune.api.modeldeployment import ModelDeploymentStatus
from kubetune.api.progress import merge_patch
from kubetune.builders import adapters, promotion, serving
from kubetune.builders.promotion import Decision
from kubetune.builders.runconfig import serve_run_config
from kubetune.errors import SpecError
from kubetune.local import report as run_report
from kubetune.local.children import Child, trainer_command
from kubetune.local.context import RUN_CONFIG, Run, key_of, with_status
from kubetune.local.plan import Item
from kubetune.local.progress import waiting
from kubetune.local.samples import sample_request
from kubetune.local.server import ask, free_port, wait_healthy
from kubetune.local.signals import Interrupted
from kubetune.local.state import inputs_hash
from kubetune.status import modeldeployment as md_status
from kubetune.status.modeldeployment import Workload

ADAPTERS_FILE = "adapters.json"


def _write(
    item: Item,
    run: Run,
    status: ModelDeploymentStatus,
    decision: Decision,
    workload: Workload,
    digest: str,
    revisions: list[dict] | None = None,
    outcomes: list[adapters.AdapterOutcome] | None = None,
) -> ModelDeploymentStatus:
    """`status` with what `decision` applied to `workload` gives (as the operator computes it), saved."""
    md = item.resource_as(ModelDeployment)
    revisions = [r.to_k8s() for r in status.revisions] if revisions is None else revisions
    patch = md_status.status_patch(with_status(md, status), decision, workload, revisions, now_iso())
    if outcomes is not None:
        patch["adapters"] = [o.status.to_k8s() for o in outcomes]
        errors = [o.error for o in outcomes if o.error]
        if errors:
            patch["message"] = f"{patch['message']}; not served: {'; '.join(errors)}"
    status = ModelDeploymentStatus.model_validate(merge_patch(status.to_k8s(), patch))
    run.save(item, with_status(md, status), digest)
    return status


AUTH_NOT_ENFORCED = (
    "spec.auth is not enforced by kubetune run (no Secrets locally); the server listens on 127.0.0.1 only"
)


def _one_block(answer: str) -> str:
    """An answer as one block for the console: runs of blank lines collapsed, none at the ends."""
    return re.sub(r"\n(\s*\n)+", "\n", answer.strip()) or "(an empty answer)"


def _warn_auth(item: Item, run: Run, md: ModelDeployment) -> None:
    if md.spec.auth is not None:  # locally there is no Secret to read the key from: say so rather than pretend
        run.say(f"[yellow]! {item}: {AUTH_NOT_ENFORCED}[/]")


def start_deployment(item: Item, run: Run) -> bool:
    md = item.resource_as(ModelDeployment)
    ns = item.namespace
    _warn_auth(item, run, md)
    ftj = md.spec.model.fine_tune_job
    job = run.get_as((ns, c.FINETUNEJOB, ftj.name), FineTuneJob) if ftj else None
    ev_ref = md.spec.promotion.evaluation
    evaluation = run.get_as((ns, c.EVALUATION, ev_ref.name), Evaluation) if ev_ref else None
    saved, _ = run.runs.load(item.key)
    saved = saved if isinstance(saved, ModelDeployment) else None  # the key's kind: always a ModelDeployment
    previous = saved.status if saved is not None and saved.status else ModelDeploymentStatus()
    decision = promotion.decide(with_status(md, previous), evaluation, job)
    digest = inputs_hash(md.spec.identity())
    if decision.stalled:  # e.g. promotion.pin names no checkpoint: fail, as the operator does
        _write(item, run, previous, decision, Workload(), digest)
        run.say(f"[red]✗ {item}: {escape(decision.message)}[/]")
        run.failed.add(item.key)
        return False
    if not decision.checkpoint or not decision.uri:
        _write(item, run, previous, dataclasses.replace(decision, checkpoint=None), Workload(), digest)
        run.say(f"[red]✗ {item}: nothing to serve: {escape(decision.message)}[/]")
        run.failed.add(item.key)
        return False
    if run.no_serve:
        idle = f"would serve {decision.checkpoint} ({decision.message}); not started (--no-serve)"
        _write(item, run, previous, decision, Workload(idle=idle), digest)
        run.say(f"[green]✓[/] {item}: would serve {decision.checkpoint}; --no-serve, not started")
        return True

    plan = _plan(item, run, decision, job if isinstance(job, FineTuneJob) else None, previous, digest)
    if plan is None:
        return False
    outcomes = _adapter_outcomes(run, item, md, previous, plan.served_uri) if md.spec.adapters else None
    port = free_port(run.port + len(run.servers))
    storage = run.runs.storage(item.base_dir, item.namespace)
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
    child = Child(trainer_command("serve", cfg_path) + (["--enable-lora"] if outcomes else []), rdir / "serve.log")
    run.servers.append((md, child))
    status = _write(item, run, previous, decision, Workload(), digest)
    try:
        with waiting(run.console, "starting the server..."):
            ready = wait_healthy(child, f"http://127.0.0.1:{port}/healthz")
    except KeyboardInterrupt:
        raise Interrupted from None
    if not ready:
        failure = (c.Reason.FAILED, f"the server did not become ready; see {child.log_path}")
        _write(item, run, status, decision, Workload(failure=failure), digest)
        run.say(
            f"[red]✗ {item}: the server did not become ready; last lines of {child.log_path}:[/]\n{escape(child.tail())}"
        )
        run.failed.add(item.key)
        return False
    if outcomes and not _load_adapters(run, item, rdir, port, outcomes):
        failure = (c.Reason.FAILED, f"the adapters could not be loaded; see {rdir / 'adapters-sync.log'}")
        _write(item, run, status, decision, Workload(failure=failure), digest, outcomes=outcomes)
        return False
    revisions = promotion.next_revisions(previous, decision, now_iso())
    _write(item, run, status, decision, Workload(True, 1, endpoint), digest, revisions, outcomes)
    messages, expected = sample_request(
        run,
        evaluation if isinstance(evaluation, Evaluation) else None,
        job if isinstance(job, FineTuneJob) else None,
    )
    answer = ask(endpoint, cfg.served_model_name, messages)
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    run.served[item.key] = run_report.Served(question, answer, expected, messages)
    run.say(f"  request: {escape(question)}\n  answer:  [bold]{escape(_one_block(answer))}[/]")
    return True


def _plan(
    item: Item, run: Run, decision: Decision, job: FineTuneJob | None, previous: ModelDeploymentStatus, digest: str
) -> serving.ServingPlan | None:
    """How to serve `decision` (adapters unmerged: the local server loads base + adapter); None: failed, said."""
    try:
        return serving.plan(
            item.resource_as(ModelDeployment), decision, job, serving.ServingSettings(merge_adapters=False)
        )
    except SpecError as err:
        _write(item, run, previous, dataclasses.replace(decision, checkpoint=None), Workload(), digest)
        run.say(f"[red]✗ {item}: {escape(str(err))}[/]")
        run.failed.add(item.key)
        return None


def _adapter_outcomes(
    run: Run, item: Item, md: ModelDeployment, previous: ModelDeploymentStatus, base_uri: str
) -> list[adapters.AdapterOutcome]:
    """Each adapter's promotion, from its own FineTuneJob and Evaluation in this run."""
    sources = []
    for index, spec in enumerate(md.spec.adapters):
        ev_ref = spec.promotion.evaluation
        evaluation = run.get_as((item.namespace, c.EVALUATION, ev_ref.name), Evaluation) if ev_ref else None
        job_name = spec.fine_tune_job.name if spec.fine_tune_job else None
        if job_name is None and isinstance(evaluation, Evaluation) and evaluation.spec.model.fine_tune_job:
            job_name = evaluation.spec.model.fine_tune_job.name
        job = run.get_as((item.namespace, c.FINETUNEJOB, job_name), FineTuneJob) if job_name else None
        sources.append(
            adapters.AdapterSource(
                index,
                spec,
                job if isinstance(job, FineTuneJob) else None,
                evaluation if isinstance(evaluation, Evaluation) else None,
            )
        )
    return adapters.decide_adapters(with_status(md, previous), sources, base_uri, now_iso())


def _load_adapters(run: Run, item: Item, rdir: Path, port: int, outcomes: list[adapters.AdapterOutcome]) -> bool:
    """One round of the pod's sidecar: the server resolves each adapter's URI with its own storage map."""
    wanted = {o.name: o.served_uri for o in outcomes if o.served_uri}
    for o in outcomes:
        if o.error:
            run.say(f"[yellow]! {item}: {escape(o.error)}[/]")
    file = rdir / ADAPTERS_FILE
    file.write_text(json.dumps({"adapters": [{"name": n, "path": p} for n, p in sorted(wanted.items())]}, indent=2))
    log = rdir / "adapters-sync.log"
    argv = [sys.executable, "-m", "kubetune_trainer", "serve-adapters-sync", "--adapters", str(file)]
    argv += ["--server", f"http://127.0.0.1:{port}", "--once"]
    with log.open("ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=600, check=False)
    if done.returncode != 0:
        run.say(f"[red]✗ {item}: the adapters could not be loaded; see {log}[/]")
        run.failed.add(item.key)
        return False
    for name, uri in sorted(wanted.items()):
        run.say(f"  adapter [bold]{escape(name)}[/]: {escape(uri)} (model: {escape(name)})")
    return True


def mark_stopped(run: Run, md: ModelDeployment) -> None:
    """The saved status of a deployment whose local server has stopped: not Ready, no endpoint."""
    key = key_of(md)
    current = run.resources.get(key)
    if not isinstance(current, ModelDeployment) or current.status is None:
        return
    message = f"{current.status.served_checkpoint} was served until `kubetune run` stopped"
    patch = md_status.stopped_status(current, message, now_iso())
    status = ModelDeploymentStatus.model_validate(merge_patch(current.status.to_k8s(), patch))
    run.runs.save(with_status(md, status), run.digests.get(key, ""))


def serve_until_interrupted(run: Run) -> int:
    """Keep the servers up, with a curl line for each, until Ctrl-C (EXIT_OK) or one of them stops (EXIT_FAILED)."""
    for md, _ in run.servers:
        served = run.get_as(key_of(md), ModelDeployment)
        endpoint = served.status.endpoint if served and served.status else None
        if endpoint is None:  # it failed (said above): no endpoint to offer
            continue
        run.say(f"Serving [bold]{md.metadata.name}[/] at {endpoint}  (Ctrl-C to stop)")
        sample = run.served.get(key_of(md))
        messages = sample.messages if sample else [{"role": "user", "content": "Hello!"}]
        body = json.dumps({"model": md.spec.served_model_name or md.metadata.name, "messages": messages})
        run.say(
            f"  try: curl -s {endpoint}/chat/completions -H 'Content-Type: application/json' -d {shlex.quote(body)}"
        )
    try:
        while True:
            for md, child in run.servers:
                if child.poll() is not None:
                    run.say(f"[red]the server of {md.metadata.name} stopped; last lines:[/]\n{escape(child.tail())}")
                    return c.EXIT_FAILED
            time.sleep(1)
    except KeyboardInterrupt:
        run.say("Stopping the server(s).")
        return c.EXIT_OK
