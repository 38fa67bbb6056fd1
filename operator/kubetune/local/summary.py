"""The tables `kubetune run` prints at the end: training, baseline versus fine-tuned, serving."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kubetune import constants as c
from kubetune.api import Evaluation, FineTuneJob, ModelDeployment, Resource
from kubetune.local.plan import Item, Key
from kubetune.local.report import Served, comparison, fmt_metric

PHASE_STYLE = {c.Phase.SUCCEEDED: "green", c.Phase.READY: "green", c.Phase.FAILED: "red"}


def _phase(phase: str | None) -> str:
    phase = phase or "-"
    style = PHASE_STYLE.get(phase, "yellow")
    return f"[{style}]{phase}[/]"


def jobs_table(jobs: Sequence[FineTuneJob]) -> Table:
    t = Table(title="Training", title_justify="left")
    for col in ("FineTuneJob", "phase", "steps", "train loss", "eval loss", "best checkpoint"):
        t.add_column(col, justify="left" if col in ("FineTuneJob", "phase", "best checkpoint") else "right")
    for job in jobs:
        st = job.status
        if st is None:
            t.add_row(job.metadata.name, _phase(None), "-", "-", "-", "-")
            continue
        steps = f"{st.progress.step}/{st.progress.total_steps}" if st.progress and st.progress.step is not None else "-"
        t.add_row(
            job.metadata.name,
            _phase(st.phase),
            steps,
            fmt_metric("loss", st.metrics.get("trainLoss")),
            fmt_metric("loss", st.metrics.get("evalLoss")),
            st.best_checkpoint or "-",
        )
    return t


REWARD, GRADER_PREFIX = "reward", "rewards/"


def rewards_table(job: FineTuneJob) -> Table | None:
    """Reinforcement fine-tuning: the reward of every kept checkpoint, in total and by grader; the best starred.

    None when no checkpoint carries a reward (every other method).
    """
    st = job.status
    checkpoints = [cp for cp in (st.checkpoints if st else []) if REWARD in cp.metrics]
    if not checkpoints:
        return None
    graders: list[str] = []
    for cp in checkpoints:
        graders += [k for k in cp.metrics if k.startswith(GRADER_PREFIX) and k not in graders]
    t = Table(title=f"Rewards of {job.metadata.name} by checkpoint", title_justify="left")
    t.add_column("checkpoint")
    for col in ("step", REWARD, *(g.removeprefix(GRADER_PREFIX) for g in graders)):
        t.add_column(col, justify="right")
    for cp in checkpoints:
        best = st is not None and cp.name == st.best_checkpoint
        t.add_row(
            cp.name + (" *" if best else ""),
            "-" if cp.step is None else str(cp.step),
            *(fmt_metric(k, cp.metrics.get(k)) for k in (REWARD, *graders)),
            style="bold" if best else None,
        )
    selected = job.spec.checkpoints.select_by
    t.caption = f"* best by {selected.metric} ({selected.mode}); rewards averaged over the last logged steps"
    t.caption_justify = "left"
    return t


def evaluation_table(ev: Evaluation) -> Table:
    """Metrics by model, the baseline first; the best model starred; pass/fail underneath."""
    st = ev.status
    baseline = "baseline"
    if ev.spec.baseline.few_shot:
        baseline += f" ({ev.spec.baseline.few_shot}-shot)"
    t = Table(title=f"Evaluation {ev.metadata.name} on held-out data", title_justify="left")
    header, rows = comparison(ev, html_labels=False)
    if not header:
        t.add_column("status")
        t.add_row((st.message if st else None) or "not run")
        return t
    header[1] = baseline
    for i, col in enumerate(header):
        t.add_column(col, justify="left" if i == 0 else "right", style="bold" if col.endswith(" *") else None)
    for row in rows:
        if row[0] == "passed":
            row = [row[0], row[1], *[f"[green]{v}[/]" if v == "yes" else f"[red]{v}[/]" for v in row[2:]]]
        t.add_row(*row)
    if st:
        verdict = "[green]passed[/]" if st.passed else "[red]did not pass[/]"
        crit = "; ".join(
            f"{p.metric} "
            + ", ".join(
                b
                for b in (
                    f">= {p.min}" if p.min is not None else "",
                    f"<= {p.max}" if p.max is not None else "",
                    f"+{p.min_improvement} over baseline" if p.min_improvement is not None else "",
                )
                if b
            )
            for p in ev.spec.pass_criteria
        )
        t.caption = f"* best: {st.best or '-'} ({verdict})" + (f"; criteria: {crit}" if crit else "")
        t.caption_justify = "left"
    return t


def deployments_table(deployments: Sequence[ModelDeployment], served: Mapping[Key, Served]) -> Table:
    t = Table(title="Serving", title_justify="left")
    for col in ("ModelDeployment", "phase", "checkpoint", "endpoint / note"):
        t.add_column(col)
    for md in deployments:
        st = md.status
        note = (st.endpoint if st and st.phase == c.Phase.READY else (st.message if st else None)) or "-"
        t.add_row(
            md.metadata.name, _phase(st.phase if st else None), (st.served_checkpoint if st else None) or "-", note
        )
        answer = served.get((md.metadata.namespace or "default", md.kind, md.metadata.name))
        if answer:
            t.add_row("", "", "request", answer.question)
            t.add_row("", "", "answer", f"[bold]{answer.answer}[/]")
    return t


def print_summary(
    console: Console,
    items: Sequence[Item],
    resources: Mapping[Key, Resource],
    served: Mapping[Key, Served],
    report_path: Path | None,
) -> None:
    latest = [resources.get(it.key, it.resource) for it in items]
    jobs = [r for r in latest if isinstance(r, FineTuneJob)]
    evaluations = [r for r in latest if isinstance(r, Evaluation)]
    deployments = [r for r in latest if isinstance(r, ModelDeployment)]
    console.print()
    if jobs:
        console.print(jobs_table(jobs))
    for job in jobs:
        if (rewards := rewards_table(job)) is not None:
            console.print(rewards)
    for ev in evaluations:
        console.print(evaluation_table(ev))
    if deployments:
        console.print(deployments_table(deployments, served))
    if report_path:
        console.print(f"Report: {report_path}", highlight=False)
