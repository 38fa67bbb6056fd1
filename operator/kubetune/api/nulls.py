"""Nulls in a manifest, treated as the API server treats them before it validates a custom resource.

k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting (prunenulls.go, algorithm.go): a `null` for
an object field whose schema is not `nullable` is removed, or replaced by the field's `default` when the
schema has one, recursively through objects (`properties` and `additionalProperties`) and into list items.
A `null` *item* of a list is left as it is (the schema then refuses it), and so is a null for a field the
schema does not know (pruning or strict decoding deals with those). Our CRDs mark no field nullable, so
`adapter: null` means the same as leaving `adapter` out.

`metadata` is decoded by the server into ObjectMeta, where a null is the field's zero value: also removed.
"""

from __future__ import annotations

import copy
import functools
from typing import Any


@functools.cache
def _schema(kind: str) -> dict[str, Any]:
    from kubetune.api import crdgen
    from kubetune.api.manifests import KINDS

    return crdgen.openapi_schema(KINDS[kind])


def _field_schema(name: str, node: dict[str, Any] | None) -> dict[str, Any] | None:
    if node is None:
        return None
    props = node.get("properties")
    if props is not None and name in props:
        return props[name]
    extra = node.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def prune_nulls(value: Any, node: dict[str, Any] | None) -> Any:
    """A copy of `value` with the nulls of non-nullable fields removed or defaulted under schema `node`."""
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            sub = _field_schema(key, node) if isinstance(key, str) else None
            if item is None and sub is not None and not sub.get("nullable"):
                if "default" in sub:
                    out[key] = copy.deepcopy(sub["default"])
                continue
            out[key] = prune_nulls(item, sub)
        return out
    if isinstance(value, list):
        items = node.get("items") if node is not None else None
        return [prune_nulls(item, items) for item in value]
    return value


def prune_document(doc: dict[str, Any]) -> dict[str, Any]:
    """A kubetune document (one of our kinds) with nulls pruned as the API server prunes them on create."""
    from kubetune.api.manifests import KINDS

    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        return doc
    out = prune_nulls(doc, _schema(kind))
    meta = out.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if v is not None}
    return out


__all__ = ["prune_document", "prune_nulls"]
