"""What makes a grader's regex or JSON schema usable, checked at admission and again where it is used.

One rule for `$ref`: a schema refers only inside itself (its own `$id`s, `#/$defs/...`) or to the JSON Schema
drafts' metaschemas; grading never fetches anything. kubetune_trainer.matching applies it when it reads a
schema; admission applies it (with the metaschema check and the regex compile) before anything is scheduled.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _ids(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$id", "id") and isinstance(value, str):
                yield value.rstrip("#")
            yield from _ids(value)
    elif isinstance(node, list):
        for item in node:
            yield from _ids(item)


def outside_ref(schema: Any) -> str | None:
    """The problem with the first `$ref` that leads outside the schema (None when every one stays inside)."""
    from jsonschema_specifications import REGISTRY as METASCHEMAS

    own = set(_ids(schema))
    for ref in _refs(schema):
        base = ref.split("#", 1)[0]
        if base and base not in own and base not in METASCHEMAS:
            return (
                f"$ref {ref[:200]!r} points outside the schema; grading never fetches anything (network or files): "
                "copy what it names under $defs and refer to it as #/$defs/NAME"
            )
    return None


def schema_problem(schema: Any) -> str | None:
    """Why `schema` cannot grade anything: not an object, not valid against its metaschema, or a `$ref` out."""
    from jsonschema import Draft202012Validator, SchemaError, validators

    if not isinstance(schema, dict):
        return "a JSON schema must be an object"
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as err:
        where = "/".join(str(p) for p in err.path)
        return f"not a valid JSON schema{f' (at {where})' if where else ''}: {err.message[:300]}"
    except RecursionError:
        return "not a valid JSON schema: nested too deeply"
    return outside_ref(schema)


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a regular expression the graders can compile (the `regex` module's, when installed)."""
    try:
        import regex
    except ImportError:

        def compile_(p: str) -> Any:
            return re.compile(p)

        error = re.error
    else:

        def compile_(p: str) -> Any:
            return regex.compile(p, regex.VERSION0)

        error = regex.error
    try:
        compile_(pattern)
    except (error, RecursionError, OverflowError) as err:
        return f"{pattern[:80]!r} is not a valid regular expression: {err}"
    return None
