"""The chart's serving engines: KEDA and PodMonitor rules follow their toggles, and the values reach the operator."""

from __future__ import annotations

from typing import Any

import pytest
from chart_render import Render, by_kind, one


def _rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r
        for role in by_kind(docs, "ClusterRole")
        if not role["metadata"]["name"].endswith(("-edit", "-view"))
        for r in role["rules"]
    ]


def _grants(rules: list[dict[str, Any]], group: str, resource: str) -> bool:
    return any(
        group in r.get("apiGroups", []) and resource in r.get("resources", []) and "create" in r["verbs"] for r in rules
    )


def test_keda_and_pod_monitor_follow_their_toggles_and_reach_the_operator(render: Render):
    pytest.importorskip("kopf", reason="the operator extra (kopf) is not installed")
    from kubetune.controllers.config import OperatorConfig

    for on in (True, False):
        values = {
            "serving": {
                "autoscaling": {"keda": on, "prometheusUrl": "http://prom.obs.svc:9090"},
                "podMonitor": {"enabled": on, "labels": {"release": "kps"}},
                "monitoringNamespaces": ["obs"],
            }
        }
        docs = render(values)
        rules = _rules(docs)
        assert _grants(rules, "keda.sh", "scaledobjects") is on
        assert _grants(rules, "monitoring.coreos.com", "podmonitors") is on
        assert _grants(rules, "networking.k8s.io", "networkpolicies")  # spec.networkPolicy needs no engine
        (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        cfg = OperatorConfig.from_env({e["name"]: e["value"] for e in container["env"] if "value" in e}).scaling
        assert (cfg.keda_allowed, cfg.pod_monitor_allowed) == (on, on)
        assert cfg.prometheus_url == "http://prom.obs.svc:9090"
        assert cfg.pod_monitor_labels == {"release": "kps"} and cfg.monitoring_namespaces == ("obs",)
