"""The run report: `runs/report.html` with the loss curves (also written as PNGs beside it), the
baseline-versus-fine-tuned table of every Evaluation, and what each ModelDeployment served."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kubetune.api import Evaluation, FineTuneJob, ModelDeployment
from kubetune.api.evaluation import LOWER_IS_BETTER
from kubetune.local.events import LossCurve


@dataclass
class Served:
    """What a ModelDeployment answered when `kubetune run` sent it one request."""

    question: str
    answer: str
    expected: str | None = None
    messages: list[dict] = field(default_factory=list)  # the request as sent (for a copy-paste curl)


@dataclass
class RunReport:
    jobs: list[tuple[FineTuneJob, LossCurve]] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    deployments: list[tuple[ModelDeployment, Served | None]] = field(default_factory=list)


def fmt_metric(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "latency":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    if metric == "prompt_tokens":
        return f"{value:.0f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def comparison(evaluation: Evaluation, *, html_labels: bool = True) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of metric by model: baseline first, then every scored checkpoint; the best marked."""
    st = evaluation.status
    if st is None:
        return [], []
    models = [r.model + (" *" if r.model == st.best else "") for r in st.results]
    header = ["metric", "baseline", *models]
    rows = []
    for metric in evaluation.spec.metrics:
        base = st.baseline.metrics.get(metric) if st.baseline else None
        row = [
            metric + (" (lower is better)" if metric in LOWER_IS_BETTER and html_labels else ""),
            fmt_metric(metric, base),
        ]
        row += [fmt_metric(metric, r.metrics.get(metric)) for r in st.results]
        rows.append(row)
    rows.append(["passed", "-", *["yes" if r.passed else "no" for r in st.results]])
    return header, rows


def plot_loss(curve: LossCurve, title: str, path: Path) -> Path | None:
    """A PNG of train and eval loss by step; None when there is nothing to plot or no matplotlib."""
    if not curve:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for which, style in (("train", "-"), ("eval", "o-")):
        steps, values = curve.points(which)
        if steps:
            ax.plot(steps, values, style, label=f"{which} loss", markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if all(v > 0 for v in [*curve.train.values(), *curve.eval.values()]):
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}code,pre{background:#f6f6f6;padding:.1rem .3rem}
.pass{color:#060}.fail{color:#a00}img{max-width:100%}
"""


def write(report: RunReport, out_dir: Path) -> Path:
    """Write report.html (and the loss PNGs) into `out_dir`; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>kubetune run report</h1><p>{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>"]
    for job, curve in report.jobs:
        st = job.status
        name = job.metadata.name
        parts.append(f"<h2>FineTuneJob {html.escape(name)}</h2>")
        if st:
            facts = [
                ("phase", st.phase or "-"),
                ("steps", f"{st.progress.step}/{st.progress.total_steps}" if st.progress else "-"),
                ("train loss", fmt_metric("loss", st.metrics.get("trainLoss"))),
                ("eval loss", fmt_metric("loss", st.metrics.get("evalLoss"))),
                ("best checkpoint", st.best_checkpoint or "-"),
                ("output", st.output.uri if st.output and st.output.uri else "-"),
            ]
            parts.append(_table(["", ""], [[k, v] for k, v in facts]))
            if st.message and st.phase != "Succeeded":
                parts.append(f"<pre>{html.escape(st.message)}</pre>")
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", f"loss-{job.metadata.namespace or 'default'}-{name}")  # one file name
        png = plot_loss(curve, f"{name}: loss", out_dir / f"{stem}.png")
        if png:
            data = base64.b64encode(png.read_bytes()).decode()
            parts.append(f'<p><img alt="loss curves of {html.escape(name)}" src="data:image/png;base64,{data}"></p>')
            parts.append(f'<p>Also as <a href="{png.name}">{png.name}</a>.</p>')
    for ev in report.evaluations:
        st = ev.status
        parts.append(f"<h2>Evaluation {html.escape(ev.metadata.name)}</h2>")
        if st is None or not st.results:
            parts.append(f"<p>No results ({html.escape((st.message if st else None) or 'not run')}).</p>")
            continue
        verdict = "passed" if st.passed else "did not pass"
        cls = "pass" if st.passed else "fail"
        parts.append(f'<p class="{cls}">Best: <b>{html.escape(st.best or "-")}</b>; {verdict}.</p>')
        parts.append(_table(*comparison(ev)))
        criteria = [f"{p.metric} {_criterion(p)}" for p in ev.spec.pass_criteria]
        if criteria:
            parts.append("<p>Pass criteria: " + html.escape("; ".join(criteria)) + "</p>")
        if st.report and st.report.uri:
            uri = html.escape(st.report.uri)
            if uri.startswith("pvc://"):  # the runs folder holds pvc://CLAIM/PATH at pvc/CLAIM/PATH, beside this page
                uri = f'<a href="pvc/{uri.removeprefix("pvc://")}">{uri}</a>'
            parts.append(f"<p>Per-example report: {uri}</p>")
    for md, served in report.deployments:
        st = md.status
        parts.append(f"<h2>ModelDeployment {html.escape(md.metadata.name)}</h2>")
        facts = [
            ("phase", (st.phase if st else None) or "-"),
            ("checkpoint", (st.served_checkpoint if st else None) or "-"),
            ("endpoint", (st.endpoint if st else None) or "-"),
        ]
        if st and st.message:
            facts.append(("message", st.message))
        parts.append(_table(["", ""], [[k, v] for k, v in facts]))
        if served:
            rows = [["request", served.question], ["answer", served.answer]]
            if served.expected is not None:
                rows.append(["expected", served.expected])
            parts.append(_table(["", ""], rows))
    page = f"<!doctype html><meta charset='utf-8'><title>kubetune run</title><style>{STYLE}</style>{''.join(parts)}"
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _criterion(p) -> str:
    bits = []
    if p.min is not None:
        bits.append(f">= {p.min}")
    if p.max is not None:
        bits.append(f"<= {p.max}")
    if p.min_improvement is not None:
        bits.append(f"improves on the baseline by >= {p.min_improvement}")
    return ", ".join(bits)
