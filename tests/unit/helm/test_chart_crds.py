"""The chart's CRDs are the generated ones (crds/*.yaml), behind `crds.enabled` and `crds.keep`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import CHART, ROOT, Render, by_kind

CRDS = ROOT / "crds"
TEMPLATES = CHART / "templates" / "crds"
GUARD_OPEN, GUARD_CLOSE = "{{- if .Values.crds.enabled }}", "{{- end }}"


def generated() -> dict[str, Path]:
    if not CRDS.is_dir() or not list(CRDS.glob("*.yaml")):
        pytest.skip("crds/ has no generated CRDs yet (run `make crds`)")
    return {p.name: p for p in sorted(CRDS.glob("*.yaml"))}


def without_template(text: str) -> dict[str, Any]:
    """The template as plain YAML: the guard and the templated metadata lines (labels, keep) taken out."""
    lines = text.splitlines()
    assert lines[0] == GUARD_OPEN and lines[-1] == GUARD_CLOSE, "the CRD must sit inside `if .Values.crds.enabled`"
    body = lines[1:-1]
    templated = [i for i, line in enumerate(body) if "{{" in line]
    kept = [line for i, line in enumerate(body) if i not in templated]
    doc = yaml.safe_load("\n".join(kept))
    meta = doc["metadata"]
    # What remains of the metadata block: `labels:` (its lines were the include) and the keep annotation.
    assert meta.pop("labels", None) is None
    assert meta.pop("annotations", None) in (None, {"helm.sh/resource-policy": "keep"})
    return doc


def test_chart_has_exactly_the_generated_crds():
    assert sorted(p.name for p in TEMPLATES.glob("*.yaml")) == sorted(generated())


@pytest.mark.parametrize(
    "name", ["finetunejobs.kubetune.dev.yaml", "evaluations.kubetune.dev.yaml", "modeldeployments.kubetune.dev.yaml"]
)
def test_chart_crd_equals_the_generated_crd(name):
    plain = generated().get(name)
    if plain is None:
        pytest.skip(f"crds/{name} not generated yet")
    template = (TEMPLATES / name).read_text()
    assert without_template(template) == yaml.safe_load(plain.read_text())


def test_templating_is_only_the_guard_labels_and_keep_annotation():
    for path in TEMPLATES.glob("*.yaml"):
        templated = [line.strip() for line in path.read_text().splitlines() if "{{" in line]
        assert templated == [
            GUARD_OPEN,
            '{{- include "kubetune.labels" . | nindent 4 }}',
            "{{- if .Values.crds.keep }}",
            "{{- end }}",
            GUARD_CLOSE,
        ], path


def _crds(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in by_kind(docs, "CustomResourceDefinition")}


def test_rendered_crds_are_the_generated_ones_and_kept_on_uninstall(render: Render):
    rendered = _crds(render())
    plain = {
        yaml.safe_load(p.read_text())["metadata"]["name"]: yaml.safe_load(p.read_text()) for p in generated().values()
    }
    assert set(rendered) == set(plain)
    for name, crd in rendered.items():
        assert crd["spec"] == plain[name]["spec"]
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_crds_can_be_left_out_or_left_to_go_with_the_release(render: Render):
    assert _crds(render({"crds": {"enabled": False}})) == {}
    for crd in _crds(render({"crds": {"keep": False}})).values():
        assert "annotations" not in crd["metadata"]
