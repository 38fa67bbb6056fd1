"""CustomResourceDefinitions generated from the pydantic models (`kubetune crds`).

pydantic's JSON Schema (2020-12) becomes a structural OpenAPI v3 schema as the API server wants it:
`$ref`s inlined, `anyOf [X, null]` made an optional X, `title`s and `additionalProperties: false`
dropped (the API server prunes unknown fields; `kubectl apply` rejects them first, because its
field validation defaults to Strict), JSON Schema's numeric `exclusiveMinimum: 0` turned into
OpenAPI 3.0's `minimum: 0, exclusiveMinimum: true`, free-form objects marked
`x-kubernetes-preserve-unknown-fields`, and nested sections defaulted to their models' defaults,
written out whole (the API server checks a default, rules included, as it stands). CEL rules (`x-kubernetes-validations`) stay on the node of the
model that declares them.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from kubetune import constants as c
from kubetune.api.evaluation import Evaluation
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.modeldeployment import ModelDeployment

RESOURCES: tuple[type[BaseModel], ...] = (FineTuneJob, Evaluation, ModelDeployment)

# Keys of apiextensions.k8s.io/v1 JSONSchemaProps that a CRD may use (no $ref, definitions, id, ...).
ALLOWED_KEYS = frozenset(
    {
        "description", "type", "format", "default", "enum", "nullable", "example", "externalDocs",
        "maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum", "multipleOf",
        "maxLength", "minLength", "pattern", "maxItems", "minItems", "maxProperties", "minProperties",
        "required", "items", "properties", "additionalProperties", "allOf", "anyOf", "oneOf", "not",
        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "x-kubernetes-embedded-resource",
        "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)  # fmt: skip
_REASONS = frozenset({"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"})
_DROP = frozenset({"title", "$schema", "const", "examples", "propertyNames"})  # map keys: a CEL rule says it (bounds)

PRINTER_COLUMNS: dict[str, list[dict[str, Any]]] = {
    c.FINETUNEJOB: [
        {"name": "Method", "type": "string", "jsonPath": ".spec.method", "description": "Training method."},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where the job is."},
        {"name": "Progress", "type": "integer", "jsonPath": ".status.progress.percent", "description": "Percent."},
        {"name": "Best", "type": "string", "jsonPath": ".status.bestCheckpoint", "description": "Best checkpoint."},
        {
            "name": "Eval Loss",
            "type": "number",
            "jsonPath": ".status.metrics.evalLoss",
            "description": "Latest evaluation loss.",
            "priority": 1,
        },
        # `kubectl get -o wide`: why a job is where it is (e.g. Pending on a kept PVC, and what to do).
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "description": "Why.", "priority": 1},
    ],
    c.EVALUATION: [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where it is."},
        {"name": "Passed", "type": "boolean", "jsonPath": ".status.passed", "description": "A model passed."},
        {"name": "Best", "type": "string", "jsonPath": ".status.best", "description": "Best model."},
    ],
    c.MODELDEPLOYMENT: [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where it is."},
        {
            "name": "Checkpoint",
            "type": "string",
            "jsonPath": ".status.servedCheckpoint",
            "description": "Checkpoint being served.",
        },
        {
            "name": "Endpoint",
            "type": "string",
            "jsonPath": ".status.endpoint",
            "description": "OpenAI-compatible base URL.",
            "priority": 1,
        },
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas", "description": "Ready replicas."},
    ],
}
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


class _K8sJsonSchema(GenerateJsonSchema):
    """pydantic's generator, plus defaults from default factories. A section's default is written out
    whole: the API server validates a default as it is, without its nested defaults, so a rule on the
    section (`!self.none || ...`) must find every field in it ("no such key" refused the CRD)."""

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()
            return (
                value.model_dump(by_alias=True, exclude_none=True, mode="json")
                if isinstance(value, BaseModel)
                else value
            )
        return super().get_default_value(schema)


# --- the one walk over a schema: where subschemas live, read by `walk` and rebuilt by `map_subschemas` ---

# ("properties", name), ("items", None), ("additionalProperties", None), ("anyOf", i)
Step = tuple[str, str | int | None]
_BRANCHES = ("anyOf", "oneOf", "allOf")


def subschemas(schema: dict[str, Any]) -> Iterator[tuple[Step, dict[str, Any]]]:
    """The subschemas of one node, with the step to each: properties, items, a map's values, then branches."""
    for name, sub in (schema.get("properties") or {}).items():
        yield ("properties", name), sub
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield (key, None), schema[key]
    for key in _BRANCHES:
        for i, sub in enumerate(schema.get(key) or []):
            yield (key, i), sub


