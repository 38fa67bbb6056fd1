"""The generated CRDs: committed copies up to date, acceptable to apiextensions.k8s.io/v1, structural,
described for `kubectl explain`, and consistent with the pydantic models' defaults."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pydantic
import pytest
import yaml
from kubernetes.client import ApiClient

from kubetune import constants as c
from kubetune import crdfiles
from kubetune.api import Evaluation, FineTuneJob, ModelDeployment, crdgen
from kubetune.api.cel import apply_defaults
from kubetune.api.cel import check as cel_check
from kubetune.api.finetunejob import AdapterSpec, Hyperparameters

ROOT = Path(__file__).resolve().parents[3]
CRDS = {d["spec"]["names"]["kind"]: d for d in crdgen.crds()}
MINIMAL = {
    c.FINETUNEJOB: {"baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "dataset": {"train": {"uri": "t.jsonl"}}},
    c.EVALUATION: {"model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "dataset": {"uri": "pvc://d/test.jsonl"}},
    c.MODELDEPLOYMENT: {"model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}},
}
MODELS = {c.FINETUNEJOB: FineTuneJob, c.EVALUATION: Evaluation, c.MODELDEPLOYMENT: ModelDeployment}


def schema_of(kind: str) -> dict:
    return CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def doc(kind: str, spec: dict) -> dict:
    return {"apiVersion": c.API_VERSION, "kind": kind, "metadata": {"name": "x"}, "spec": spec}


def test_committed_crds_match_the_models():
    stale = crdfiles.stale(ROOT / "crds", ROOT / "helm" / "kubetune")
    assert not stale, f"stale generated CRDs, run `make crds`: {', '.join(map(str, stale))}"


def test_generation_is_deterministic():
    assert crdfiles.rendered() == crdfiles.rendered()


@pytest.mark.parametrize("kind", list(CRDS))
def test_crd_deserializes_into_the_kubernetes_model_without_losing_anything(kind):
    api = ApiClient()
    crd = CRDS[kind]
    obj = api._ApiClient__deserialize(copy.deepcopy(crd), "V1CustomResourceDefinition")  # checks required fields
    # A key the client does not know (not part of apiextensions.k8s.io/v1) would be dropped here.
    assert api.sanitize_for_serialization(obj) == crd


@pytest.mark.parametrize("kind", list(CRDS))
def test_crd_names_scope_and_subresources(kind):
    spec = CRDS[kind]["spec"]
    assert spec["group"] == "kubetune.dev" and spec["scope"] == "Namespaced"
    assert (
        spec["names"]["shortNames"]
        == {"FineTuneJob": ["ftj"], "Evaluation": ["ftev"], "ModelDeployment": ["mdep"]}[kind]
    )
    assert spec["names"]["categories"] == ["kubetune"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {col["name"]: col for col in version["additionalPrinterColumns"]}
    assert "Phase" in columns and columns["Age"]["type"] == "date"
    status = schema_of(kind)["properties"]["status"]
    for col in columns.values():  # every column points at a field the schema has
        path = col["jsonPath"].lstrip(".").split(".")
        if path[0] == "metadata":
            continue
        node = schema_of(kind)
        for part in path:
            node = node.get("properties", {}).get(part) or node.get("additionalProperties")
            assert node is not None, f"printer column {col['name']} points at {col['jsonPath']}, not in the schema"
    assert status["type"] == "object"


def test_finetunejob_printer_columns():
    cols = [
        (c_["name"], c_["jsonPath"], c_.get("priority", 0))
        for c_ in CRDS[c.FINETUNEJOB]["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert cols == [
        ("Method", ".spec.method", 0),
        ("Phase", ".status.phase", 0),
        ("Progress", ".status.progress.percent", 0),
        ("Best", ".status.bestCheckpoint", 0),
        ("Eval Loss", ".status.metrics.evalLoss", 1),
        ("Message", ".status.message", 1),  # -o wide: why it is Pending (a kept PVC, say) and what to do
        ("Age", ".metadata.creationTimestamp", 0),
    ]


@pytest.mark.parametrize("kind", list(CRDS))
def test_schema_is_structural_and_meta_valid(kind):
    schema = schema_of(kind)
    assert crdgen.structural_errors(schema) == []
    jsonschema.Draft4Validator.check_schema(schema)  # OpenAPI 3.0 schemas are draft-4 shaped
    text = yaml.safe_dump(schema)
    assert "$ref" not in text and "$defs" not in text and "title:" not in text
    assert "additionalProperties: false" not in text


def test_structural_checker_finds_what_the_api_server_refuses():
    bad = {
        "type": "object",
        "properties": {
            "a": {"description": "no type"},
            "b": {"type": "object", "additionalProperties": False},
            "c": {"type": "number", "exclusiveMinimum": 0},
            "d": {"$ref": "#/x"},
            "e": {
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string", "pattern": "x"}],
            },
        },
        "x-kubernetes-validations": [
            {"rule": "true", "message": "m", "fieldPath": ".nope"},
            {"rule": "true", "message": "two\nlines", "reason": "Because"},
        ],
    }
    errors = "\n".join(crdgen.structural_errors(bad))
    for expected in (
        "a: type must be set",
        "b: additionalProperties false",
        "c: exclusiveMinimum must be a boolean",
        "d: $ref is not allowed",
        "e: x-kubernetes-int-or-string needs anyOf",
        "fieldPath .nope",
        "needs a one-line message",
        "reason Because is not one of",
    ):
        assert expected in errors


@pytest.mark.parametrize("kind", list(CRDS))
def test_every_field_is_described_for_kubectl_explain(kind):
    assert crdgen.missing_descriptions(schema_of(kind)) == []


def test_openapi_conversions():
    spec = schema_of(c.FINETUNEJOB)["properties"]["spec"]["properties"]
    # exclusiveMinimum: 0 (JSON Schema 2020) -> minimum 0 + exclusiveMinimum true (OpenAPI 3.0)
    lr = spec["hyperparameters"]["properties"]["learningRate"]
    assert lr["minimum"] == 0 and lr["exclusiveMinimum"] is True
    # optional fields are plain, not anyOf [X, null]
    assert spec["baseModel"]["properties"]["uri"]["type"] == "string"
    # quantities: int-or-string in the one form the API server accepts
    cpu = spec["resources"]["properties"]["cpu"]
    assert cpu["x-kubernetes-int-or-string"] and cpu["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert "pattern" in cpu and "type" not in cpu
    # nested sections default to the model's defaults, written out whole: the API server validates a default
    # as it stands (its rules too), without filling in the nested defaults first
    assert spec["adapter"]["default"] == AdapterSpec().to_k8s() and spec["adapter"]["default"]["type"] == "lora"
    assert spec["hyperparameters"]["default"] == Hyperparameters().to_k8s()
    # free-form JSON schema of a grader is kept as written
    grader = spec["rft"]["properties"]["graders"]["items"]["properties"]["schema"]
    assert grader == {**grader, "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    # maps of numbers
    metrics = schema_of(c.FINETUNEJOB)["properties"]["status"]["properties"]["metrics"]
    assert metrics["type"] == "object" and metrics["additionalProperties"] == {"type": "number"}
    # rules sit on the node of the model that declares them
    assert spec["baseModel"]["x-kubernetes-validations"][0]["rule"] == "has(self.uri) != has(self.fromJob)"
    assert "oldSelf" in schema_of(c.FINETUNEJOB)["x-kubernetes-validations"][0]["rule"]


def test_lists_searched_by_rules_are_bounded():
    """The API server refuses rules whose estimated cost is too high: lists they iterate need maxItems."""
    spec = schema_of(c.EVALUATION)["properties"]["spec"]["properties"]
    assert spec["metrics"]["maxItems"] <= 16 and spec["passCriteria"]["maxItems"] <= 32
    job = schema_of(c.FINETUNEJOB)["properties"]["spec"]["properties"]
    assert job["rft"]["properties"]["graders"]["maxItems"] == 16


def _defaults(node: dict, path: str = ""):
    if "default" in node:
        yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _defaults(sub, f"{path}.{name}")
    if "items" in node:
        yield from _defaults(node["items"], f"{path}[]")


@pytest.mark.parametrize("kind", list(CRDS))
def test_every_default_is_valid_against_its_own_schema(kind):
    found = list(_defaults(schema_of(kind)))
    assert found
    for path, node in found:
        value = apply_defaults(node["default"], node)
        errors = [e.message for e in jsonschema.Draft202012Validator(crdgen.to_json_schema(node)).iter_errors(value)]
        assert not errors, f"default of {path}: {errors}"


@pytest.mark.parametrize("kind", list(CRDS))
def test_api_server_defaults_equal_the_models_defaults(kind):
    """What the API server stores for a minimal manifest equals what the operator reads from it."""
    raw = doc(kind, MINIMAL[kind])
    by_schema = apply_defaults(raw, schema_of(kind))["spec"]
    by_model = MODELS[kind].model_validate(raw).to_k8s()["spec"]
    assert by_schema == by_model


def _examples():
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for i, d in enumerate(yaml.safe_load_all(path.read_text())):
            if d and d.get("apiVersion") == c.API_VERSION:
                yield pytest.param(d, id=f"{path.name}#{i + 1}")


@pytest.mark.parametrize("manifest", list(_examples()))
def test_examples_validate_against_the_generated_schema(manifest):
    schema = crdgen.to_json_schema(schema_of(manifest["kind"]))
    jsonschema.validate(apply_defaults(manifest, schema_of(manifest["kind"])), schema)


@pytest.mark.parametrize(
    ("spec_change", "message"),
    [
        ({"hyperparameters": {"learningRate": -1}}, "is less than or equal to the minimum"),
        ({"adapter": {"type": "lora2"}}, "is not one of"),
        ({"resources": {"cpu": "eight"}}, "does not match"),
        ({"surprise": 1}, "Additional properties are not allowed"),
    ],
)
def test_generated_schema_rejects_malformed_specs(spec_change, message):
    manifest = doc(c.FINETUNEJOB, {**MINIMAL[c.FINETUNEJOB], **spec_change})
    with pytest.raises(jsonschema.ValidationError, match=re.escape(message)):
        jsonschema.validate(manifest, crdgen.to_json_schema(schema_of(c.FINETUNEJOB)))


def _render_chart(text: str, enabled: bool, keep: bool) -> dict | None:
    """Just enough of Helm for our templates: the two conditionals and the label values."""
    lines, stack = [], []
    for line in text.splitlines():
        m = re.fullmatch(r"\s*\{\{- if \.Values\.crds\.(enabled|keep) \}\}", line)
        if m:
            stack.append({"enabled": enabled, "keep": keep}[m.group(1)])
        elif re.fullmatch(r"\s*\{\{- end \}\}", line):
            stack.pop()
        elif all(stack):
            lines.append(line)
    out = "\n".join(lines)
    labels = '    {{- include "kubetune.labels" . | nindent 4 }}'
    assert labels in out or not out.strip()
    out = out.replace(labels, "    app.kubernetes.io/managed-by: Helm")
    assert "{{" not in out
    return yaml.safe_load(out)


@pytest.mark.parametrize("kind", list(CRDS))
def test_chart_copy_is_the_same_crd_behind_crds_enabled_and_keep(kind):
    crd = CRDS[kind]
    text = (ROOT / "helm/kubetune/templates/crds" / crdfiles.file_name(crd)).read_text()
    assert _render_chart(text, enabled=False, keep=True) is None
    kept = _render_chart(text, enabled=True, keep=True)
    assert kept["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert kept["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert kept["spec"] == crd["spec"]
    assert "annotations" not in _render_chart(text, enabled=True, keep=False)["metadata"]


BOUND_CASES = [
    # (spec change, field the refusal names, whether the CRD schema can say it too)
    ({"queueName": "q" * 64}, "queueName", True),
    ({"queueName": "Team-Queue"}, "queueName", True),  # a DNS label, as Kueue's label value needs
    ({"image": "r/" + "i" * 1023}, "image", True),
    ({"baseModel": {"uri": "pvc://d/" + "p" * 4096}}, "baseModel.uri", True),
    ({"env": [{"name": f"V{i}", "value": "1"} for i in range(65)]}, "env", True),
    ({"env": [{"name": "V", "value": "v" * 8193}]}, "env.0.value", True),
    ({"env": [{"name": "V", "secretKeyRef": {"name": "s", "key": "a/b"}}]}, "env.0.secretKeyRef.key", True),
    ({"resources": {"cpu": "1" * 65}}, "resources.cpu", True),
    ({"resources": {"cpu": "eight"}}, "resources.cpu", True),
    ({"resources": {"nodeSelector": {f"k{i}": "v" for i in range(65)}}}, "resources.nodeSelector", True),
    ({"resources": {"nodeSelector": {"pool": "v" * 64}}}, "resources.nodeSelector.pool", True),
    ({"resources": {"tolerations": [{"key": "gpu", "operator": "Exists"}] * 65}}, "resources.tolerations", True),
    ({"resources": {"tolerations": [{"key": "gpu", "value": "a b"}]}}, "resources.tolerations.0.value", True),
    ({"resources": {"priorityClassName": "High"}}, "resources.priorityClassName", True),
    # A map's keys: a CRD schema has no keyword for them (no propertyNames); `kubetune validate` checks them.
    ({"resources": {"nodeSelector": {"bad key": "v"}}}, "resources.nodeSelector", False),
]


@pytest.mark.parametrize(("change", "where", "schema_too"), BOUND_CASES)
def test_models_enforce_the_crds_bounds(change, where, schema_too):
    """`kubetune validate` (the pydantic models) refuses what the API server refuses, naming the field."""
    manifest = doc(c.FINETUNEJOB, {**MINIMAL[c.FINETUNEJOB], **change})
    with pytest.raises(pydantic.ValidationError) as err:
        FineTuneJob.model_validate(manifest)
    locs = [".".join(str(p) for p in e["loc"]) for e in err.value.errors()]
    assert any(loc.startswith(f"spec.{where}") for loc in locs), locs
    schema = crdgen.to_json_schema(schema_of(c.FINETUNEJOB))
    schema_errors = list(jsonschema.Draft202012Validator(schema).iter_errors(manifest))
    assert bool(schema_errors) == schema_too, schema_errors


def test_values_at_the_bounds_are_accepted():
    spec = {
        **MINIMAL[c.FINETUNEJOB],
        "queueName": "q" * 63,
        "env": [{"name": f"V{i}", "value": "v" * 8192} for i in range(64)],
        "resources": {
            "nodeSelector": {"example.com/" + "k" * 63: "v" * 63, "pool": ""},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}] * 64,
            "cpu": "1500m",
            "priorityClassName": "high.priority",
        },
    }
    manifest = doc(c.FINETUNEJOB, spec)
    FineTuneJob.model_validate(manifest)
    jsonschema.validate(manifest, crdgen.to_json_schema(schema_of(c.FINETUNEJOB)))


@pytest.mark.parametrize("kind", list(CRDS))
def test_every_default_passes_its_own_rules_as_it_stands(kind):
    """The API server runs a node's CEL rules on its default as written, nested defaults not filled in
    (apiextensions-apiserver schema/defaulting/validation.go): `default: {}` on a section whose rule reads
    one of its fields was refused with "no such key"."""
    found = list(_defaults(schema_of(kind)))
    for path, node in found:
        errors = cel_check(node["default"], node)
        assert not errors, f"default of {path}: {errors}"


def _integral_number_defaults(node: dict, path: str = ""):
    if node.get("type") == "number" and float(node.get("default", 0.5)).is_integer():
        yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _integral_number_defaults(sub, f"{path}.{name}")
    if "items" in node:
        yield from _integral_number_defaults(node["items"], f"{path}[]")


@pytest.mark.parametrize("kind", list(CRDS))
def test_integral_number_defaults_pass_the_api_servers_integer_comparison(kind):
    """A default 0.0 travels as JSON 0, and kube-openapi compares an integer with int64(bound)
    (validate/values.go MaximumNativeType): an exclusive maximum of 0.5 became "less than 0"."""
    for path, node in _integral_number_defaults(schema_of(kind)):
        value = int(node["default"])
        if "maximum" in node:
            top = int(node["maximum"])
            assert value < top if node.get("exclusiveMaximum") else value <= top, path
        if "minimum" in node:
            bottom = int(node["minimum"])
            assert value > bottom if node.get("exclusiveMinimum") else value >= bottom, path
