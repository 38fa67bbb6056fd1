"""Chart.yaml, values.yaml and values.schema.json, without rendering: what Helm checks on every install."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml
from chart_render import CHART

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
# Values that hold a Kubernetes object as it is (its own fields need no sentence each).
KUBERNETES_OBJECT_VALUES = {"podSecurityContext", "securityContext", "resources", "nodeSelector"}


def errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)]


def with_value(path: str, value: Any) -> dict[str, Any]:
    values = copy.deepcopy(VALUES)
    *parents, leaf = path.split(".")
    node = values
    for key in parents:
        node = node[key]
    node[leaf] = value
    return values


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "kubetune"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == "0.1.0"
    assert chart["kubeVersion"] == ">=1.29.0-0"


def test_schema_is_a_valid_draft7_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_default_values_validate_against_the_schema():
    assert errors(VALUES) == []


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("replicaCount", 2, "'replicaCount' was unexpected"),  # one replica is not a choice (Kopf peering)
        ("image.tags", "v1", "'tags' was unexpected"),
        ("prometheus.servicemonitor.enable", True, "'enable' was unexpected"),
        ("crds.enabled", "yes", "'yes' is not of type 'boolean'"),
        ("watchNamespaces", ["Team_A"], "does not match"),
        ("image.pullPolicy", "Sometimes", "is not one of"),
        ("metrics.port", 70000, "is greater than the maximum"),
        ("image.digest", "latest", "does not match"),
        ("prometheus.servicemonitor.interval", "often", "does not match"),
        ("tolerations", [{"key": "gpu", "efect": "NoSchedule"}], "'efect' was unexpected"),
    ],
)
def test_schema_rejects_unknown_keys_and_wrong_types(path, value, complaint):
    found = errors(with_value(path, value))
    assert any(complaint in e for e in found), found


def test_schema_accepts_real_overrides():
    values = with_value("watchNamespaces", ["team-a", "team-b"])
    values["image"]["digest"] = "sha256:" + "a" * 64
    values["tolerations"] = [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    values["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    values["extraEnv"] = [{"name": "KUBETUNE_X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    values["resources"] = {"requests": {"cpu": 0.5, "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    values["prometheus"]["servicemonitor"].update(enabled=True, interval="30s", scrapeTimeout="1m30s")
    assert errors(values) == []


def _objects(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if node.get("type") == "object":
        yield path or "<root>", node
    for key, child in (node.get("properties") or {}).items():
        yield from _objects(child, f"{path}.{key}" if path else key)
    if isinstance(node.get("items"), dict):
        yield from _objects(node["items"], f"{path}[]")
    for alt in node.get("oneOf", []):
        yield from _objects(alt, path)


def test_every_object_in_the_schema_is_closed():
    """An object either lists its properties and forbids others, is a map with typed values, or is a Kubernetes
    type the API server checks (marked with $comment)."""
    loose = []
    for path, node in _objects(SCHEMA):
        if "properties" in node:
            ok = node.get("additionalProperties") is False
        elif isinstance(node.get("additionalProperties"), dict):
            ok = "type" in node["additionalProperties"] or "oneOf" in node["additionalProperties"]
        else:
            ok = str(node.get("$comment", "")).startswith("Kubernetes ")
        if not ok:
            loose.append(path)
    assert loose == []


def _leaves(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    props = node.get("properties")
    if not props:
        yield path, node
        return
    for key, child in props.items():
        yield from _leaves(child, f"{path}.{key}" if path else key)


def test_every_value_is_typed_and_described():
    untyped = [p for p, n in _leaves(SCHEMA) if not ("type" in n or "oneOf" in n or "enum" in n)]
    undescribed = [p for p, n in _leaves(SCHEMA) if not n.get("description")]
    assert untyped == [] and undescribed == []


def test_every_value_in_the_schema_is_in_values_yaml_and_back():
    def keys(values: dict[str, Any], schema: dict[str, Any], path: str = "") -> list[str]:
        missing = []
        for key, value in values.items():
            where = f"{path}.{key}" if path else key
            if key not in (schema.get("properties") or {}):
                if schema.get("additionalProperties") is False:
                    missing.append(where)
                continue
            if isinstance(value, dict) and "properties" in schema["properties"][key]:
                missing += keys(value, schema["properties"][key], where)
        return missing

    assert keys(VALUES, SCHEMA) == []
    top_level_without_default = set(SCHEMA["properties"]) - set(VALUES)
    assert top_level_without_default == set()


def test_every_value_is_documented_with_a_comment():
    """cert-manager style: a sentence above every value a user may set."""
    undocumented = []
    lines = VALUES_TEXT.splitlines()
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][\w.-]*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = [k for _, k in stack]
        stack.append((indent, key))
        if rest == "" or (parents and parents[0] in KUBERNETES_OBJECT_VALUES):
            continue  # a section (its values carry the comments) or a field of a Kubernetes object
        previous = next((p.strip() for p in reversed(lines[:i]) if p.strip()), "")
        if not previous.startswith("#"):
            undocumented.append(".".join([*parents, key]))
    assert undocumented == []


def test_replicas_are_not_configurable_and_values_say_why():
    assert "replicaCount" not in VALUES and "replicas" not in VALUES
    assert "Kopf" in VALUES_TEXT and "Recreate" in VALUES_TEXT and "not a lease" in VALUES_TEXT


def test_readme_values_table_lists_every_value():
    readme = (CHART / "README.md").read_text()
    listed = set(re.findall(r"^\| `([\w.]+)` \|", readme, flags=re.MULTILINE))
    whole_objects = KUBERNETES_OBJECT_VALUES | {"affinity"}
    expected = {p for p, _ in _leaves(SCHEMA) if p.split(".")[0] not in whole_objects} | whole_objects
    assert sorted(expected - listed) == [] and sorted(listed - expected) == []