def walk(
    schema: dict[str, Any], *, branches: bool = False, steps: tuple[Step, ...] = ()
) -> Iterator[tuple[tuple[Step, ...], dict[str, Any]]]:
    """Every node of `schema`, itself first, with the steps that reach it (anyOf/oneOf/allOf only with
    `branches`: their branches are value validations, not fields)."""
    yield steps, schema
    for step, sub in subschemas(schema):
        if branches or step[0] not in _BRANCHES:
            yield from walk(sub, branches=branches, steps=(*steps, step))


def map_subschemas(schema: dict[str, Any], f: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """A copy of one node with `f` applied to each of its subschemas (the transforms' one recursion)."""
    out = dict(schema)
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {name: f(sub) for name, sub in schema["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = f(schema[key])
    for key in _BRANCHES:
        if key in schema:
            out[key] = [f(branch) for branch in schema[key]]
    return out


def field_path(steps: tuple[Step, ...], root: str = "") -> str:
    """`spec.a.b[]`-style: a property `.name`, list items `[]`, a map's values `{}`."""
    path = root
    for key, which in steps:
        if key == "properties":
            path = f"{path}.{which}" if path else str(which)
        else:
            path += {"items": "[]", "additionalProperties": "{}"}.get(key, f".{key}[{which}]")
    return path


def schema_path(steps: tuple[Step, ...], root: str = "openAPIV3Schema") -> str:
    """`openAPIV3Schema.properties.a.items`-style: where a node sits in the CRD."""
    path = root
    for key, which in steps:
        path += f".{key}" + (f".{which}" if key == "properties" else f"[{which}]" if isinstance(which, int) else "")
    return path


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null"


class _Converter:
    def __init__(self, defs: dict[str, Any]):
        self.defs = defs

    def node(self, schema: dict[str, Any]) -> dict[str, Any]:
        schema = dict(schema)
        ref = schema.pop("$ref", None)
        if ref is not None:
            target = copy.deepcopy(self.defs[ref.rsplit("/", 1)[-1]])
            schema = {**target, **schema}  # the referring field's description/default win
        any_of = schema.get("anyOf")
        if any_of and any(_is_null(b) for b in any_of):
            rest = [b for b in any_of if not _is_null(b)]
            del schema["anyOf"]
            if len(rest) == 1:
                outer = {k: v for k, v in schema.items() if not (k == "default" and v is None)}
                inner = self.node(rest[0])
                return self.node({**inner, **outer}) if outer else inner
            schema["anyOf"] = rest
        if schema.get("default", 0) is None:
            del schema["default"]

        patterned = schema.pop("patternProperties", None)
        if isinstance(patterned, dict) and len(patterned) == 1:
            # dict[ConstrainedKey, V]: keys are checked by a CEL rule (bounds.ANNOTATION_KEY_RULE), values as usual.
            schema["additionalProperties"] = next(iter(patterned.values()))
        values = schema.get("additionalProperties")
        if not isinstance(values, dict) or values == {}:
            # Any value (true, {}) is free-form; false is not structural: the API server prunes instead.
            schema.pop("additionalProperties", None)
        out = {k: v for k, v in map_subschemas(schema, self.node).items() if k not in _DROP}
        if values is True or values == {}:
            out["x-kubernetes-preserve-unknown-fields"] = True
        if "required" in out:
            out["required"] = sorted(out["required"])
        for bound in ("Minimum", "Maximum"):  # JSON Schema 2020 -> OpenAPI 3.0 exclusive bounds
            ex = out.get(f"exclusive{bound}")
            if isinstance(ex, (int, float)) and not isinstance(ex, bool):
                out[bound.lower()] = ex
                out[f"exclusive{bound}"] = True
        if out.get("x-kubernetes-int-or-string") and "anyOf" in out:
            # The API server only accepts the exact form anyOf [{type: integer}, {type: string}];
            # a pattern moves up (it applies to strings only), as controller-gen writes quantities, and so does
            # a minimum (it applies to integers only).
            for branch in out["anyOf"]:
                for key in ("pattern", "minimum"):
                    if key in branch:
                        out[key] = branch.pop(key)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if "const" in schema and "enum" not in out:
            out["enum"] = [schema["const"]]
        if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
            out["type"] = "object"
        if "properties" in out and "type" not in out:
            out["type"] = "object"
        return out


def _doc(model: type[BaseModel]) -> str:
    module = sys.modules[model.__module__]
    return (model.__doc__ or module.__doc__ or model.__name__).strip().splitlines()[0]


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural openAPIV3Schema of one kind."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_K8sJsonSchema)
    conv = _Converter(raw.get("$defs", {}))
    props = raw["properties"]
    spec = conv.node(props["spec"])
    status = conv.node(props["status"])
    kind = model.model_fields["kind"].default
    spec.setdefault("description", f"What the {kind} should do.")
    status.setdefault("description", f"What the operator observed about the {kind}.")
    status.pop("default", None)
    _add_list_semantics(status)
    root: dict[str, Any] = {
        "type": "object",
        "description": _doc(model),
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    if "x-kubernetes-validations" in raw:
        root["x-kubernetes-validations"] = raw["x-kubernetes-validations"]
    return root


def _add_list_semantics(status: dict[str, Any]) -> None:
    """Conditions are a map keyed by type (server-side apply merges them per type)."""
    conditions = status.get("properties", {}).get("conditions")
    if conditions is not None:
        conditions["x-kubernetes-list-type"] = "map"
        conditions["x-kubernetes-list-map-keys"] = ["type"]


class UnboundedFieldError(ValueError):
    """A spec field without a bound: the API server would estimate CEL rule costs over it as 3 MiB."""


def crd(model: type[BaseModel]) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind; refuses unbounded spec fields."""
    kind = model.model_fields["kind"].default
    plural = c.PLURALS[kind]
    schema = openapi_schema(model)
    unbounded = unbounded_fields(schema["properties"]["spec"], "spec")
    if unbounded:
        raise UnboundedFieldError(
            f"{kind}: {', '.join(unbounded)} have no bound; give each string a max_length (or make it a Literal), "
            "each list and dict a max_length (see kubetune.api.bounds): the API server estimates the cost of "
            "CEL rules from these bounds and refuses the CRD when a rule may cost too much"
        )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{c.GROUP}"},
        "spec": {
            "group": c.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": list(c.SHORT_NAMES[kind]),
                "categories": [c.CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [*PRINTER_COLUMNS[kind], AGE_COLUMN],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crds() -> list[dict[str, Any]]:
    return [crd(m) for m in RESOURCES]


# --- self-checks: what the API server would refuse ------------------------------------------------


def structural_errors(schema: dict[str, Any], path: str = "openAPIV3Schema") -> list[str]:
    """Problems that make a schema non-structural or unacceptable to apiextensions.k8s.io/v1."""
    return [e for steps, node in walk(schema) for e in _node_errors(node, schema_path(steps, path))]


def _node_errors(schema: dict[str, Any], path: str) -> list[str]:
    """What the API server refuses in one node (its subschemas are nodes of their own)."""
    errors: list[str] = []
    for key in schema:
        if key not in ALLOWED_KEYS:
            errors.append(f"{path}: {key} is not allowed in a CRD schema")
    int_or_string = schema.get("x-kubernetes-int-or-string")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    if "type" not in schema and not int_or_string and not preserve:
        errors.append(f"{path}: type must be set (structural schema)")
    if int_or_string:
        if "type" in schema:
            errors.append(f"{path}: x-kubernetes-int-or-string must not set type")
        if schema.get("anyOf", [{"type": "integer"}, {"type": "string"}]) != [{"type": "integer"}, {"type": "string"}]:
            errors.append(f"{path}: x-kubernetes-int-or-string needs anyOf [integer, string] exactly")
    elif "anyOf" in schema or "oneOf" in schema or "allOf" in schema:
        for key in _BRANCHES:
            for i, branch in enumerate(schema.get(key, [])):
                for forbidden in ("type", "description", "default", "additionalProperties", "nullable"):
                    if forbidden in branch:
                        errors.append(f"{path}.{key}[{i}]: {forbidden} is not allowed in a value validation")
    if schema.get("additionalProperties") is False:
        errors.append(f"{path}: additionalProperties false is not structural")
    if "additionalProperties" in schema and "properties" in schema:
        errors.append(f"{path}: properties and additionalProperties are mutually exclusive")
    if "default" in schema and schema["default"] is None:
        errors.append(f"{path}: default null")
    if isinstance(schema.get("exclusiveMinimum"), (int, float)) and not isinstance(schema["exclusiveMinimum"], bool):
        errors.append(f"{path}: exclusiveMinimum must be a boolean in OpenAPI v3.0")
    if isinstance(schema.get("exclusiveMaximum"), (int, float)) and not isinstance(schema["exclusiveMaximum"], bool):
        errors.append(f"{path}: exclusiveMaximum must be a boolean in OpenAPI v3.0")
    if schema.get("type") == "array" and "items" not in schema:
        errors.append(f"{path}: an array needs items")
    for rule in schema.get("x-kubernetes-validations", []):
        if not rule.get("message", "").strip() or "\n" in rule["message"]:
            errors.append(f"{path}: rule {rule['rule']!r} needs a one-line message")
        if rule.get("reason", "FieldValueInvalid") not in _REASONS:
            errors.append(f"{path}: reason {rule['reason']} is not one of {', '.join(sorted(_REASONS))}")
        fp = rule.get("fieldPath")
        if fp and _resolve_field_path(schema, fp) is None:
            errors.append(f"{path}: fieldPath {fp} of rule {rule['rule']!r} names no field")
    return errors


# String formats the API server's estimator bounds by themselves (k8s.io/apiserver/pkg/cel/common/schemas.go).
_SIZED_FORMATS = frozenset({"date", "date-time", "duration"})


def unbounded_fields(schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields whose size only the request size bounds: a string (or int-or-string) without maxLength or
    enum, a list without maxItems, a map without maxProperties.

    Free-form JSON (`x-kubernetes-preserve-unknown-fields` without properties) is left out: no schema
    keyword bounds its depth, and the API server's estimator declares no fields in it (a rule cannot
    read into it, and comparing it is charged as an empty object).
    """
    return [field_path(steps, path) for steps, node in walk(schema) if _unbounded(node)]


def _unbounded(schema: dict[str, Any]) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return "maxLength" not in schema
    kind = schema.get("type")
    if kind == "string":
        return not ("maxLength" in schema or "enum" in schema or schema.get("format") in _SIZED_FORMATS)
    if kind == "array":
        return "maxItems" not in schema
    return isinstance(schema.get("additionalProperties"), dict) and "maxProperties" not in schema


def _resolve_field_path(schema: dict[str, Any], field_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in field_path.lstrip(".").split("."):
        node = (node or {}).get("properties", {}).get(part)
    return node


def missing_descriptions(schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields without a description (`kubectl explain` would have nothing to say)."""
    return [
        here
        for steps, node in walk(schema)
        if steps and steps[-1][0] == "properties" and not node.get("description")
        if (here := field_path(steps, path)) != "metadata"
    ]


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3.0 CRD schema as JSON Schema (2020-12), to validate objects with `jsonschema`."""
    out: dict[str, Any] = {}
    for key, value in map_subschemas(schema, to_json_schema).items():
        if key in ("exclusiveMinimum", "exclusiveMaximum"):
            if value is True:
                out[key] = schema[key.replace("exclusive", "").lower()]
        elif key in ("minimum", "maximum") and schema.get(f"exclusive{key.capitalize()}") is True:
            continue
        elif key == "type" and schema.get("nullable"):
            out[key] = [value, "null"]
        elif not key.startswith("x-kubernetes-") and key != "nullable":
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False  # what the API server prunes, kubectl --validate=strict refuses
    return out
