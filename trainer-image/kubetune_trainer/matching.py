"""Model output against the spec's regexes and JSON schemas, bounded: no network, no files, no endless backtracking.

A completion is untrusted text. A regex with catastrophic backtracking (`(a|aa)+$`) takes minutes on a few
dozen characters, and a JSON schema's `$ref` to `https://...` or `file:///...` would be fetched while
grading. So here:

- every regex search runs under a time limit (the `regex` module's `timeout=`; `re` has none); a search
  that runs out counts as no match, and the caller counts it (`Outcome.TIMED_OUT`);
- a JSON schema resolves `$ref` only inside itself and the JSON Schema drafts' own metaschemas (a registry
  that refuses every retrieval), and a `$ref` naming anything else is refused when the schema is read;
  its `pattern` and `patternProperties` keywords use the bounded search too;
- parsing a completion as JSON is bounded by its length; JSON nested too deep for Python is not valid.

Used by the RFT graders (graders.py) and the evaluation's json_schema metric (evaluate/metrics.py).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from typing import Any

import regex

from kubetune.api.grading import outside_ref

log = logging.getLogger("kubetune_trainer")

REGEX_TIMEOUT_SECONDS = 0.5  # per search; the regex module's clock, so a busy machine's wall time is longer


class Outcome(enum.Enum):
    MATCH = "match"
    NO_MATCH = "no match"
    TIMED_OUT = "timed out"


class RegexTimeout(Exception):
    """A bounded search ran out of time (raised inside schema validation, caught by `SchemaCheck`)."""


class BoundedPattern:
    """A compiled regex whose every search stops after `timeout` seconds."""

    def __init__(self, pattern: str, timeout: float | None = None) -> None:
        self.pattern = pattern
        self.timeout = REGEX_TIMEOUT_SECONDS if timeout is None else timeout
        try:
            self._compiled = regex.compile(pattern, regex.VERSION0)
        except regex.error as err:
            raise ValueError(f"{pattern!r} is not a valid regular expression: {err}") from None

    def search(self, text: str) -> Outcome:
        try:
            found = self._compiled.search(text, timeout=self.timeout)
        except TimeoutError:
            return Outcome.TIMED_OUT
        return Outcome.MATCH if found is not None else Outcome.NO_MATCH

    def found(self, text: str) -> bool:
        """For schema keywords: True/False, RegexTimeout when the search ran out of time."""
        outcome = self.search(text)
        if outcome is Outcome.TIMED_OUT:
            raise RegexTimeout(self.pattern)
        return outcome is Outcome.MATCH


def parse_json(text: str) -> tuple[bool, Any]:
    """(True, value) when `text` is one JSON document; JSON nested deeper than Python recurses is not."""
    import json

    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


def _bounded_validator_class(cls: Any) -> Any:
    """`cls` with `pattern`, `patternProperties` and `additionalProperties` searching through BoundedPattern
    (`unevaluatedProperties` beside `patternProperties` still uses `re`)."""
    from jsonschema import validators
    from jsonschema.exceptions import ValidationError

    cache: dict[str, BoundedPattern] = {}

    def bounded(pattern: str) -> BoundedPattern:
        if pattern not in cache:
            cache[pattern] = BoundedPattern(pattern)
        return cache[pattern]

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not bounded(patrn).found(instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    def pattern_properties(validator: Any, properties: dict[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        for patrn, subschema in properties.items():
            for key, value in instance.items():
                if bounded(patrn).found(key):
                    yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    def additional_properties(validator: Any, allowed: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        known = schema.get("properties", {})
        patterns = list(schema.get("patternProperties", {}))
        extras = [k for k in instance if k not in known and not any(bounded(p).found(k) for p in patterns)]
        if validator.is_type(allowed, "object"):
            for extra in extras:
                yield from validator.descend(instance[extra], allowed, path=extra)
        elif not allowed and extras:
            yield ValidationError(f"additional properties are not allowed ({', '.join(map(repr, sorted(extras)))})")

    return validators.extend(
        cls,
        {"pattern": pattern, "patternProperties": pattern_properties, "additionalProperties": additional_properties},
    )


class SchemaCheck:
    """Validates JSON values against one schema, offline and bounded. `check()` -> Outcome."""

    def __init__(self, schema: dict[str, Any]) -> None:
        """Raises ValueError when the schema is not a JSON schema or its `$ref`s lead outside it."""
        from jsonschema import Draft202012Validator, SchemaError, validators
        from referencing import Registry
        from referencing.exceptions import NoSuchResource

        if not isinstance(schema, dict):
            raise ValueError("a JSON schema must be an object")
        cls = validators.validator_for(schema, default=Draft202012Validator)
        try:
            cls.check_schema(schema)
        except SchemaError as err:
            raise ValueError(f"not a valid JSON schema: {err.message}") from None
        problem = outside_ref(schema)  # the one rule, admission's too
        if problem:
            raise ValueError(problem)

        def refuse(uri: str) -> Any:
            raise NoSuchResource(ref=uri)

        self._validator = _bounded_validator_class(cls)(schema, registry=Registry(retrieve=refuse))

    def check(self, value: Any) -> Outcome:
        from referencing.exceptions import Unresolvable

        try:
            return Outcome.MATCH if self._validator.is_valid(value) else Outcome.NO_MATCH
        except RegexTimeout:
            return Outcome.TIMED_OUT
        except (Unresolvable, RecursionError):
            return Outcome.NO_MATCH


class TimeoutLog:
    """Counts timed-out completions of one grader or metric and says so in the log (first, then every 100th)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    def add(self, outcome: Outcome) -> Outcome:
        if outcome is Outcome.TIMED_OUT:
            self.count += 1
            if self.count == 1 or self.count % 100 == 0:
                log.warning(
                    "%s: %d completion(s) took longer than %.1fs to match and scored 0 "
                    "(a pattern with catastrophic backtracking?)",
                    self.name,
                    self.count,
                    REGEX_TIMEOUT_SECONDS,
                )
        return outcome
