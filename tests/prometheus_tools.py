"""Prometheus and promtool for the tests (Debian's package, unpacked by hack/prometheus/setup.sh into
~/.cache/kubetune/prometheus; `make test` runs it first), and what the rules and dashboards may select: the metric
names and labels kubetune exports.

Without the binaries (no apt here) the tests that need them skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from kubetune import metrics  # noqa: F401  (registers the operator's metrics in REGISTRY)
from kubetune_trainer.serve.metrics import ServeMetrics

SETUP = Path(__file__).parents[1] / "hack" / "prometheus" / "setup.sh"
# Labels Prometheus gives every series of a scraped serving pod (Prometheus Operator's PodMonitor/ServiceMonitor).
TARGET_LABELS = frozenset({"namespace", "job", "instance", "pod", "service", "container", "endpoint"})


@functools.cache
def _bin_dir() -> Path | None:
    found = subprocess.run([str(SETUP)], capture_output=True, text=True, timeout=600, check=False)
    return Path(found.stdout.strip().splitlines()[-1]) if found.returncode == 0 and found.stdout.strip() else None


def binary(name: str) -> str:
    """The path of `prometheus` or `promtool`, installed first when missing; else skip (fail in CI)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = f"no {name}: {SETUP} could not install Debian's prometheus package (make test runs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return str(bin_dir / name)


def _labels_by_sample_name(registry: CollectorRegistry) -> dict[str, frozenset[str]]:
    """{sample name: its label names} of every metric in `registry` (_total, _bucket ... included)."""
    known: dict[str, frozenset[str]] = {}
    for name, collector in registry._names_to_collectors.items():
        labels = frozenset(getattr(collector, "_labelnames", ()))
        known[name] = labels | {"le"} if name.endswith("_bucket") else labels
    return known


def operator_metrics() -> dict[str, frozenset[str]]:
    return {k: v for k, v in _labels_by_sample_name(REGISTRY).items() if k.startswith("kubetune_")}


def serving_metrics() -> dict[str, frozenset[str]]:
    """The built-in server's metrics; a scrape adds the target labels (namespace, job ...)."""
    return {k: v | TARGET_LABELS for k, v in _labels_by_sample_name(ServeMetrics("m").registry).items()}


# vLLM's own metrics that docs/serving-autoscaling.md ("One metric vocabulary") maps to the built-in server's, as
# Prometheus stores them (a histogram as its _bucket, _count and _sum series), with the label vLLM gives them
# (model_name) and the scrape's target labels. vLLM is not installed here, so this list, not a registry, is what
# the dashboard may select of vLLM; test_grafana_dashboard checks that the docs map each of these names.
VLLM_HISTOGRAMS = ("vllm:e2e_request_latency_seconds", "vllm:time_to_first_token_seconds")
VLLM_GAUGES_AND_COUNTERS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
)


def vllm_metrics() -> dict[str, frozenset[str]]:
    labels = frozenset({"model_name"}) | TARGET_LABELS
    out = {name: labels for name in VLLM_GAUGES_AND_COUNTERS}
    for name in VLLM_HISTOGRAMS:
        out |= {f"{name}_bucket": labels | {"le"}, f"{name}_count": labels, f"{name}_sum": labels}
    return out


_SELECTOR = re.compile(r"(?<![\w:])(kubetune_[a-z0-9_]+|vllm:[a-z0-9_:]+)(?![\w:])(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names matched) of every kubetune_* and vllm:* series selector in a PromQL expression."""
    return [(m[1], set(_MATCHER.findall(m[2] or ""))) for m in _SELECTOR.finditer(expr)]


def unknown_selections(expr: str) -> list[str]:
    """What `expr` selects that neither kubetune nor (by the documented mapping) vLLM exports: unknown metric
    names, or labels a metric lacks."""
    known = operator_metrics() | serving_metrics() | vllm_metrics()
    wrong = []
    for name, labels in selectors(expr):
        if name not in known:
            wrong.append(f"{name}: no such metric")
        elif labels - known[name]:
            wrong.append(f"{name}: no label {sorted(labels - known[name])}")
    return wrong
