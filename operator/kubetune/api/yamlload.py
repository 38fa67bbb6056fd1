"""The one YAML loader for what users write: manifests (`kubetune validate`, `kubetune run`) and run configs.

YAML can say more than a Kubernetes object can hold, and some of it is hostile. Like kubectl
(sigs.k8s.io/yaml over go-yaml) this loader keeps documents to JSON values and refuses, with the
line and the field path, before building anything large:

- excessive aliasing ("billion laughs"): go-yaml's rule, the share of nodes that come from alias
  expansion against the expanded size, plus a hard cap on the expanded size;
- nesting deeper than MAX_DEPTH (PyYAML's composer recurses; Python would raise RecursionError);
- integers outside int64 and floats that are not finite (JSON, and the API server, cannot hold them);
- mapping keys that are not strings (merge keys `<<` work, as in go-yaml), and tags that are not JSON types (`!!binary`, `!!set`, custom tags);
- a mapping key defined twice in one mapping (go-yaml: "mapping key ... already defined"; PyYAML keeps the last).

Timestamps stay strings, as the API server reads them. Errors are `LimitError`, a `yaml.MarkedYAMLError`,
so a caller that reports YAML syntax errors with their line reports these the same way.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node, ScalarNode, SequenceNode

MAX_DEPTH = 100  # a manifest is a dozen levels deep; a JSON schema in a grader a few dozen
MAX_BYTES = 4 << 20  # several objects of at most ~1.5 MiB (etcd's request limit)
MAX_EXPANDED_NODES = 250_000  # nodes of one document with every alias expanded (a 1.5 MiB object holds fewer)
INT64 = (-(2**63), 2**63 - 1)

# go-yaml (decode.go): documents may take 99% of their nodes from aliases up to 400,000 decoded nodes,
# sliding to 10% at 4,000,000; the check applies once there are over 100 aliases and 1,000 nodes.
_RATIO_LOW, _RATIO_HIGH = 400_000, 4_000_000

_STR = "tag:yaml.org,2002:str"
_JSON_SCALARS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",  # read as a string
}


class LimitError(yaml.MarkedYAMLError):
    """A document kubetune will not read; `problem_mark` is where, `path` the field path (may be empty)."""

    def __init__(self, problem: str, mark: Any = None, path: str = "") -> None:
        where = f"{path}: " if path else ""
        super().__init__(problem=f"{where}{problem}", problem_mark=mark)
        self.path = path


def allowed_alias_ratio(decoded: int) -> float:
    if decoded <= _RATIO_LOW:
        return 0.99
    if decoded >= _RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decoded - _RATIO_LOW) / (_RATIO_HIGH - _RATIO_LOW)


class _Loader(yaml.SafeLoader):
    """SafeLoader with a depth limit while composing and timestamps kept as strings."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise LimitError(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def _child_path(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _check_scalar(node: ScalarNode, path: str, loader: _Loader) -> None:
    if node.tag not in _JSON_SCALARS:
        raise LimitError(
            f"the tag {node.tag[:60]} is not a JSON value (use a string, number, list or mapping)",
            node.start_mark,
            path,
        )
    if node.tag == "tag:yaml.org,2002:int":
        try:
            value = loader.construct_yaml_int(node)
        except ValueError:  # more digits than Python converts
            value = None
        if value is None or not INT64[0] <= value <= INT64[1]:
            raise LimitError(f"integer {node.value[:40]} is out of range (a 64-bit integer)", node.start_mark, path)
    elif node.tag == "tag:yaml.org,2002:float" and not math.isfinite(loader.construct_yaml_float(node)):
        raise LimitError(f"{node.value[:40]} is not a finite number (JSON has no inf or NaN)", node.start_mark, path)


