"""The CRDs' CEL rules (`x-kubernetes-validations`), evaluated here as the API server would.

`kubetune validate` and the tests use this so that a cross-field mistake (both model sources, a
method section for another method, `minReplicas > maxReplicas`) is caught before `kubectl apply`.
The walk follows the generated schema: each node's rules see `self` bound to that node, values
typed by the schema (integer -> int, number -> double), defaults applied first like the API
server does. Transition rules (those that use `oldSelf`) run only when an old object is given.
Needs `cel-python` (`import celpy`).
"""

from __future__ import annotations

import functools
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel

from kubetune.api import crdgen
from kubetune.api.manifests import KINDS, Resource

_TRANSITION = re.compile(r"\boldSelf\b")
# `self.x` reads field x; `self.all(...)` (a call: macros, size()) reads the whole value, as does `self` alone.
_SELF = re.compile(r"\b(self|oldSelf)\b(\.(\w+)\b(?!\s*\())?")
RESULTS_KEPT = 8192  # rule results remembered (an LRU): a fleet of jobs repeats the same small inputs


@dataclass(frozen=True)
class RuleError:
    path: str  # "spec.baseModel"
    message: str
    rule: str
    evaluated: bool = True  # False: the rule raised (a value of the wrong type, or a broken rule)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class Rule:
    path: str  # schema path, lists as [] ("spec.rft.graders[]")
    rule: str
    message: str
    field_path: str | None

    @property
    def is_transition(self) -> bool:
        return bool(_TRANSITION.search(self.rule))


@functools.cache
def schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of a kind, as the CRD carries it."""
    return crdgen.openapi_schema(KINDS[kind])


@functools.cache
def program(rule: str) -> celpy.Runner:
    """Compile one rule (cached); raises celpy.CELParseError when it is not CEL."""
    env = celpy.Environment()
    return env.program(env.compile(rule))


def rules(node: dict[str, Any], path: str = "") -> list[Rule]:
    """Every rule in a schema, with where it sits."""
    out = [Rule(path, r["rule"], r["message"], r.get("fieldPath")) for r in node.get("x-kubernetes-validations", [])]
    for name, sub in node.get("properties", {}).items():
        out += rules(sub, f"{path}.{name}" if path else name)
    if "items" in node:
        out += rules(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += rules(node["additionalProperties"], f"{path}{{}}")
    return out


def apply_defaults(value: Any, node: dict[str, Any]) -> Any:
    """A copy of value with the schema's defaults filled in, the way the API server defaults."""
    if isinstance(value, dict):
        props = node.get("properties")
        if props is not None:
            out = {k: apply_defaults(v, props[k]) if k in props else v for k, v in value.items()}
            for name, sub in props.items():
                if name not in out and "default" in sub:
                    out[name] = apply_defaults(sub["default"], sub)
            return out
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return {k: apply_defaults(v, extra) for k, v in value.items()}
        return value
    if isinstance(value, list) and "items" in node:
        return [apply_defaults(v, node["items"]) for v in value]
    return value


def to_cel(value: Any, node: dict[str, Any]) -> Any:
    """A JSON value as the CEL type the API server gives it under this schema node."""
    if value is None:
        return None
    if node.get("x-kubernetes-int-or-string"):
        return celtypes.IntType(value) if isinstance(value, int) else celtypes.StringType(value)
    kind = node.get("type")
    if kind == "object" and isinstance(value, dict):
        props, extra = node.get("properties"), node.get("additionalProperties")
        if props is None and not isinstance(extra, dict):
            return json_to_cel(value)  # x-kubernetes-preserve-unknown-fields
        return celtypes.MapType(
            {
                celtypes.StringType(k): to_cel(v, (props or {}).get(k) or (extra if isinstance(extra, dict) else {}))
                for k, v in value.items()
                if v is not None
            }
        )
    if kind == "array" and isinstance(value, list):
        return celtypes.ListType([to_cel(v, node.get("items", {})) for v in value])
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return celtypes.IntType(value)
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    return json_to_cel(value)


def _join(path: str, field_path: str | None) -> str:
    if not field_path:
        return path
    return f"{path}{field_path}" if path else field_path.lstrip(".")


