"""The models and datasets a resource names by URI: one table for `kubetune validate`, `kubetune run`'s
preflight and the builders (which claims a pod mounts).

Works on a parsed resource and on a raw manifest document alike (validate reads documents that admission
refused, to report their files too): a resource is read in its camelCase form, and a malformed document
simply names fewer URIs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

UriKind = Literal["dataset", "model", "safety-prompts"]

# kind -> (path under spec of an object with a `uri`, what that URI holds), in the order the trainer reads them
_FIELDS: dict[str, tuple[tuple[tuple[str, ...], UriKind], ...]] = {
    "FineTuneJob": (
        (("baseModel",), "model"),
        (("dataset", "train"), "dataset"),
        (("dataset", "validation"), "dataset"),
        (("distillation", "teacher"), "model"),
    ),
    "Evaluation": (
        (("model",), "model"),
        (("baseline",), "model"),
        (("dataset",), "dataset"),
        (("safety", "prompts"), "safety-prompts"),  # red-team JSONL (kubetune.data.safety); none: the default set
    ),
    "ModelDeployment": ((("model",), "model"),),
}


@dataclass(frozen=True)
class ReferencedUri:
    field: str  # where the URI is written, e.g. spec.dataset.train.uri
    uri: str
    kind: UriKind
    format: str | None = None  # a dataset's declared spec.dataset.format (auto when not declared); None for models


def _get(node: Any, keys: tuple[str, ...]) -> Any:
    for k in keys:
        node = node.get(k) if isinstance(node, Mapping) else None
    return node


def referenced_uris(resource: BaseModel | Mapping[str, Any]) -> list[ReferencedUri]:
    """(field path, uri, dataset|model, declared format) of every URI the resource reads, in a fixed order:
    models and data as the table above lists them; empty or missing URIs are left out."""
    doc = resource.model_dump(by_alias=True, mode="json") if isinstance(resource, BaseModel) else resource
    kind = doc.get("kind") if isinstance(doc, Mapping) else None
    if not isinstance(kind, str):
        return []
    declared = _get(doc, ("spec", "dataset", "format"))
    out = []
    for path, what in _FIELDS.get(kind, ()):
        uri = _get(doc, ("spec", *path, "uri"))
        if isinstance(uri, str) and uri:
            fmt = declared if what == "dataset" and isinstance(declared, str) else None
            out.append(ReferencedUri(".".join(("spec", *path, "uri")), uri, what, fmt))
    return out


def dataset_uris(resource: BaseModel | Mapping[str, Any]) -> list[ReferencedUri]:
    return [r for r in referenced_uris(resource) if r.kind == "dataset"]


def safety_prompt_uris(resource: BaseModel | Mapping[str, Any]) -> list[ReferencedUri]:
    return [r for r in referenced_uris(resource) if r.kind == "safety-prompts"]


def model_uris(resource: BaseModel | Mapping[str, Any]) -> list[ReferencedUri]:
    return [r for r in referenced_uris(resource) if r.kind == "model"]
