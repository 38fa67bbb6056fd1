"""Label and annotation changes on a FineTuneJob or Evaluation reach the children it has already made.

Children are created once (common.ensure) and never applied again, so a `kubectl label` on the parent would
otherwise stop at the parent. Each child records which keys its parent passed on (builders.meta
ANNOTATION_PROPAGATED); when what the parent passes on changes, every existing child gets a metadata-only
merge patch (builders.meta.metadata_patch): new and changed keys set, keys the parent dropped removed, keys
someone else put on the child left alone. A Job's pod template is immutable: running pods keep their labels.

The controllers call `follow` from a watch-event handler: the set passed on is compared with the one last
seen for that object (Kopf's per-object memo), so the many status writes cost a dict comparison. After an
operator restart the first event compares it with one child that always exists (the `sentinel`), one GET,
and patches the others only when that one is out of date.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import kopf

from kubetune import constants as c
from kubetune import k8s, metrics
from kubetune.builders.meta import Propagation, metadata_patch, propagated
from kubetune.controllers import common

ChildRef = tuple[str, str]  # (kind, name) of a child in the parent's namespace


def owns(child: Mapping[str, Any], uid: str | None) -> bool:
    """Whether `child` was made for the parent with `uid`: its owner reference, or (a PVC, which has none) the
    owner-uid annotation. A kept PVC of a deleted namesake or a claim the user named is not."""
    meta = child.get("metadata") or {}
    if not uid:
        return False
    if (meta.get("annotations") or {}).get(c.ANNOTATION_OWNER_UID) == uid:
        return True
    return any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or [])


async def sync(
    namespace: str, uid: str | None, refs: Sequence[ChildRef], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> list[str]:
    """Patch the metadata of each existing child in `refs` that `uid` owns; ["Kind/name" patched]."""
    patched = []
    for kind, name in refs:
        child = await k8s.get_or_none(kind, namespace, name)
        if child is None or not owns(child, uid):
            continue
        patch = metadata_patch(child, labels, annotations)
        if patch is None:
            continue
        try:
            await k8s.patch_merge(kind, namespace, name, patch)
        except k8s.NotFound:
            continue  # deleted meanwhile (a superseded run, a Job past its TTL)
        patched.append(f"{kind}/{name}")
    return patched


async def follow(
    event: Mapping[str, Any],
    body: Mapping[str, Any],
    memo: Any,
    propagation: Propagation,
    children: Callable[[], Awaitable[tuple[ChildRef, Sequence[ChildRef]] | None]],
    logger: kopf.Logger,
    handler: str,
) -> None:
    """Bring the children's metadata in line when what `body` passes on changed since its last event.

    `children()` names them, (the sentinel, all of them), called only when something may have changed; None
    when it cannot tell (a spec the schema refuses: reconcile reports it)."""
    meta = body.get("metadata") or {}
    if event.get("type") == "DELETED" or meta.get("deletionTimestamp"):
        return
    labels, annotations = propagated(body, propagation)
    signature = (tuple(sorted(labels.items())), tuple(sorted(annotations.items())))
    first = "last_seen_by_propagation" not in memo
    if not common.changed_since_last_event(memo, "propagation", event, signature):
        return
    namespace, uid = meta.get("namespace") or "default", meta.get("uid")
    with metrics.track(handler):
        try:
            named = await children()
            if named is None:
                return
            sentinel, refs = named
            if first:  # a restart (or the object is new): one GET says whether anything is out of date
                child = await k8s.get_or_none(sentinel[0], namespace, sentinel[1])
                if child is None or (owns(child, uid) and metadata_patch(child, labels, annotations) is None):
                    return
            patched = await sync(namespace, uid, refs, labels, annotations)
        except Exception:
            memo.pop("last_seen_by_propagation", None)  # try again at the next event
            raise
    if patched:
        logger.info(f"labels and annotations passed on to {', '.join(patched)}")
