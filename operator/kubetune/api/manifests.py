"""Reading manifests: YAML documents -> typed resources, with errors that name the field path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kubetune import constants as c
from kubetune.api import bounds, yamlload
from kubetune.api.evaluation import Evaluation
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.modeldeployment import ModelDeployment

Resource = FineTuneJob | Evaluation | ModelDeployment
KINDS: dict[str, type[Resource]] = {
    c.FINETUNEJOB: FineTuneJob,
    c.EVALUATION: Evaluation,
    c.MODELDEPLOYMENT: ModelDeployment,
}


@dataclass
class ManifestError:
    source: str  # "file.yaml" or "file.yaml#2" (document index)
    path: str  # "spec.hyperparameters.learningRate"
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return f"{where}: {self.message}"


def _loc(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a field path; a map key pydantic refuses (…, key, "[key]") as `map["key"]`."""
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if part == "[key]":
            continue
        if i + 1 < len(parts) and parts[i + 1] == "[key]":
            out += f"[{json.dumps(str(part))}]"
        else:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# What the name patterns mean, said as the API server says it instead of the regular expression.
_PATTERN_MEANS = {
    bounds.DNS_LABEL_PATTERN: "a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a "
    "letter or digit",
    bounds.OBJECT_NAME_PATTERN: "a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and "
    "ending with a letter or digit",
    f"^$|{bounds.OBJECT_NAME_PATTERN}": "empty or a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
    "starting and ending with a letter or digit",
    bounds.LABEL_VALUE_PATTERN: "a label value: letters, digits, '-', '_' and '.', starting and ending with a "
    "letter or digit",
    bounds.QUALIFIED_NAME_PATTERN: "a qualified name: [DNS-subdomain prefix/]name, the name of letters, digits, "
    "'-', '_' and '.', starting and ending with a letter or digit",
}


_JSON_TYPES = {
    "str_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean (true or false)",
}


def _message(e: Any) -> str:
    """pydantic's message, but a name pattern said in words (the API server does not print regexes either)."""
    if e["type"] in _JSON_TYPES and not isinstance(e.get("input"), (dict, list)):
        # Strict typing: say what was given, as the API server does ('must be of type integer: "string"').
        given = e.get("input")
        what = (
            "a string"
            if isinstance(given, str)
            else "a boolean"
            if isinstance(given, bool)
            else "an integer"
            if isinstance(given, int)
            else "a number"
            if isinstance(given, float)
            else "null"
            if given is None
            else type(given).__name__
        )
        hint = " (remove the quotes)" if isinstance(given, str) and e["type"] != "str_type" else ""
        return f"must be {_JSON_TYPES[e['type']]}, not {what} {given!r:.80}{hint}"
    if e["type"] == "string_pattern_mismatch":
        means = _PATTERN_MEANS.get(e.get("ctx", {}).get("pattern", ""))
        if means and isinstance(e.get("input"), str):
            return f"{e['input'][:80]!r} is not {means}"
    return e["msg"]


def pydantic_errors(err: ValidationError, source: str, prefix: str = "") -> list[ManifestError]:
    """One ManifestError per pydantic error, with camelCase field paths."""
    out = []
    for e in err.errors(include_url=False):
        loc = e["loc"]
        if e["type"] == "union_tag_invalid":
            loc = loc[:-1]
        path = _loc(loc)
        out.append(ManifestError(source, f"{prefix}{path}" if path else prefix.rstrip("."), _message(e)))
    return out


def is_ours(doc: Any) -> bool:
    """A document that claims to be kubetune's: one of our kinds, or an apiVersion in our group (any case)."""
    if not isinstance(doc, dict):
        return False
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    group = api_version.split("/")[0].lower() if isinstance(api_version, str) else None
    return (isinstance(kind, str) and kind in KINDS) or group == c.GROUP


def parse_resource(doc: dict[str, Any], source: str = "<manifest>") -> tuple[Resource | None, list[ManifestError]]:
    """Type one document (schema only, strictly typed; see kubetune.api.admission for everything the API
    server checks, nulls and status included).

    A document of another kind with an apiVersion (an apps/v1 Deployment beside the jobs) is not ours:
    (None, []). A document without apiVersion or kind is an error, as kubectl says; so is one of our
    kinds under any apiVersion but exactly kubetune.dev/v1alpha1.
    """
    if not isinstance(doc, dict):
        return None, [ManifestError(source, "", "a manifest must be a mapping")]
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    missing = [k for k, v in (("apiVersion", api_version), ("kind", kind)) if not v]
    if missing:
        return None, [
            ManifestError(source, k, f"{k} is missing: every Kubernetes object needs apiVersion and kind")
            for k in missing
        ]
    if not isinstance(api_version, str) or not isinstance(kind, str):
        bad = "apiVersion" if not isinstance(api_version, str) else "kind"
        return None, [ManifestError(source, bad, f"{bad} must be a string")]
    if not is_ours(doc):
        return None, []
    if api_version != c.API_VERSION:
        return None, [
            ManifestError(source, "apiVersion", f"unsupported apiVersion {api_version!r}; use {c.API_VERSION}")
        ]
    model = KINDS.get(kind)
    if model is None:
        return None, [ManifestError(source, "kind", f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")]
    try:
        # Strict: values as the API server types JSON ("3" is not an integer, 1 not a boolean), integers
        # accepted for numbers as JSON allows.
        return model.model_validate(doc, strict=True), []
    except ValidationError as err:
        return None, pydantic_errors(err, source)


class NoObjectsError(ValueError):
    """A manifest file named explicitly that holds no object (empty, only whitespace or comments)."""


def is_list(doc: Any) -> bool:
    """A `kind: List` wrapper (apiVersion v1, or any `...List` kind with items), as kubectl apply expands it."""
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return False
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    return isinstance(kind, str) and kind.endswith("List") and (kind != "List" or api_version == "v1")


def expand_lists(labelled: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Each List's items in its place, labelled `SOURCE.items[i]`; other documents as they are."""
    out: list[tuple[str, Any]] = []
    for source, doc in labelled:
        if is_list(doc):
            out += [(f"{source}.items[{i}]", item) for i, item in enumerate(doc["items"])]
        else:
            out.append((source, doc))
    return out


def iter_documents(path: Path, *, allow_empty: bool = False) -> Iterator[tuple[str, Any]]:
    """(source label, document) for every YAML document in a file; label is `file` or `file#N`.

    Read with the one guarded loader (kubetune.api.yamlload): raises yaml.YAMLError, with the line, for
    syntax errors and for what a manifest may not hold (alias bombs, deep nesting, integers beyond int64,
    duplicate keys). The items of a `kind: List` are documents of their own (`file#N.items[i]`), as kubectl
    applies them. A file without any object raises NoObjectsError, as kubectl does for a file it is given,
    unless `allow_empty` (a folder scan may skip it).
    """
    docs = yamlload.load_file(path)
    if not docs and not allow_empty:
        raise NoObjectsError(f"{path}: no objects (the file is empty or holds only comments)")
    labelled = [((f"{path}#{i + 1}" if len(docs) > 1 else str(path)), doc) for i, doc in enumerate(docs)]
    yield from expand_lists(labelled)
