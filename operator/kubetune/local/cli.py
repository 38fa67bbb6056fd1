"""`kubetune run PATH`: the FineTuneJobs, Evaluations and ModelDeployments of PATH, on this machine.

Same run configs and trainer code as a pod: the run config is built by `kubetune.builders`, written to
the runs folder and handed to `python -m kubetune_trainer train|evaluate|serve` as a child process
(`kubetune.local.executors`, one per kind). `pvc://CLAIM/PATH` means `RUNS/pvc/CLAIM/PATH`; relative
paths are relative to the manifest.

Exit status (kubetune.constants): EXIT_OK everything succeeded (and a deployment served), EXIT_FAILED
something failed or did not pass preflight, EXIT_USAGE usage error, EXIT_INTERRUPTED interrupted (run
again to resume).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from kubetune import constants as c
from kubetune.api import Evaluation, FineTuneJob, ModelDeployment
from kubetune.builders.names import job_output_uri
from kubetune.local import plan as planning
from kubetune.local import preflight
from kubetune.local import report as run_report
from kubetune.local.context import Run, number_generation
from kubetune.local.events import LossCurve
from kubetune.local.executors import EXECUTORS
from kubetune.local.executors.modeldeployment import mark_stopped, serve_until_interrupted
from kubetune.local.signals import Interrupted, sigterm_interrupts
from kubetune.local.state import RunsDir, RunsDirError, outside_paths
from kubetune.local.summary import print_summary


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
            out = runs.storage(it.base_dir, it.namespace).local_path(job_output_uri(it.resource))
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
        return c.EXIT_FAILED
    outside = outside_paths(items, runs)
    if outside:
        for line in outside:
            console.print(Text("error: ", style="red") + Text(line), highlight=False, soft_wrap=True)
        console.print(f"[red]{len(outside)} problem(s); nothing was started or removed.[/]")
        return c.EXIT_FAILED

    found = preflight.check(items, runs)
    for note in found.notes:
        console.print(f"note: {note}", highlight=False)
    if found.errors:
        for e in found.errors:
            console.print(Text("error: ", style="red") + Text(e), highlight=False, soft_wrap=True)
        console.print(f"[red]{len(found.errors)} problem(s); nothing was started.[/]")
        return c.EXIT_FAILED
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
    for it in items:
        number_generation(it.resource, runs.load(it.key)[0])
    with sigterm_interrupts():
        try:
            for item in items:
                blocked = [d for d in planning.dependencies(item.resource) if d.key in run.failed]
                if blocked:
                    console.print(
                        f"[red]✗ {item}: skipped; {blocked[0].key[1]} {blocked[0].key[2]} failed[/]", highlight=False
                    )
                    run.failed.add(item.key)
                    continue
                EXECUTORS[item.kind](item, run)
            html = _report(items, run)
            print_summary(console, items, run.resources, run.served, html)
            if run.servers and not run.no_wait:
                return serve_until_interrupted(run)
            return c.EXIT_FAILED if run.failed else c.EXIT_OK
        except (Interrupted, KeyboardInterrupt):
            console.print("[yellow]Interrupted.[/] Run the same command again to resume.")
            return c.EXIT_INTERRUPTED
        finally:
            for md, child in run.servers:
                child.stop(grace=10)
                mark_stopped(run, md)


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
