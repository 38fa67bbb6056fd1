"""The chart's PrometheusRule, rendered by Helm and checked by the real `promtool` (Debian's, via
hack/prometheus/setup.sh): it parses, and each alert fires on bad input series and not on good ones."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import Render, by_kind

from prometheus_tools import binary, unknown_selections

BUDGETS = {"default": 100, "namespaces": {"team-a": 10}}
RULES_ON = {"enabled": True, "requireCrd": False, "gpuHoursBudget": BUDGETS}


def rule_groups(render: Render, **rules: Any) -> dict[str, Any]:
    (rule,) = by_kind(render({"prometheus": {"rules": rules}}), "PrometheusRule")
    return rule["spec"]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_rules_are_off_by_default_and_need_the_crd(render):
    assert by_kind(render(), "PrometheusRule") == []
    # enabled, but Helm sees no monitoring.coreos.com/v1 PrometheusRule (helm template asks no cluster)
    assert by_kind(render({"prometheus": {"rules": {"enabled": True}}}), "PrometheusRule") == []


def test_rendered_rules_pass_promtool_check_and_select_only_our_metrics(render, tmp_path):
    spec = rule_groups(render, **RULES_ON)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    exprs = [rule["expr"] for group in spec["groups"] for rule in group["rules"]]
    assert [e for e in exprs if unknown_selections(e)] == []
    alerts = {rule["alert"] for group in spec["groups"] for rule in group["rules"] if "alert" in rule}
    assert alerts == {
        "KubetuneFineTuneJobFailed",
        "KubetuneFineTuneJobStalled",
        "KubetuneFineTuneJobNotStarted",
        "KubetuneEvaluationFailedCriteria",
        "KubetuneServingErrorRate",
        "KubetuneGPUHoursOverBudget",
    }


def test_the_gpu_budget_window_fits_prometheus_default_retention(render):
    """Prometheus keeps 15 days by default: a longer window would undercount without a word."""
    spec = rule_groups(render, **RULES_ON)
    (budget,) = [r for g in spec["groups"] for r in g["rules"] if r.get("alert") == "KubetuneGPUHoursOverBudget"]
    assert "kubetune_gpu_seconds_total[7d]" in budget["expr"]
    values = (Path(__file__).parents[3] / "helm" / "kubetune" / "values.yaml").read_text()
    assert "30d needs a retention of 30d or more" in values


def test_no_budget_alert_without_a_budget(render):
    spec = rule_groups(render, enabled=True, requireCrd=False)
    assert "KubetuneGPUHoursOverBudget" not in yaml.safe_dump(spec)


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    selector = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


Expected = dict[str, str] | tuple[dict[str, str], dict[str, str]]


def fired(alertname: str, at: str, *expected: Expected) -> dict[str, Any]:
    """promtool's check that exactly `expected` alerts fire at `at`: each by its labels, or (labels, annotations).
    An alert whose annotations no test gives has them dropped from the rules of that test."""
    alerts = [
        {"exp_labels": e[0], "exp_annotations": e[1]} if isinstance(e, tuple) else {"exp_labels": e} for e in expected
    ]
    return {"eval_time": at, "alertname": alertname, "exp_alerts": alerts}


def without_unchecked_annotations(spec: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    tests = case["alert_rule_test"]
    checked = {t["alertname"] for t in tests if any("exp_annotations" in a for a in t["exp_alerts"])}
    for group in spec["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") not in checked:
                rule.pop("annotations", None)
    return spec


def budget_annotations(namespace: str, hours: int) -> dict[str, str]:
    return {
        "summary": f"Namespace {namespace} used {hours} GPU-hours in 7d, over its budget",
        "description": "Its FineTuneJobs trained longer than the budget in the chart's prometheus.rules.gpuHoursBudget"
        f" allows (kubectl -n {namespace} get finetunejobs).",
    }


PHASE = "kubetune_finetunejob_status_phase"
PROGRESS = "kubetune_training_progress_ratio"
REQUESTS = "kubetune_serve_requests_total"

TESTS: list[dict[str, Any]] = [
    {  # a failed job alerts; a succeeded one does not
        "interval": "1m",
        "input_series": [
            series(PHASE, "1x10", resource_namespace="team-a", finetunejob="bad", phase="Failed"),
            series(PHASE, "1x10", resource_namespace="team-a", finetunejob="good", phase="Succeeded"),
        ],
        "alert_rule_test": [
            fired(
                "KubetuneFineTuneJobFailed",
                "5m",
                (
                    {"severity": "warning", "resource_namespace": "team-a", "finetunejob": "bad", "phase": "Failed"},
                    {
                        "summary": "FineTuneJob team-a/bad failed",
                        "description": "kubectl -n team-a describe finetunejob bad shows the reason"
                        " (its Failed condition and Events).",
                    },
                ),
            )
        ],
    },
    {  # stalledMinutes 30: progress flat since minute 3 -> stalled from minute 33; moving, new or queued: no
        "interval": "1m",
        "input_series": [
            series(PHASE, "1x70", resource_namespace="t", finetunejob="stuck", phase="Running"),
            series(PROGRESS, "0.1 0.2 0.3 0.3x67", resource_namespace="t", finetunejob="stuck"),
            series(PHASE, "1x70", resource_namespace="t", finetunejob="moving", phase="Running"),
            series(PROGRESS, "0+0.01x70", resource_namespace="t", finetunejob="moving"),
            series(PHASE, "_x50 1x20", resource_namespace="t", finetunejob="new", phase="Running"),
            series(PROGRESS, "_x50 0.1x20", resource_namespace="t", finetunejob="new"),
            series(PHASE, "1x70", resource_namespace="t", finetunejob="waiting", phase="Queued"),
        ],
        "alert_rule_test": [
            fired("KubetuneFineTuneJobStalled", "20m"),
            fired(
                "KubetuneFineTuneJobStalled",
                "60m",
                {"severity": "warning", "resource_namespace": "t", "finetunejob": "stuck", "phase": "Running"},
            ),
        ],
    },
    {  # pendingMinutes 30: Pending (a kept PVC of the same name) or Validating for 40 minutes -> alerts from minute
        # 30; Pending for 20 minutes then Running, Queued (Kueue's wait) or Running all along: no
        "interval": "1m",
        "input_series": [
            series(PHASE, "1x40", resource_namespace="t", finetunejob="blocked", phase="Pending"),
            series(PHASE, "1x40", resource_namespace="t", finetunejob="checking", phase="Validating"),
            series(PHASE, "1x20 _x20", resource_namespace="t", finetunejob="started", phase="Pending"),
            series(PHASE, "_x20 1x20", resource_namespace="t", finetunejob="started", phase="Running"),
            series(PHASE, "1x40", resource_namespace="t", finetunejob="queued", phase="Queued"),
            series(PHASE, "1x40", resource_namespace="t", finetunejob="running", phase="Running"),
        ],
        "alert_rule_test": [
            fired("KubetuneFineTuneJobNotStarted", "25m"),
            fired(
                "KubetuneFineTuneJobNotStarted",
                "35m",
                (
                    {"severity": "warning", "resource_namespace": "t", "finetunejob": "blocked", "phase": "Pending"},
                    {
                        "summary": "FineTuneJob t/blocked is still Pending after 30 minutes",
                        "description": "kubectl -n t describe finetunejob blocked shows what it waits for"
                        " (its Stalled condition and Events).",
                    },
                ),
                (
                    {
                        "severity": "warning",
                        "resource_namespace": "t",
                        "finetunejob": "checking",
                        "phase": "Validating",
                    },
                    {
                        "summary": "FineTuneJob t/checking is still Validating after 30 minutes",
                        "description": "kubectl -n t describe finetunejob checking shows what it waits for"
                        " (its Stalled condition and Events).",
                    },
                ),
            ),
        ],
    },
    {  # an Evaluation whose models passed none of its criteria alerts; a passed or undecided one does not
        "interval": "1m",
        "input_series": [
            series("kubetune_evaluation_passed", "0x10", resource_namespace="t", evaluation="bad"),
            series("kubetune_evaluation_passed", "1x10", resource_namespace="t", evaluation="good"),
        ],
        "alert_rule_test": [
            fired(
                "KubetuneEvaluationFailedCriteria",
                "5m",
                {"severity": "warning", "resource_namespace": "t", "evaluation": "bad"},
            )
        ],
    },
    {  # 20 of 120 requests a minute fail (17%) for 20 minutes: alerts after 5 minutes; 1 of 101 (1%): no
        "interval": "1m",
        "input_series": [
            series(REQUESTS, "0+100x30", namespace="t", job="bad", route="/v1/chat/completions", status="200"),
            series(REQUESTS, "0+20x30", namespace="t", job="bad", route="/v1/chat/completions", status="500"),
            series(REQUESTS, "0+100x30", namespace="t", job="good", route="/v1/chat/completions", status="200"),
            series(REQUESTS, "0+1x30", namespace="t", job="good", route="/v1/chat/completions", status="503"),
        ],
        "alert_rule_test": [
            fired("KubetuneServingErrorRate", "4m"),  # pending: not yet 5 minutes over
            fired("KubetuneServingErrorRate", "20m", {"severity": "critical", "namespace": "t", "job": "bad"}),
        ],
    },
    {  # budgets: team-a 10 h, others 100 h; one GPU-hour a minute for 20 minutes: team-a over, team-b not;
        # ten a minute: team-c over the default
        "interval": "1m",
        "input_series": [
            series("kubetune_gpu_seconds_total", "0+3600x20", resource_namespace="team-a"),
            series("kubetune_gpu_seconds_total", "0+3600x20", resource_namespace="team-b"),
            series("kubetune_gpu_seconds_total", "0+36000x20", resource_namespace="team-c"),
        ],
        "alert_rule_test": [
            fired("KubetuneGPUHoursOverBudget", "5m"),  # team-a 5 h of 10, team-c 50 h of 100
            fired(
                "KubetuneGPUHoursOverBudget",
                "20m",
                ({"severity": "warning", "resource_namespace": "team-a"}, budget_annotations("team-a", 20)),
                ({"severity": "warning", "resource_namespace": "team-c"}, budget_annotations("team-c", 200)),
            ),
        ],
    },
]


@pytest.mark.parametrize("case", TESTS, ids=lambda case: case["alert_rule_test"][-1]["alertname"])
def test_each_alert_fires_on_bad_series_only(render, tmp_path, case):
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump(without_unchecked_annotations(rule_groups(render, **RULES_ON), case))
    )
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [case]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    tested = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
