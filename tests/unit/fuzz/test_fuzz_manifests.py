"""Property: for generated and mutated manifests, the admission function and `kubetune validate` never raise,
never hang (each case has a deadline), and every refusal names a field path or a line."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from kubetune import cli
from kubetune.api import yamlload
from kubetune.api.admission import admit, admit_all

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
BASES: list[dict[str, Any]] = [
    doc for p in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(p.read_text()) if isinstance(doc, dict)
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "a..b", "../../x", "Kubetune.dev/v1alpha1", "kubetune.dev/v1alpha1", "lora", "auto"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_manifests(draw: st.DrawFn) -> Any:
    """A valid example with a few fields replaced, removed or added."""
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=12))] = draw(json_values)
    return doc


FIELD_PATH = re.compile(r"^[A-Za-z_][\w.\[\]{}/\-: ]*$")


def _refusals_name_a_field(errors: list) -> None:
    for e in errors:
        assert e.message, e
        # a field path, or (for a document that is not even a mapping) the document itself
        assert e.path or e.message == "a manifest must be a mapping", e


@given(mutated_manifests())
def test_admission_never_raises_and_names_the_field(doc):
    resource, errors = admit(doc, "m.yaml")
    assert (resource is None) or errors == []
    _refusals_name_a_field(errors)


@given(st.lists(mutated_manifests(), min_size=1, max_size=4))
def test_admission_of_a_set_never_raises(docs):
    admitted, errors = admit_all([(f"m.yaml#{i}", d) for i, d in enumerate(docs)])
    _refusals_name_a_field(errors)
    assert len(admitted) <= len(docs)


@given(json_values)
def test_any_json_value_as_a_document_is_refused_or_skipped(value):
    resource, errors = admit(value, "m.yaml")
    if isinstance(value, dict) and resource is None and not errors:
        return  # a foreign kind: skipped
    _refusals_name_a_field(errors)


YAML_TOKENS = st.sampled_from(
    ["a: ", "- ", "&x ", "*x", "[", "]", "{", "}", ", ", "\n", "  ", "!!binary ", "!!set ", "? ", "<<: ",
     "9" * 25, "1e999", ".nan", "2024-01-01", "'q'", '"\\u00e9"', "#c", "---\n", "|\n  t", "apiVersion: ",
     "kind: FineTuneJob", "spec:", "&y [*x,*x,*x]", "*y", "~", "true"]
)  # fmt: skip


@given(st.lists(YAML_TOKENS, max_size=40).map("".join))
def test_the_yaml_loader_raises_only_yaml_errors(text):
    try:
        docs = yamlload.load_all(text)
    except yaml.YAMLError as err:
        if isinstance(err, yaml.MarkedYAMLError):
            assert err.problem_mark is None or err.problem_mark.line >= 0
        return
    for doc in docs:
        admit(doc, "m.yaml")  # whatever the loader returns, admission takes without raising


@given(st.one_of(mutated_manifests().map(yaml.safe_dump), st.lists(YAML_TOKENS, max_size=30).map("".join)))
def test_validate_never_raises_and_every_error_names_file_and_field_or_line(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "m.yaml"
    path.write_text(text)
    found = cli.validate_paths([path])
    for error in found.errors:
        assert error.startswith(str(path)), error
        rest = error[len(str(path)) :]
        # file:LINE: ..., file#N: field: ..., file: field: ..., or a dataset's file:line
        assert re.match(r"^(:\d+: |#\d+: |: )\S", rest), error
