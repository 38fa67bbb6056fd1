"""Rendering the chart for the tests: with a `helm` binary on PATH, else with helm-python-sdk (Helm's own Go
SDK behind ctypes, installed from PyPI), else the render tests are skipped and say why."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "kubetune"
RELEASE, NAMESPACE = "kt", "kubetune-system"

Render = Callable[..., list[dict[str, Any]]]


class RenderError(Exception):
    """Helm refused to render: a values.schema.json violation or a template's `fail`."""


def _docs(texts: list[str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for text in texts:
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def _with_helm_binary(helm: str) -> Render:
    def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cmd = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", "1.31.0"]
        # JSON is YAML: the values go in on stdin, typed as they are (no --set string coercion).
        proc = subprocess.run([*cmd, "--values", "-"], input=json.dumps(values or {}), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RenderError(proc.stderr)
        return _docs([proc.stdout])

    return render


def _with_helm_sdk() -> Render:
    import helm_python

    def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with helm_python.Chart.load(str(CHART)) as chart:
            try:
                files = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
            except (helm_python.HelmValuesError, helm_python.HelmRenderError) as err:
                raise RenderError(str(err)) from err
        return _docs([text for path, text in sorted(files.items()) if path.endswith((".yaml", ".yml"))])

    return render


def _backend() -> tuple[str, Render | None]:
    helm = shutil.which("helm")
    if helm:
        return f"helm binary {helm}", _with_helm_binary(helm)
    try:
        import helm_python  # noqa: F401
    except ImportError:
        return "no `helm` binary on PATH and helm-python-sdk is not installed (pip install helm-python-sdk)", None
    return "helm-python-sdk (Helm's Go SDK)", _with_helm_sdk()


BACKEND, _RENDER = _backend()


def lint_errors() -> list[str]:
    """`helm lint --strict`'s errors (warnings too, with the binary); [] when clean."""
    helm = shutil.which("helm")
    if helm:
        proc = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True)
        return [] if proc.returncode == 0 else [proc.stdout + proc.stderr]
    import helm_python

    return list(helm_python.lint(str(CHART))["errors"])


def renderer() -> Render:
    """The render function, or a pytest skip that names what is missing."""
    if _RENDER is None:
        pytest.skip(f"chart not rendered: {BACKEND}")
    return _RENDER


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = by_kind(docs, kind)
    return doc
