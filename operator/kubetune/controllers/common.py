"""What every controller shares: typed parsing of bodies, per-object locks, Events, child creation."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from kubetune import k8s
from kubetune.api.admission import admit_resource
from kubetune.api.manifests import pydantic_errors

M = TypeVar("M", bound=BaseModel)

_locks: dict[tuple[str, str, str], asyncio.Lock] = {}


class Signatures:
    """What a watch handler last saw of each object, so that writes it does not care about do nothing."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str], Any] = {}
        _memos.append(self)

    def news(self, kind: str, event: Mapping[str, Any], body: Mapping[str, Any], signature: Any) -> bool:
        """Whether `signature` of the object changed since its last event; a deletion is always news."""
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        if event.get("type") == "DELETED":
            self._seen.pop(key, None)
            return True
        if self._seen.get(key) == signature:
            return False
        self._seen[key] = signature
        return True

    def clear(self) -> None:
        self._seen.clear()


_memos: list[Signatures] = []


def reset() -> None:
    """A (re)started operator has seen nothing yet, and has no locks (they belong to one event loop)."""
    _locks.clear()
    for memo in _memos:
        memo.clear()


def lock_for(kind: str, namespace: str, name: str) -> asyncio.Lock:
    """One lock per object, so status writes from different watch events never interleave."""
    return _locks.setdefault((kind, namespace, name), asyncio.Lock())


def forget_lock(kind: str, namespace: str, name: str) -> None:
    _locks.pop((kind, namespace, name), None)


def parse(model: type[M], body: Mapping[str, Any]) -> M:
    """The typed resource, admitted by the same function as `kubetune validate` and `kubetune run`
    (schema, CEL rules, metadata and spec checks); what it refuses becomes a PermanentError naming the fields."""
    doc = dict(body)
    try:
        resource = model.model_validate(doc)
    except ValidationError as err:
        problems = "; ".join(f"{e.path}: {e.message}" for e in pydantic_errors(err, "spec"))
        raise kopf.PermanentError(f"invalid resource: {problems}") from err
    errors = admit_resource(doc)
    if errors:
        raise kopf.PermanentError("invalid resource: " + "; ".join(f"{e.path}: {e.message}" for e in errors))
    return resource


def validation_message(err: kopf.PermanentError) -> str:
    return str(err)


async def event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    await k8s.post_event(body, type_, reason, message)


async def ensure(manifests: list[dict[str, Any] | None]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Create what is missing (in order), keep what exists: ({kind: object}, ["Kind/name" created])."""
    objects: dict[str, dict[str, Any]] = {}
    created: list[str] = []
    for manifest in manifests:
        if manifest is None:
            continue
        obj, was_created = await k8s.create_if_absent(manifest)
        objects[manifest["kind"]] = obj
        if was_created:
            created.append(f"{manifest['kind']}/{manifest['metadata']['name']}")
    return objects, created


def live_child_owner(event: Mapping[str, Any], body: Mapping[str, Any], kind: str) -> str | None:
    """The owner of `kind` of a child that was added or changed; None when it was deleted or has none."""
    return owner_name(body, kind) if event.get("type") != "DELETED" else None


def owner_name(body: Mapping[str, Any], kind: str) -> str | None:
    """Name of the controller owner of `kind` of a child object."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == kind:
            return ref.get("name")
    return None
