"""The evaluation report: one self-contained HTML page (inline CSS, plots as inline PNG).

It shows the comparison table (baseline vs every model, deltas, pass/fail and why), a bar chart
per metric, the prompt-token comparison, latency percentiles and the first examples side by side.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any

from kubetune.api.evaluation import LOWER_IS_BETTER

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
th{background:#f6f8fa}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.better{color:#1a7f37}.worse{color:#cf222e}.delta{font-size:.8rem;display:block}
.best{background:#dafbe1}
.examples td{text-align:left;white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:.8rem;max-width:28rem}
.plots img{max-width:380px;margin:.3rem;border:1px solid #eee}
.summary{font-size:1.05rem}.muted{color:#656d76;font-size:.85rem}
"""


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.4f}".rstrip("0").rstrip(".") if value != 0 else "0"


def _delta_cell(metric: str, delta: float | None) -> str:
    if delta is None:
        return ""
    better = (delta < 0) if metric in LOWER_IS_BETTER else (delta > 0)
    cls = "better" if better and delta != 0 else ("worse" if delta != 0 else "")
    return f'<span class="delta {cls}">{"+" if delta >= 0 else ""}{_fmt(delta)}</span>'


def _bar_chart(metric: str, labels: list[str], values: list[float]) -> str:
    """A bar chart as a base64 PNG data URI (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 2.6), dpi=90)
    colors = ["#8c959f" if i == 0 and labels[0] == "baseline" else "#0969da" for i in range(len(labels))]
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), [lab[:18] for lab in labels], rotation=30, ha="right", fontsize=7)
    direction = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
    ax.set_title(f"{metric} ({direction})", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    if results.get("baseline"):
        rows.append((f"baseline ({results['baseline']['model']})", results["baseline"]))
    rows += [(r["model"], r) for r in results["results"]]
    return rows


def render(results: dict[str, Any]) -> str:
    """The HTML page for a results dict as the runner writes it to results.json."""
    metrics: list[str] = results["metrics"]
    rows = _rows(results)
    best = results.get("best")
    verdict = "passed" if results.get("passed") else "did not pass"
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Evaluation {escape(results['evaluation'])}</title><style>{CSS}</style></head><body>",
        f"<h1>Evaluation <code>{escape(results['evaluation'])}</code></h1>",
        f'<p class=summary>The evaluation <span class="{"pass" if results.get("passed") else "fail"}">{verdict}</span>'
        + (f"; best model: <b>{escape(best)}</b> (by {escape(results['selectBy'])})" if best else "")
        + f". {results['numExamples']} examples from <code>{escape(results['dataset'])}</code>.</p>",
    ]
    if results.get("passCriteria"):
        crit = ", ".join(escape(_criterion_text(c)) for c in results["passCriteria"])
        parts.append(f"<p>Pass criteria (all must hold): {crit}</p>")

    # Comparison table.
    parts.append("<h2>Comparison</h2><table><tr><th>model</th>")
    parts += [f"<th>{escape(m)}{' ↓' if m in LOWER_IS_BETTER else ''}</th>" for m in metrics]
    parts.append("<th>result</th></tr>")
    for label, row in rows:
        is_target = row is not results.get("baseline")
        cls = ' class="best"' if is_target and row["model"] == best else ""
        parts.append(f"<tr{cls}><td>{escape(label)}</td>")
        for m in metrics:
            delta = row.get("deltas", {}).get(m) if is_target else None
            parts.append(f"<td>{_fmt(row['metrics'].get(m))}{_delta_cell(m, delta)}</td>")
        if is_target:
            verdict_cell = (
                '<span class="pass">pass</span>'
                if row["passed"]
                else '<span class="fail">fail</span><br><span class="muted">'
                + "<br>".join(escape(f) for f in row["failures"])
                + "</span>"
            )
        else:
            verdict_cell = '<span class="muted">baseline</span>'
        parts.append(f'<td style="text-align:left">{verdict_cell}</td></tr>')
    parts.append("</table><p class=muted>↓ lower is better. Deltas are model minus baseline.</p>")

    parts += _judge_parts(rows, results.get("baseline"), (results.get("safety") or {}).get("judge") or {})

    if results.get("safety"):
        parts += _safety_parts(results, rows)

    # Prompt tokens and latency.
    if any("prompt_tokens" in row["metrics"] for _, row in rows) or any(row.get("latency") for _, row in rows):
        parts.append("<h2>Prompt size and latency</h2><table><tr><th>model</th><th>prompt tokens / request</th>")
        parts.append("<th>latency mean (s)</th><th>p50</th><th>p95</th></tr>")
        base_tokens = (results.get("baseline") or {}).get("metrics", {}).get("prompt_tokens")
        for label, row in rows:
            tokens = row["metrics"].get("prompt_tokens")
            saving = ""
            if tokens is not None and base_tokens and row is not results.get("baseline"):
                saving = f' <span class="muted">({100 * (1 - tokens / base_tokens):.0f}% fewer than baseline)</span>'
            lat = row.get("latency") or {}
            parts.append(
                f"<tr><td>{escape(label)}</td><td>{_fmt(tokens)}{saving}</td><td>{_fmt(lat.get('mean'))}</td>"
                f"<td>{_fmt(lat.get('p50'))}</td><td>{_fmt(lat.get('p95'))}</td></tr>"
            )
        parts.append("</table>")

    # Plots.
    parts.append('<h2>Metrics</h2><div class="plots">')
    for m in metrics:
        labels = [_short(label, row, results) for label, row in rows if m in row["metrics"]]
        values = [row["metrics"][m] for _, row in rows if m in row["metrics"]]
        if values:
            parts.append(f'<img alt="{escape(m)}" src="{_bar_chart(m, labels, values)}">')
    parts.append("</div>")

    # Examples.
    examples = results.get("examples") or []
    if examples:
        names = [label for label, _ in rows]
        parts.append(f"<h2>Examples (first {len(examples)})</h2><table class=examples><tr><th>prompt</th>")
        parts.append("<th>reference</th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>")
        for ex in examples:
            parts.append(f"<tr><td>{escape(ex['prompt'])}</td><td>{escape(ex['reference'])}</td>")
            for _, row in rows:
                text = (
                    ex.get("baseline", "")
                    if row is results.get("baseline")
                    else ex["predictions"].get(row["model"], "")
                )
                parts.append(f"<td>{escape(text)}</td>")
            parts.append("</tr>")
        parts.append("</table>")
    parts.append(f"<p class=muted>Generated by kubetune at {escape(results.get('createdAt', ''))}.</p></body></html>")
    return "".join(parts)


JUDGE_COLUMNS = (
    ("requests", "requests"),
    ("judged", "judged"),
    ("cache_hits", "cache hits"),
    ("parse_failures", "parse failures"),
    ("timeouts", "timeouts"),
    ("rate_limited", "rate limited (429)"),
    ("server_errors", "server errors (5xx)"),
    ("errors", "other errors"),
)


def _judge_parts(
    rows: list[tuple[str, dict[str, Any]]], baseline: dict[str, Any] | None, safety_judge: dict[str, Any]
) -> list[str]:
    """What the judge did per model: the judge metric's counters, and the safety judge's when it scored safety."""
    table = [(label, "judge metric", row["judge"]) for label, row in rows if row.get("judge")]
    for label, row in rows:
        key = "baseline" if row is baseline else row["model"]
        if safety_judge.get(key):
            table.append((label, "safety judge", safety_judge[key]))
    if not table:
        return []
    parts = ["<h2>Judge</h2><table><tr><th>model</th><th>for</th>"]
    parts += [f"<th>{escape(title)}</th>" for _, title in JUDGE_COLUMNS]
    parts.append("</tr>")
    for label, what, counters in table:
        parts.append(f"<tr><td>{escape(label)}</td><td>{what}</td>")
        parts += [f"<td>{int(counters.get(key, 0))}</td>" for key, _ in JUDGE_COLUMNS]
        parts.append("</tr>")
    parts.append(
        "</table><p class=muted>An answer without a verdict (parse failure, timeout, error) scores 0 or is left "
        "out (onFailure); for safety it is left out of the rates.</p>"
    )
    return parts


SAFETY_COLUMNS = (
    ("harmfulRefusalRate", "harmful prompts refused", True),
    ("harmfulContentRate", "harmful prompts answered with flagged content", False),
    ("benignOverRefusalRate", "benign prompts refused (over-refusal)", False),
)
SAFETY_EXAMPLES = 20
SCORER_CAVEAT = {
    "keyword": "A keyword scorer detects refusal phrases; it misses partial compliance, jailbreak-style prompts "
    "and subtle harm. ",
    "judge": "A judge model labelled each answer refused, complied-harmful or complied-benign; its verdicts are "
    "only as good as that judge, and answers it gave no label are left out of the rates (see the Judge table). ",
}


def _safety_parts(results: dict[str, Any], rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The safety section: rates per model against the thresholds, then answers with the scorer's verdicts."""
    section = results["safety"]
    thresholds = section.get("thresholds") or {}
    parts = [
        "<h2>Safety</h2>",
        f"<p>{section['numPrompts']} red-team prompts ({section['numHarmful']} harmful, "
        f"{section['numPrompts'] - section['numHarmful']} benign look-alikes) from "
        f"<code>{escape(str(section['prompts']))}</code>, scored by the <b>{escape(section['scorer'])}</b> scorer. "
        f'<span class="muted">{SCORER_CAVEAT.get(section["scorer"], "")}The default set is small and English-only: '
        "a smoke test, not a certification (docs/safety.md).</span></p>",
        "<table><tr><th>model</th>",
    ]
    for key, what, higher in SAFETY_COLUMNS:
        bound = thresholds.get(key) or {}
        limit = " ".join(f"{'≥' if k == 'min' else '≤'} {v}" for k, v in bound.items())
        arrow = "" if higher else " ↓"
        parts.append(f'<th title="{escape(what)}">{key}{arrow}<br><span class="muted">{escape(limit)}</span></th>')
    parts.append("<th>safety gate</th></tr>")
    for label, row in rows:
        safety = row.get("safety") or {}
        if not safety:
            continue
        parts.append(f"<tr><td>{escape(label)}</td>")
        parts += [f"<td>{_fmt(safety.get('metrics', {}).get(key))}</td>" for key, _, _ in SAFETY_COLUMNS]
        if row is results.get("baseline"):
            verdict = '<span class="muted">baseline (not gated)</span>'
        elif safety.get("passed", True):
            verdict = '<span class="pass">pass</span>'
        else:
            verdict = '<span class="fail">fail</span><br><span class="muted">' + "<br>".join(
                escape(f) for f in safety.get("failures", [])
            )
            verdict += "</span>"
        parts.append(f'<td style="text-align:left">{verdict}</td></tr>')
    parts.append("</table>")
    examples = section.get("examples") or []
    if examples:
        names = list(examples[0]["answers"])
        parts.append(f"<h3>Safety answers (first {min(len(examples), SAFETY_EXAMPLES)} of {len(examples)})</h3>")
        parts.append("<table class=examples><tr><th>prompt</th>")
        parts.append("".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>")
        for ex in examples[:SAFETY_EXAMPLES]:
            kind = "harmful" if ex["harmful"] else "benign"
            parts.append(f"<tr><td>[{kind}, {escape(ex['category'])}] {escape(ex['prompt'])}</td>")
            for n in names:
                answer = ex["answers"][n]
                verdict = "refused" if answer["refused"] else ("flagged" if answer["harmfulContent"] else "answered")
                parts.append(f'<td><span class="muted">{verdict}</span>\n{escape(answer["text"])}</td>')
            parts.append("</tr>")
        parts.append("</table>")
    return parts


def _short(label: str, row: dict[str, Any], results: dict[str, Any]) -> str:
    return "baseline" if row is results.get("baseline") else label


def _criterion_text(c: dict[str, Any]) -> str:
    bits = []
    if c.get("min") is not None:
        bits.append(f"≥ {c['min']}")
    if c.get("max") is not None:
        bits.append(f"≤ {c['max']}")
    if c.get("minImprovement") is not None:
        bits.append(f"improves on the baseline by ≥ {c['minImprovement']}")
    return f"{c['metric']} " + " and ".join(bits)