def _values(node: Node, path: str) -> list[tuple[Node, str]]:
    """The child value nodes of a collection with their field paths; keys must be plain strings."""
    if isinstance(node, SequenceNode):
        return [(child, _child_path(path, i)) for i, child in enumerate(node.value)]
    out = []
    seen: dict[str, Any] = {}  # key -> where it was first defined
    for key, value in node.value:
        merge = isinstance(key, ScalarNode) and key.tag == "tag:yaml.org,2002:merge"  # `<<: *base`, as go-yaml
        if not merge and (not isinstance(key, ScalarNode) or key.tag not in (_STR, "tag:yaml.org,2002:timestamp")):
            shown = key.value if isinstance(key, ScalarNode) else "a collection"
            raise LimitError(f"mapping key {str(shown)[:40]!r} is not a string (quote it)", key.start_mark, path)
        if not merge:
            if key.value in seen:  # go-yaml (and so kubectl) refuses what PyYAML would silently overwrite
                first = seen[key.value].line + 1
                raise LimitError(
                    f"mapping key {key.value[:40]!r} already defined at line {first}", key.start_mark, path
                )
            seen[key.value] = key.start_mark
        out.append((value, _child_path(path, key.value)))
    return out


def check_node(root: Node, loader: _Loader) -> None:
    """Refuse excessive or recursive aliasing, non-JSON scalars and keys; each distinct node is looked at once.

    A depth-first walk in document order: a node met a second time is an alias (YAML defines an anchor
    before any alias to it). Sizes count every alias expanded, as go-yaml's decoder counts them.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, aliases), every alias expanded
    children: dict[int, list[tuple[int, bool]]] = {}  # id(node) -> [(id(child), reached as an alias)]
    on_path: set[int] = set()
    # (node, its path, id of the parent or None, exiting)
    stack: list[tuple[Node, str, int | None, bool]] = [(root, "", None, False)]
    while stack:
        node, path, parent, exiting = stack.pop()
        nid = id(node)
        if exiting:
            on_path.discard(nid)
            total, aliases = 1, 0
            for cid, is_alias in children[nid]:
                c_total, c_aliases = sizes[cid]
                total += c_total
                aliases += c_aliases + is_alias
            sizes[nid] = (total, aliases)
            if total > MAX_EXPANDED_NODES:
                raise LimitError(
                    f"excessive aliasing: the value expands to over {MAX_EXPANDED_NODES:,} nodes", node.start_mark, path
                )
            if aliases > 100 and total > 1000 and aliases / total > allowed_alias_ratio(total):
                raise LimitError("document contains excessive aliasing", node.start_mark, path)
            continue
        seen = nid in sizes or nid in on_path or nid in children
        if parent is not None:
            children[parent].append((nid, seen))
        if seen:
            if nid in on_path:
                raise LimitError("an alias refers to a value that contains it (recursive alias)", node.start_mark, path)
            continue
        if isinstance(node, ScalarNode):
            _check_scalar(node, path, loader)
            sizes[nid] = (1, 0)
            continue
        on_path.add(nid)
        children[nid] = []
        stack.append((node, path, None, True))
        for child, child_path in reversed(_values(node, path)):
            stack.append((child, child_path, nid, False))


def load_all(text: str, source: str = "<yaml>") -> list[Any]:
    """Every non-empty document of a YAML text as JSON values; raises yaml.YAMLError (LimitError for limits)."""
    if len(text) > MAX_BYTES:
        raise LimitError(f"{len(text):,} characters is more than a manifest file may hold ({MAX_BYTES:,})")
    loader = _Loader(text)
    docs = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            check_node(node, loader)
            doc = loader.construct_document(node)
            if doc is not None:
                docs.append(doc)
    finally:
        loader.dispose()
    return docs


def load_file(path: Path) -> list[Any]:
    """load_all of a file (read as UTF-8)."""
    if path.stat().st_size > MAX_BYTES:
        raise LimitError(f"{path.stat().st_size:,} bytes is more than a manifest file may hold ({MAX_BYTES:,})")
    return load_all(path.read_text(encoding="utf-8"), str(path))


def load_one(text: str) -> Any:
    """The single document of a YAML text (None when empty); raises yaml.YAMLError."""
    docs = load_all(text)
    if len(docs) > 1:
        raise yaml.YAMLError("expected one YAML document, found several")
    return docs[0] if docs else None
