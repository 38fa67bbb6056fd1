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


_SELECTOR = re.compile(r"\b(kubetune_[a-z_]+)\b(?!:)(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names matched) of every kubetune_* series selector in a PromQL expression."""
    return [(m[1], set(_MATCHER.findall(m[2] or ""))) for m in _SELECTOR.finditer(expr)]


def unknown_selections(expr: str) -> list[str]:
    """What `expr` selects that kubetune does not export: unknown metric names, or labels a metric lacks."""
    known = operator_metrics() | serving_metrics()
    wrong = []
    for name, labels in selectors(expr):
        if name not in known:
            wrong.append(f"{name}: no such metric")
        elif labels - known[name]:
            wrong.append(f"{name}: no label {sorted(labels - known[name])}")
    return wrong
