"""The chart's Grafana dashboard: a ConfigMap the sidecar loads, panels Grafana can lay out, and queries that parse
(promtool, on each expression as a recording rule) and select only series kubetune exports, by their label names."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from chart_render import Render, by_kind

from prometheus_tools import VLLM_GAUGES_AND_COUNTERS, VLLM_HISTOGRAMS, binary, selectors, unknown_selections

# Grafana's variables, replaced by values of their kind so that promtool can parse the queries.
VARIABLES = {"$__rate_interval": "1m", "$__range": "6h", "$namespace": ".*"}


def dashboard_configmap(render: Render, **dashboards: Any) -> dict[str, Any]:
    docs = render({"grafana": {"dashboards": {"enabled": True, **dashboards}}})
    (configmap,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboards")]
    return configmap


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p["targets"]]


def test_dashboard_is_off_by_default_and_carries_the_sidecar_label(render):
    assert [d for d in by_kind(render(), "ConfigMap") if d["metadata"]["name"].endswith("-dashboards")] == []
    configmap = dashboard_configmap(render, annotations={"grafana_folder": "kubetune"})
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "kubetune"}
    assert list(configmap["data"]) == ["kubetune.json"]


def test_panels_are_laid_out_and_cover_what_a_platform_team_watches(render):
    dashboard = json.loads(dashboard_configmap(render)["data"]["kubetune.json"])
    assert dashboard["uid"] == "kubetune"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
    queried = " ".join(exprs(dashboard))
    for metric in (
        "kubetune_finetunejobs",
        "kubetune_training_progress_ratio",
        "kubetune_training_loss",
        "kubetune_gpu_seconds_total",
        "kubetune_evaluation_score",
        "kubetune_serve_request_duration_seconds_bucket",
        "kubetune_serve_requests_total",
    ):
        assert metric in queried
    table = next(p for p in panels(dashboard) if p["title"] == "Unfinished and failed jobs")
    assert {"Pending", "Validating", "Queued", "Running", "Suspended", "Failed"} <= set(
        re.findall(r"[A-Z][a-z]+", table["targets"][0]["expr"].split("phase=~")[1])
    )


def namespace_query(dashboard: dict[str, Any]) -> str:
    """The PromQL of the namespace variable (Grafana's query_result(...), its values taken by the regex)."""
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "namespace"]
    assert variable["query"]["query"] == variable["definition"]
    match = re.fullmatch(r"query_result\((.*)\)", variable["definition"])
    assert match and variable["regex"] == '/ns="([^"]+)"/', variable
    return match[1]


def test_namespaces_come_from_jobs_and_from_both_serving_runtimes(render):
    """A namespace that only serves (vLLM or the built-in server) can be picked, not only one that trains."""
    query = namespace_query(json.loads(dashboard_configmap(render)["data"]["kubetune.json"]))
    assert {name for name, _ in selectors(query)} == {
        "kubetune_finetunejobs",
        "kubetune_serve_requests_in_flight",
        "vllm:num_requests_running",
    }
    assert '"resource_namespace"' in query and '"namespace"' in query


def test_serving_panels_show_vllm_and_the_built_in_server(render):
    """Each serving panel sums both runtimes by the mapping of docs/serving-autoscaling.md; the 5xx share is the
    built-in server's only (vLLM's metrics count no HTTP status) and says so."""
    dashboard = json.loads(dashboard_configmap(render)["data"]["kubetune.json"])
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    serving_row = next(r for r in rows if r["title"].startswith("Serving"))
    next_row = min((r["gridPos"]["y"] for r in rows if r["gridPos"]["y"] > serving_row["gridPos"]["y"]), default=999)
    serving = [p for p in panels(dashboard) if serving_row["gridPos"]["y"] < p["gridPos"]["y"] < next_row]
    assert len(serving) == 6
    for panel in serving:
        metrics = {name for t in panel["targets"] for name, _ in selectors(t["expr"])}
        if "5xx" in panel["title"]:
            assert "built-in server" in panel["title"] and "vLLM" in panel["description"]
            continue
        for target in panel["targets"]:
            names = [name for name, _ in selectors(target["expr"])]
            assert any(n.startswith("kubetune_serve_") for n in names), (panel["title"], target["expr"])
            assert any(n.startswith("vllm:") for n in names), (panel["title"], target["expr"])
        assert all(m.startswith(("kubetune_serve_", "vllm:")) for m in metrics), panel["title"]


def test_the_vllm_names_the_dashboard_may_select_are_those_the_docs_map():
    docs = (Path(__file__).parents[3] / "docs" / "serving-autoscaling.md").read_text()
    mapping = docs.split("## One metric vocabulary", 1)[1].split("\n## ", 1)[0]
    for name in (*VLLM_HISTOGRAMS, *VLLM_GAUGES_AND_COUNTERS):
        assert f"`{name}`" in mapping or f"{name}|" in mapping or f'{name}"' in mapping, name


def test_every_query_parses_and_selects_what_kubetune_exports(render, tmp_path):
    dashboard = json.loads(dashboard_configmap(render)["data"]["kubetune.json"])
    queries = [*exprs(dashboard), namespace_query(dashboard)]
    assert {q: unknown_selections(q) for q in queries if unknown_selections(q)} == {}
    pattern = re.compile("|".join(re.escape(v) for v in sorted(VARIABLES, key=len, reverse=True)))
    rules = [
        {"record": f"dashboard:query_{i}", "expr": pattern.sub(lambda m: VARIABLES[m[0]], q)}
        for i, q in enumerate(queries)
    ]
    # ("$1" is label_replace's replacement, PromQL's own; Grafana leaves it as it is)
    assert not [r for r in rules if re.search(r"\$(?!1\b)", r["expr"])], "a Grafana variable this test does not know"
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [binary("promtool"), "check", "rules", "queries.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
