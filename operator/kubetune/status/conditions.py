"""kstatus conditions, as Flux, Argo CD and `kubectl wait` read them; shared by the three kinds and both
runtimes (the operator and `kubetune run`). Pure.

`Ready` is always present and says the outcome; `Reconciling` and `Stalled` are present (True) only
while something is in progress or stuck; jobs add `Succeeded` / `Failed` once they have an outcome.
`lastTransitionTime` changes only when a condition's status flips; `observedGeneration` is the spec
generation the writer saw.
"""

from __future__ import annotations

from typing import Any

from kubetune import constants as c
from kubetune.api.common import CommonStatus

Cond = c.Condition
# (type, status, reason, message) of one condition.
Wanted = tuple[str, str, str, str]


def wanted(
    reason: str,
    message: str,
    *,
    ready: bool,
    reconciling: bool = False,
    stalled: bool = False,
    failed: bool = False,
    succeeded: bool = False,
) -> list[Wanted]:
    """Ready (True or False), then each of Reconciling, Stalled, Failed, Succeeded that is True, in that order."""
    out: list[Wanted] = [(Cond.READY, "True" if ready else "False", reason, message)]
    for ctype, present in (
        (Cond.RECONCILING, reconciling),
        (Cond.STALLED, stalled),
        (Cond.FAILED, failed),
        (Cond.SUCCEEDED, succeeded),
    ):
        if present:
            out.append((ctype, "True", reason, message))
    return out


def conditions(want: list[Wanted], old: list[dict[str, Any]], generation: int | None, now: str) -> list[dict[str, Any]]:
    """The conditions to write: exactly `want`; `lastTransitionTime` kept from `old` while a status holds."""
    before = {cond.get("type"): cond for cond in old or []}
    out = []
    for ctype, cstatus, reason, message in want:
        prev = before.get(ctype)
        since = prev.get("lastTransitionTime") if prev and prev.get("status") == cstatus else None
        cond: dict[str, Any] = {"type": ctype, "status": cstatus, "reason": reason, "message": message}
        cond["lastTransitionTime"] = since or now
        if generation is not None:
            cond["observedGeneration"] = generation
        out.append(cond)
    return out


def outcome(
    phase: str, message: str, want: list[Wanted], old: list[dict[str, Any]], generation: int | None, now: str
) -> dict[str, Any]:
    """phase, message, observedGeneration and `conditions(want, ...)`: the fields every status write has."""
    return {
        "phase": phase,
        "message": message,
        "observedGeneration": generation,
        "conditions": conditions(want, old, generation, now),
    }


def previous(status: CommonStatus | None) -> list[dict[str, Any]]:
    """The recorded conditions of a typed status, as the dicts `conditions` compares with."""
    return [cd.model_dump(by_alias=True, exclude_none=True) for cd in status.conditions] if status else []


def changes(status: CommonStatus | None, patch: dict[str, Any]) -> bool:
    """Whether merge-patching `patch` would change the recorded `status` (unchanged states are not re-written)."""
    current = status.model_dump(by_alias=True, exclude_none=True, mode="json") if status else {}
    return any(current.get(key) != value for key, value in patch.items())
