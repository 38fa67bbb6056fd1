"""The chart's Grafana dashboard: a ConfigMap the sidecar loads, panels Grafana can lay out, and queries that parse
(promtool, on each expression as a recording rule) and select only series kubetune exports, by their label names."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import yaml
from chart_render import Render, by_kind

from prometheus_tools import binary, unknown_selections

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
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["namespace"]["definition"] == "label_values(kubetune_finetunejobs, resource_namespace)"


def test_every_query_parses_and_selects_what_kubetune_exports(render, tmp_path):
    dashboard = json.loads(dashboard_configmap(render)["data"]["kubetune.json"])
    queries = exprs(dashboard)
    assert {q: unknown_selections(q) for q in queries if unknown_selections(q)} == {}
    pattern = re.compile("|".join(re.escape(v) for v in sorted(VARIABLES, key=len, reverse=True)))
    rules = [
        {"record": f"dashboard:query_{i}", "expr": pattern.sub(lambda m: VARIABLES[m[0]], q)}
        for i, q in enumerate(queries)
    ]
    assert all("$" not in r["expr"] for r in rules), "a Grafana variable this test does not know"
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [binary("promtool"), "check", "rules", "queries.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
