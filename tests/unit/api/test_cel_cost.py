"""Every CEL rule of the three CRDs fits the API server's cost budget, estimated from the schemas' bounds.

A real API server estimates each rule's cost before it accepts a CRD and refuses the whole CRD when a
rule may cost too much ("estimated rule cost exceeds budget by factor of ..."). There is no API server
here, so this module estimates the costs the way it does. The model, read from the Kubernetes sources
(kubernetes/apiextensions-apiserver, kubernetes/apiserver, google/cel-go):

Limits
  - k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation/validation.go:
    StaticEstimatedCostLimit = 10_000_000 per rule, StaticEstimatedCRDCostLimit = 100_000_000 for the
    sum over the CRD. A rule's cost is its estimated cost times its cardinality (getExpressionCost).
  - k8s.io/apiserver/pkg/apis/cel/config.go: PerCallLimit = 1_000_000 (the runtime cost of one
    evaluation), RuntimeCELCostBudget = 10_000_000 (all rules on one object, at runtime),
    MaxRequestSizeBytes = 3 MiB.
Cardinality (validation/cel_validation.go, schema/cel/compilation.go maxCardinality)
  - the product of maxItems / maxProperties of the lists and maps above the rule's node (an object 1);
    below one without a bound: MaxRequestSizeBytes / (the node's minimum serialized size + 1).
Sizes (k8s.io/apiserver/pkg/cel/common/schemas.go SchemaDeclType, schema/cel/compilation.go sizeEstimator)
  - a string: maxLength x 4 (bytes per rune); an enum: its longest value; no bound: 3 MiB - 2.
    x-kubernetes-int-or-string the same.
  - a list: maxItems, else (3 MiB - 2) / (minimum item size + 1); a map: maxProperties, else
    (3 MiB - 2) / (minimum value size + 6); map keys: 0 (no keyword bounds them).
  - an object: 0. x-kubernetes-preserve-unknown-fields: ignored ("we don't support validation rules on
    data that we don't have schema information for"): such an object is declared with its known
    properties only, so a rule cannot read into free-form JSON and comparing it counts as an object.
  - minimum serialized size: string 2, boolean 4, number 1, list and map 2, object 2 + each required
    property without a default (name + its minimum + 4).
Costs (github.com/google/cel-go checker/cost.go, common/cost.go)
  - an identifier or a field selection 1, has() 1 + its operand, a literal 0, O(1) functions 1.
  - && and ||: both sides; ?: the condition plus the dearer branch; !, size(), arithmetic: 1.
  - ==, !=, <, ... : 0.1 x the smaller operand size (1 for scalars), rounded up.
  - `x in list`: the list's size. startsWith/endsWith: 0.1 x the argument. contains: 0.1 x target
    times 0.1 x argument; matches: 0.1 x (target + 1) times 0.25 x the pattern.
  - all(x, p): range + 1 + n x (3 + p); exists: range + 1 + n x (4 + p); exists_one: range + 2 +
    n x (2 + p); map: range + 11 + n x (12 + f); filter: range + 11 + n x (13 + p).

`mode="kubernetes"` follows that model exactly (and reproduces the API server's own expected costs,
see test_estimator_reproduces_the_api_servers_own_estimates). `mode="conservative"`, what the CRDs
are held to, over-estimates where Kubernetes is shallow: comparing a list, map or object is charged
as a traversal of everything in it (strings 4 bytes a character), map keys and free-form JSON at the
whole request size (3 MiB, nothing in one object can be larger). Another engineer's real
kube-apiserver in the test loop (issue #16) is the final judge; this estimate errs high.

A rule "reaches" a field when its value decides the cost: compared (with everything below it), iterated,
searched, or passed to a string function; has() and size() reach nothing. No rule may reach a field
that only the request size bounds, nor sit below an unbounded list or map.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pytest
from celpy import celparser
from lark import Token, Tree

from kubetune.api import crdgen

MAX_REQUEST = 3 * 1024 * 1024  # k8s.io/apiserver/pkg/apis/cel/config.go MaxRequestSizeBytes
PER_CALL_LIMIT = 1_000_000  # k8s.io/apiserver/pkg/apis/cel/config.go PerCallLimit
RUNTIME_BUDGET = 10_000_000  # k8s.io/apiserver/pkg/apis/cel/config.go RuntimeCELCostBudget
RULE_LIMIT = 10_000_000  # apiextensions validation.go StaticEstimatedCostLimit
CRD_LIMIT = 100_000_000  # apiextensions validation.go StaticEstimatedCRDCostLimit
STRING_TRAVERSAL = 0.1  # cel-go common/cost.go StringTraversalCostFactor
REGEX_LENGTH = 0.25  # cel-go common/cost.go RegexStringLengthCostFactor

Mode = Literal["kubernetes", "conservative"]


class Unsupported(Exception):
    """A CEL construct the model has no cost for: extend the model before using it in a rule."""


@dataclass(frozen=True)
class Val:
    """What the estimator knows about a value: its sizes and, for data of the object, where it is."""

    kind: str  # string | list | map | object | scalar | dyn
    size: int  # the API server's size estimate: bytes of a string, items of a list, entries of a map; objects 0
    deep: int  # our bound on comparing it: everything in it, bytes for strings
    count: int = 1  # lists and maps: how many items/entries the estimator assumes
    path: str | None = None  # schema path when the value is data of the object
    node: dict[str, Any] | None = None
    elem: Val | None = None  # list items, map values
    key: Val | None = None  # map keys
    unbounded: bool = False  # only the request size bounds it
    free_form: bool = False  # map keys, x-kubernetes-preserve-unknown-fields: no keyword can bound it


SCALAR = Val("scalar", 1, 1)


def _cap(raw: int, floor: int) -> int:
    return max(min(raw, MAX_REQUEST), floor)


def min_size(node: dict[str, Any]) -> int:
    """The smallest JSON a value of this schema serializes to (DeclType.MinSerializedSize)."""
    if node.get("x-kubernetes-int-or-string"):
        return 1
    kind = node.get("type")
    if kind == "string":
        return 2
    if kind == "boolean":
        return 4
    if kind in ("integer", "number"):
        return 1
    if kind == "object" and "properties" in node:
        required = set(node.get("required", []))
        return 2 + sum(
            len(name) + min_size(sub) + 4
            for name, sub in node["properties"].items()
            if name in required and "default" not in sub
        )
    return 2


def of_schema(node: dict[str, Any], path: str) -> Val:
    """The sizes of a value under this schema node."""
    if node.get("x-kubernetes-int-or-string") or node.get("type") == "string":
        kind = "dyn" if node.get("x-kubernetes-int-or-string") else "string"
        if "maxLength" in node:
            n, unbounded = node["maxLength"] * 4, False
        elif kind == "string" and "enum" in node:
            n, unbounded = max(len(str(e)) for e in node["enum"]), False
        else:
            n, unbounded = MAX_REQUEST - 2, True
        return Val(kind, n, n, path=path, node=node, unbounded=unbounded)
    kind = node.get("type")
    if kind in ("boolean", "integer", "number"):
        return replace(SCALAR, path=path, node=node)
    if kind == "array":
        item = of_schema(node["items"], f"{path}[]")
        unbounded = "maxItems" not in node
        n = (MAX_REQUEST - 2) // (min_size(node["items"]) + 1) if unbounded else node["maxItems"]
        return Val("list", n, _cap(n * item.deep, n), n, path, node, elem=item, unbounded=unbounded)
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        value = of_schema(node["additionalProperties"], f"{path}{{}}")
        key = Val("string", 0, MAX_REQUEST - 2, path=f"{path}{{key}}", free_form=True)
        unbounded = "maxProperties" not in node
        n = (MAX_REQUEST - 2) // (min_size(node["additionalProperties"]) + 6) if unbounded else node["maxProperties"]
        return Val("map", n, _cap(n * (key.deep + value.deep), n), n, path, node, value, key, unbounded=unbounded)
    if kind == "object":
        props = node.get("properties", {})
        free = bool(node.get("x-kubernetes-preserve-unknown-fields"))
        raw = sum(of_schema(sub, f"{path}.{name}").deep for name, sub in props.items())
        return Val("object", 0, _cap(raw + (MAX_REQUEST if free else 0), 1), path=path, node=node, free_form=free)
    raise Unsupported(f"{path}: schema type {kind!r}")


def children(v: Val) -> list[Val]:
    if v.kind == "list" and v.elem is not None:
        return [v.elem]
    if v.kind == "map":
        return [c for c in (v.key, v.elem) if c is not None]
    if v.kind == "object" and v.node is not None:
        return [of_schema(sub, f"{v.path}.{name}") for name, sub in v.node.get("properties", {}).items()]
    return []


@dataclass
class Estimate:
    cost: int
    reached: set[str] = field(default_factory=set)  # paths of the fields whose size decides the cost
    unbounded: set[str] = field(default_factory=set)  # of those, the ones only the request size bounds
    free_form: set[str] = field(default_factory=set)  # map keys and free-form JSON charged at 3 MiB


_SINGLE = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary", "member", "primary"}
)


def _unwrap(t: Any) -> Any:
    while isinstance(t, Tree) and t.data in _SINGLE and len(t.children) == 1:
        t = t.children[0]
    return t


def _size_guard(t: Any) -> tuple[str, int] | None:
    """(x, N) of a test `size(x) <= N` or `size(x) < N + 1` on an identifier; None for anything else."""
    t = _unwrap(t)
    if not (isinstance(t, Tree) and t.data == "relation" and len(t.children) == 2):
        return None
    op, right = t.children
    if not (isinstance(op, Tree) and op.data in ("relation_le", "relation_lt")):
        return None
    call, literal = _unwrap(op.children[0]), _unwrap(right)
    if not (isinstance(call, Tree) and call.data == "ident_arg" and str(call.children[0]) == "size"):
        return None
    if not (isinstance(literal, Tree) and literal.data == "literal"):
        return None
    arg = _unwrap(call.children[1].children[0]) if len(call.children) > 1 else None
    if not (isinstance(arg, Tree) and arg.data == "ident"):
        return None
    try:
        limit = int(str(literal.children[0]))
    except ValueError:
        return None
    return str(arg.children[0]), limit - (1 if op.data == "relation_lt" else 0)


def _args(t: Tree | None) -> list[Tree]:
    return [] if t is None else list(t.children)


class Estimator:
    """One rule's cost under the model in this module's docstring."""

    def __init__(self, mode: Mode):
        self.mode = mode
        self.result = Estimate(0)
        self.scope: dict[str, Val] = {}

    def size(self, v: Val) -> int:
        return v.deep if self.mode == "conservative" else v.size

    def reach(self, v: Val, deep: bool) -> None:
        if v.path is None:
            return
        self.result.reached.add(v.path)
        if v.unbounded:
            self.result.unbounded.add(v.path)
        if v.free_form:
            self.result.free_form.add(v.path)
        if deep:
            for sub in children(v):
                self.reach(sub, True)

    def estimate(self, rule: str, self_val: Val) -> Estimate:
        self.result = Estimate(0)
        self.scope = {"self": self_val, "oldSelf": self_val}
        self.result.cost, _ = self.ev(celparser.CELParser().parse(rule))
        return self.result

    # --- the walk over cel-python's parse tree --------------------------------------------------------

    def ev(self, t: Any) -> tuple[int, Val]:
        t = _unwrap(t)
        if not isinstance(t, Tree):
            raise Unsupported(f"token {t!r}")
        handler = getattr(self, f"_{t.data}", None)
        if handler is None:
            raise Unsupported(f"CEL construct {t.data}")
        return handler(t)

    def _expr(self, t: Tree) -> tuple[int, Val]:  # c ? a : b
        cond, (ca, va), (cb, vb) = self.ev(t.children[0])[0], self.ev(t.children[1]), self.ev(t.children[2])
        return cond + max(ca, cb), va if va.deep >= vb.deep else vb

    def _conditionalor(self, t: Tree) -> tuple[int, Val]:
        return self.ev(t.children[0])[0] + self.ev(t.children[1])[0], SCALAR

    def _conditionaland(self, t: Tree) -> tuple[int, Val]:
        """`size(x) <= N && p`: cel-go evaluates p only when the size test holds, so at runtime x in p is at most N
        characters. Conservative mode charges x in p at that (4 bytes a character); the API server's static
        estimate does not narrow (and charges map keys at 0), so kubernetes mode keeps x as it is."""
        guard = _size_guard(t.children[0])
        left = self.ev(t.children[0])[0]
        if guard is None or self.mode != "conservative" or guard[0] not in self.scope:
            return left + self.ev(t.children[1])[0], SCALAR
        name, limit = guard
        outer = self.scope[name]
        self.scope[name] = replace(outer, size=min(outer.size, limit * 4), deep=limit * 4, free_form=False)
        try:
            return left + self.ev(t.children[1])[0], SCALAR
        finally:
            self.scope[name] = outer

    def _relation(self, t: Tree) -> tuple[int, Val]:
        op, right = t.children
        cl, lhs = self.ev(op.children[0])
        cr, rhs = self.ev(right)
        if op.data == "relation_in":
            if rhs.kind == "list":
                self.reach(rhs, False)
                per = 1
                if self.mode == "conservative" and rhs.elem is not None:
                    self.reach(rhs.elem, True)
                    self.reach(lhs, True)
                    per = max(1, math.ceil(STRING_TRAVERSAL * min(rhs.elem.deep, lhs.deep)))
                return cl + cr + rhs.count * per, SCALAR
            self.reach(lhs, True)  # a map lookup: O(1) for cel-go; the key is hashed
            extra = math.ceil(STRING_TRAVERSAL * lhs.deep) if self.mode == "conservative" else 0
            return cl + cr + 1 + extra, SCALAR
        self.reach(lhs, True)
        self.reach(rhs, True)
        return cl + cr + math.ceil(STRING_TRAVERSAL * min(self.size(lhs), self.size(rhs))), SCALAR

    def _addition(self, t: Tree) -> tuple[int, Val]:
        op, right = t.children
        cl, lhs = self.ev(op.children[0])
        cr, rhs = self.ev(right)
        if op.data == "addition_add" and lhs.kind == "string" and rhs.kind == "string":
            self.reach(lhs, False)
            self.reach(rhs, False)
            n = lhs.size + rhs.size
            joined = Val("string", n, lhs.deep + rhs.deep)
            return cl + cr + math.ceil(STRING_TRAVERSAL * self.size(joined)), joined
        if op.data == "addition_add" and lhs.kind == "list" and rhs.kind == "list":
            n = lhs.count + rhs.count
            return cl + cr + 1, Val("list", n, lhs.deep + rhs.deep, n, elem=lhs.elem or rhs.elem)
        return cl + cr + 1, SCALAR

    def _multiplication(self, t: Tree) -> tuple[int, Val]:
        op, right = t.children
        return self.ev(op.children[0])[0] + self.ev(right)[0] + 1, SCALAR

    def _unary(self, t: Tree) -> tuple[int, Val]:  # ! or -
        return self.ev(t.children[1])[0] + 1, SCALAR

    def _paren_expr(self, t: Tree) -> tuple[int, Val]:
        return self.ev(t.children[0])

    def _ident(self, t: Tree) -> tuple[int, Val]:
        name = str(t.children[0])
        if name not in self.scope:
            raise Unsupported(f"identifier {name}")
        return 1, self.scope[name]

    def _literal(self, t: Tree) -> tuple[int, Val]:
        tok: Token = t.children[0]
        if tok.type in ("STRING_LIT", "MLSTRING_LIT", "BYTES_LIT"):
            n = len(str(tok).lstrip("bBrR").strip("'\""))  # the text between the quotes, escapes counted wide
            return 0, Val("string", n, n)
        return 0, SCALAR

    def _list_lit(self, t: Tree) -> tuple[int, Val]:
        items = [self.ev(e) for e in _args(t.children[0] if t.children else None)]
        n = len(items)
        deep = sum(v.deep for _, v in items)
        elem = max((v for _, v in items), key=lambda v: v.deep, default=SCALAR)
        return 10 + sum(c for c, _ in items), Val("list", n, deep, n, elem=elem)

    def _member_dot(self, t: Tree) -> tuple[int, Val]:
        operand, name = t.children
        cost, v = self.ev(operand)
        return cost + 1, self.select(v, str(name))

    def select(self, v: Val, name: str) -> Val:
        if v.kind == "map" and v.elem is not None:
            return v.elem
        if v.kind == "object" and v.node is not None:
            sub = v.node.get("properties", {}).get(name)
            if sub is None and v.path == "metadata" and name in ("name", "generateName"):
                # The API server declares these two of ObjectMeta to root rules (a DNS subdomain at most).
                sub = {"type": "string", "maxLength": 253}
            if sub is None:
                raise Unsupported(f"{v.path} has no field {name} the API server would declare")
            return of_schema(sub, f"{v.path}.{name}" if v.path else name)
        raise Unsupported(f"select .{name} on a {v.kind}")

    def _member_index(self, t: Tree) -> tuple[int, Val]:
        target, index = t.children
        ct, v = self.ev(target)
        ci, _ = self.ev(index)
        if v.elem is None:
            raise Unsupported(f"index into a {v.kind}")
        return ct + ci + 1, v.elem

    def _ident_arg(self, t: Tree) -> tuple[int, Val]:
        name, args = str(t.children[0]), _args(t.children[1] if len(t.children) > 1 else None)
        if name == "has":
            sel = _unwrap(args[0])
            if not (isinstance(sel, Tree) and sel.data == "member_dot"):
                raise Unsupported("has() of something that is not a field selection")
            return 1 + self.ev(sel.children[0])[0], SCALAR  # the presence test reads no value
        if name in ("size", "dyn", "int", "uint", "double", "bool", "string") and len(args) == 1:
            cost, v = self.ev(args[0])
            return cost + 1, (v if name == "dyn" else SCALAR)
        if name == "matches" and len(args) == 2:
            return self.call_method("matches", args[0], [args[1]])
        raise Unsupported(f"function {name}()")

    def _member_dot_arg(self, t: Tree) -> tuple[int, Val]:
        target, name = t.children[0], str(t.children[1])
        args = _args(t.children[2] if len(t.children) > 2 else None)
        if name in ("all", "exists", "exists_one", "map", "filter"):
            return self.comprehension(name, target, args)
        return self.call_method(name, target, args)

    def call_method(self, name: str, target: Any, args: list[Tree]) -> tuple[int, Val]:
        ct, tv = self.ev(target)
        evaluated = [self.ev(a) for a in args]
        ca = sum(c for c, _ in evaluated)
        if name == "size" and not args:
            return ct + 1, SCALAR
        if name in ("startsWith", "endsWith") and len(args) == 1:
            ((_, av),) = evaluated
            self.reach(av, False)
            return ct + ca + math.ceil(STRING_TRAVERSAL * self.size(av)), SCALAR
        if name in ("contains", "matches") and len(args) == 1:
            ((_, av),) = evaluated
            self.reach(tv, False)
            self.reach(av, False)
            if name == "contains":
                per = math.ceil(STRING_TRAVERSAL * self.size(tv)) * math.ceil(STRING_TRAVERSAL * self.size(av))
            else:
                per = math.ceil(STRING_TRAVERSAL * (self.size(tv) + 1)) * math.ceil(REGEX_LENGTH * self.size(av))
            return ct + ca + per, SCALAR
        raise Unsupported(f"method .{name}()")

    def comprehension(self, macro: str, target: Any, args: list[Tree]) -> tuple[int, Val]:
        cr, rv = self.ev(target)
        if rv.kind not in ("list", "map"):
            raise Unsupported(f"{macro}() over a {rv.kind}")
        self.reach(rv, False)  # the number of iterations
        var = _unwrap(args[0])
        if not (isinstance(var, Tree) and var.data == "ident"):
            raise Unsupported(f"{macro}() without an iteration variable")
        name = str(var.children[0])
        item = (rv.elem if rv.kind == "list" else rv.key) or SCALAR
        outer = self.scope.get(name)
        self.scope[name] = item
        try:
            body = sum(self.ev(a)[0] for a in args[1:])
        finally:
            if outer is None:
                del self.scope[name]
            else:
                self.scope[name] = outer
        fixed, per = {"all": (1, 3), "exists": (1, 4), "exists_one": (2, 2), "map": (11, 12), "filter": (11, 13)}[macro]
        result = SCALAR if macro in ("all", "exists", "exists_one") else Val("list", rv.count, rv.deep, rv.count)
        return cr + fixed + rv.count * (per + body), result


# --- the rules of the generated CRDs ------------------------------------------------------------------


@dataclass(frozen=True)
class RuleCost:
    kind: str
    path: str  # where the rule sits ("" for the root)
    rule: str
    field_path: str | None
    cost: int  # one evaluation
    cardinality: int  # how many copies of the rule's node one object may hold
    estimate: Estimate

    @property
    def total(self) -> int:
        return self.cost * self.cardinality

    @property
    def where(self) -> str:
        return f"{self.kind} {self.path or '<root>'}{self.field_path or ''}: {self.rule[:90]}"


def _rule_sites(node: dict[str, Any], path: str = "", card: int | None = 1):
    """(schema path, node, cardinality) of every node that carries rules."""
    if node.get("x-kubernetes-validations"):
        yield path, node, card
    for name, sub in node.get("properties", {}).items():
        yield from _rule_sites(sub, f"{path}.{name}" if path else name, card)
    for key, bound, suffix in (("items", "maxItems", "[]"), ("additionalProperties", "maxProperties", "{}")):
        sub = node.get(key)
        if isinstance(sub, dict):
            inner = None if card is None or bound not in node else card * node[bound]
            yield from _rule_sites(sub, f"{path}{suffix}", inner)


def rule_costs(kind: str, schema: dict[str, Any], mode: Mode) -> list[RuleCost]:
    out: list[RuleCost] = []
    for path, node, card in _rule_sites(schema):
        for r in node["x-kubernetes-validations"]:
            est = Estimator(mode).estimate(r["rule"], of_schema(node, path))
            if card is None:  # below an unbounded list or map: as many copies as fit in a request
                est.unbounded.add(f"{path} (the rule's own node: a list or map above it has no bound)")
            cardinality = card if card is not None else MAX_REQUEST // (min_size(node) + 1)
            out.append(RuleCost(kind, path, r["rule"], r.get("fieldPath"), est.cost, cardinality, est))
    return out


CRDS = {d["spec"]["names"]["kind"]: d["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for d in crdgen.crds()}
CONSERVATIVE = {kind: rule_costs(kind, schema, "conservative") for kind, schema in CRDS.items()}
KUBERNETES = {kind: rule_costs(kind, schema, "kubernetes") for kind, schema in CRDS.items()}


@pytest.mark.parametrize("kind", list(CRDS))
def test_no_rule_reaches_an_unbounded_field(kind):
    found = {r.where: sorted(r.estimate.unbounded) for r in CONSERVATIVE[kind] if r.estimate.unbounded}
    assert not found, f"rules that reach fields only the request size bounds (add maxLength/maxItems/...): {found}"


@pytest.mark.parametrize("kind", list(CRDS))
def test_every_rule_is_under_the_per_rule_limit(kind):
    over = [(r.where, r.total) for r in CONSERVATIVE[kind] if r.total > RULE_LIMIT]
    assert not over, f"estimated rule cost exceeds StaticEstimatedCostLimit {RULE_LIMIT}: {over}"
    # Stricter, at runtime: one evaluation within PerCallLimit, every rule on one object within the budget.
    assert max(r.cost for r in CONSERVATIVE[kind]) <= PER_CALL_LIMIT
    assert sum(r.total for r in CONSERVATIVE[kind]) <= RUNTIME_BUDGET


@pytest.mark.parametrize("kind", list(CRDS))
def test_the_crds_total_is_under_the_per_crd_limit(kind):
    assert sum(r.total for r in CONSERVATIVE[kind]) <= CRD_LIMIT


@pytest.mark.parametrize("kind", list(CRDS))
def test_our_estimate_is_never_below_the_api_servers(kind):
    for ours, theirs in zip(CONSERVATIVE[kind], KUBERNETES[kind], strict=True):
        assert ours.rule == theirs.rule and ours.total >= theirs.total, (ours.where, ours.total, theirs.total)


def test_the_freeze_rules_reach_no_status_value():
    """They read oldSelf.status.startTime only to test its presence: no status field decides their cost."""
    frozen = [r for r in CONSERVATIVE["FineTuneJob"] if "oldSelf" in r.rule]
    assert frozen
    for r in frozen:
        assert not any(p.startswith("status") for p in r.estimate.reached), (r.where, r.estimate.reached)
        assert r.cardinality == 1  # at the root


def test_the_freeze_rules_are_cheap():
    """Each compares one bounded spec field: well within one evaluation's runtime limit."""
    frozen = [r for r in CONSERVATIVE["FineTuneJob"] if "oldSelf" in r.rule]
    assert all(r.cost <= PER_CALL_LIMIT // 2 for r in frozen), [(r.where, r.cost) for r in frozen]
    assert sum(r.cost for r in KUBERNETES["FineTuneJob"] if "oldSelf" in r.rule) < 10_000


# --- the estimator itself ---------------------------------------------------------------------------


def _string(max_length: int | None = None) -> dict[str, Any]:
    return {"type": "string", **({"maxLength": max_length} if max_length is not None else {})}


def _array(items: dict[str, Any], max_items: int | None = None) -> dict[str, Any]:
    return {"type": "array", "items": items, **({"maxItems": max_items} if max_items is not None else {})}


def _map(values: dict[str, Any], max_properties: int | None = None) -> dict[str, Any]:
    extra = {"maxProperties": max_properties} if max_properties is not None else {}
    return {"type": "object", "additionalProperties": values, **extra}


OBJECT_ITEM = {
    "type": "object",
    "required": ["required"],
    "properties": {"required": _string(), "optional": _string()},
}


@pytest.mark.parametrize(
    ("schema", "rule", "expected"),
    [
        # k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/compilation_test.go TestCostEstimation
        (_array({"type": "number"}), "self.all(x, true)", 4718591),
        (_array({"type": "number"}, 10), "self.all(x, true)", 32),
        (_array(_string()), "self.all(x, true)", 3145727),
        (_array(_string(), 20), "self.all(x, true)", 62),
        (_array({"type": "boolean"}), "self.all(x, true)", 1887437),
        (_array(OBJECT_ITEM), "self.all(x, true)", 555128),
        (_array(OBJECT_ITEM, 50), "self.all(x, true)", 152),
        (_map({"type": "number"}), "self.all(x, true)", 1348169),
        (_map(_string()), "self.all(x, true)", 1179647),
        (_map({"type": "boolean"}, 100), "self.all(x, true)", 302),
        (_array({"type": "number"}, 10), "self.all(x, self.all(y, true))", 352),
        (_array({"type": "number"}, 10), "self.all(x, self.all(y, self.all(z, true)))", 3552),
        (_string(), "self.contains('test')", 314574),
        (_string(10), "self.contains('test')", 5),
        (_string(), "self.startsWith('test')", 2),
        (_string(4), 'size(self + "hello") > size("hello")', 7),
        (_string(), 'size(self + "hello") > size("hello")', 314578),
        (_string(50), 'self.matches("x")', 22),
        (_array(_string(), 8), "self[1] == self[1]", 314577),
        (_string(0), 'self == "x"', 1),
    ],
)
def test_estimator_reproduces_the_api_servers_own_estimates(schema, rule, expected):
    assert Estimator("kubernetes").estimate(rule, of_schema(schema, "")).cost == expected


def _scratch(spec: dict[str, Any], rule: str, at: str = "") -> list[RuleCost]:
    """A CRD schema with one rule, at the root or on a spec field."""
    root = {"type": "object", "properties": {"spec": {"type": "object", "properties": copy.deepcopy(spec)}}}
    target = root if not at else root["properties"]["spec"]["properties"][at]
    target = target.get("items", target)
    target["x-kubernetes-validations"] = [{"rule": rule, "message": "m"}]
    return rule_costs("Scratch", root, "conservative")


@pytest.mark.parametrize(
    ("spec", "rule", "at"),
    [
        # A freeze rule over a list of strings with no bounds (what spec.env was).
        ({"tags": _array(_string())}, "self.spec.tags == oldSelf.spec.tags", ""),
        # A bounded list of unbounded strings, and an unbounded map (nodeSelector as it was).
        ({"tags": _array(_string(), 8)}, "self.spec.tags == oldSelf.spec.tags", ""),
        ({"labels": _map(_string(63))}, "self.spec.labels == oldSelf.spec.labels", ""),
        # A trivial rule on the items of an unbounded list: a million copies.
        ({"env": _array(OBJECT_ITEM)}, "has(self.required) != has(self.optional)", "env"),
    ],
)
def test_scratch_rules_over_unbounded_fields_are_flagged(spec, rule, at):
    (found,) = _scratch(spec, rule, at)
    assert found.estimate.unbounded, found


def test_scratch_quadratic_rule_exceeds_the_budget_until_bounded():
    """A uniqueness check over a list: 'exceeds budget by factor of more than 100x' without bounds."""
    rule = "self.spec.keys.all(x, self.spec.keys.exists_one(y, y == x))"
    (unbounded,) = _scratch({"keys": _array(_string())}, rule)
    assert unbounded.total > 100 * RULE_LIMIT
    (bounded,) = _scratch({"keys": _array(_string(63), 64)}, rule)
    assert bounded.total <= RULE_LIMIT and not bounded.estimate.unbounded


def test_scratch_bounded_freeze_rule_passes():
    (found,) = _scratch({"tags": _array(_string(63), 8)}, "self.spec.tags == oldSelf.spec.tags")
    assert not found.estimate.unbounded and found.total <= PER_CALL_LIMIT
    assert found.estimate.reached == {"spec.tags", "spec.tags[]"}


def test_presence_tests_reach_nothing():
    (found,) = _scratch({"tags": _array(_string())}, "!has(oldSelf.spec.tags) || size(self.spec.tags) < 3")
    assert found.estimate.reached == set() and not found.estimate.unbounded


def test_free_form_json_is_charged_at_the_request_size():
    """x-kubernetes-preserve-unknown-fields: the API server's estimator sees no fields in it; we charge 3 MiB."""
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    (found,) = _scratch({"schema": free}, "self.spec.schema == oldSelf.spec.schema")
    assert found.estimate.free_form == {"spec.schema"} and not found.estimate.unbounded
    assert found.cost == 2 * 3 + math.ceil(STRING_TRAVERSAL * MAX_REQUEST)
    assert Estimator("kubernetes").estimate("self == oldSelf", of_schema(free, "")).cost == 2  # an object: 0


def test_unknown_constructs_are_refused_not_guessed():
    with pytest.raises(Unsupported, match="lowerAscii"):
        Estimator("conservative").estimate("self.lowerAscii() == 'a'", of_schema(_string(8), ""))


def test_generator_refuses_an_unbounded_spec_field():
    schema = {
        "type": "object",
        "properties": {
            "name": _string(63),
            "tags": _array(_string()),
            "labels": _map(_string(63)),
            "cpu": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "method": {"type": "string", "enum": ["a", "b"]},
            "json": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    assert crdgen.unbounded_fields(schema, "spec") == ["spec.tags", "spec.tags[]", "spec.labels", "spec.cpu"]


def test_scratch_map_keys_are_matched_within_budget_only_behind_a_size_test():
    """A key pattern on a map (no keyword bounds keys): each key is charged at the request size, unless the rule
    tests its size first (cel-go's && stops there): how the annotation-key rule fits (bounds.ANNOTATION_KEY_RULE)."""
    pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    (bare,) = _scratch({"m": _map(_string(64), 32)}, f"self.all(k, k.matches('{pattern}'))", "m")
    (guarded,) = _scratch({"m": _map(_string(64), 32)}, f"self.all(k, size(k) <= 317 && k.matches('{pattern}'))", "m")
    assert bare.total > RULE_LIMIT
    assert guarded.total <= PER_CALL_LIMIT // 10 and not guarded.estimate.free_form