@functools.cache
def fields_read(rule: str) -> frozenset[str] | None:
    """The fields of `self`/`oldSelf` a rule can read (`self.method`, `has(self.dpo)` -> method, dpo); None when
    it may read any (`self` used whole, indexed, or compared), so that its result depends on the whole value."""
    fields = set()
    for match in _SELF.finditer(rule):
        if match.group(3) is None:
            return None
        fields.add(match.group(3))
    return frozenset(fields)


def _projection(value: Any, fields: frozenset[str] | None) -> Any:
    if fields is None or not isinstance(value, dict):
        return value
    return {k: value[k] for k in fields if k in value}


class _Results:
    """Results of (schema node, rule, what of self and oldSelf it reads) -> error message or None, least recently used
    dropped first. A CEL rule is a pure function of what it reads, so a job whose `spec.method` and `spec.dpo`
    are those of a job seen before gets that job's answer to `self.method == 'dpo' || !has(self.dpo)`
    without another interpretation (~0.3 ms each in celpy): most of the operator's cost per new object."""

    def __init__(self, size: int) -> None:
        self.size = size
        # The schema node is part of the key (it types the values: integer or double) and kept with the entry,
        # so that a node's id is never taken for another's.
        self.entries: OrderedDict[tuple[int, str], tuple[dict[str, Any], str | None]] = OrderedDict()

    def get(self, node: dict[str, Any], key: str) -> tuple[bool, str | None]:
        entry = self.entries.get((id(node), key))
        if entry is None or entry[0] is not node:
            return False, None
        self.entries.move_to_end((id(node), key))
        return True, entry[1]

    def put(self, node: dict[str, Any], key: str, error: str | None) -> None:
        self.entries[(id(node), key)] = (node, error)
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)


_RESULTS = _Results(RESULTS_KEPT)


def _run_rule(rule: str, message: str, value: Any, old: Any, node: dict[str, Any], transition: bool) -> str | None:
    """None when the rule holds; else the message (with why, when the rule could not be evaluated)."""
    fields = fields_read(rule)
    key = json.dumps(
        [rule, message, _projection(value, fields), _projection(old, fields) if transition else None],
        sort_keys=True,
        default=str,
    )
    known, error = _RESULTS.get(node, key)
    if known:
        return error
    activation = {"self": to_cel(value, node)}
    if transition:
        activation["oldSelf"] = to_cel(old, node)
    try:
        result = program(rule).evaluate(activation)
        error = None if result is True or result == celtypes.BoolType(True) else message
    except Exception as err:  # an error in a rule is a failed validation at the API server too
        error = f"{message} (rule could not be evaluated: {err})"
    _RESULTS.put(node, key, error)
    return error


def _evaluate(node: dict[str, Any], value: Any, old: Any, path: str) -> list[RuleError]:
    errors: list[RuleError] = []
    for r in node.get("x-kubernetes-validations", []):
        transition = bool(_TRANSITION.search(r["rule"]))
        if transition and old is None:
            continue  # transition rules run on updates only
        error = _run_rule(r["rule"], r["message"], value, old, node, transition)
        if error is not None:
            where = _join(path, r.get("fieldPath"))
            errors.append(RuleError(where, error, r["rule"], evaluated=error == r["message"]))
    return errors


def check(value: Any, node: dict[str, Any], old: Any = None, path: str = "") -> list[RuleError]:
    """Evaluate every rule of node and below it on value (already defaulted)."""
    if value is None:
        return []
    errors = _evaluate(node, value, old, path)
    if isinstance(value, dict):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        for key, sub_value in value.items():
            sub = (props or {}).get(key) if props is not None else (extra if isinstance(extra, dict) else None)
            if sub is None:
                continue
            sub_old = old.get(key) if isinstance(old, dict) else None
            here = f"{path}.{key}" if path else key
            errors += check(sub_value, sub, sub_old, here if props is not None else f"{path}[{key}]")
    elif isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            # Items of atomic lists are not correlated with the old list: no oldSelf below here.
            errors += check(item, node["items"], None, f"{path}[{i}]")
    return errors


def validate(obj: Resource | dict[str, Any], old: Resource | dict[str, Any] | None = None) -> list[RuleError]:
    """Every CEL rule of the object's CRD on obj (and on the update old -> obj when old is given)."""
    doc = obj.to_k8s() if not isinstance(obj, dict) else obj
    node = schema(doc["kind"])
    doc = apply_defaults(doc, node)
    old_doc = None
    if old is not None:
        old_doc = apply_defaults(old.to_k8s() if not isinstance(old, dict) else old, node)
    return check(doc, node, old_doc)
