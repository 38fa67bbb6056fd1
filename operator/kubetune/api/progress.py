"""The trainer's progress events, and the status fields each one stands for.

The trainer reports through events (`data`, `data_failed`, `progress`, `checkpoints`, `finished`,
`interrupted`, `tracking`, `memory_plan`; the evaluator's `evaluation`). `status_patch` says which status fields an event sets,
as a JSON merge patch: a pod sends exactly that patch to its own resource's status subresource, and
`kubetune run` merges the same patch into the status it keeps (`merge_patch`, RFC 7386, the API
server's semantics). One mapping, so a local run shows the status a cluster would.

Phase and conditions are never in a trainer's patch: they are the operator's (or the local runtime's).
Here rather than in `kubetune.status` because the trainer imports only `kubetune.api`,
`kubetune.data` and `kubetune.constants`. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DATA_ERRORS_KEPT = 50  # lines of a data-validation report copied into status.data.errors


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def progress_fields(
    *,
    step: int,
    total_steps: int,
    epoch: float | None,
    loss: float | None = None,
    eval_loss: float | None = None,
    tokens_per_second: float | None = None,
    eta_seconds: float | None = None,
) -> dict[str, Any]:
    """The `progress` and `metrics` of a `progress` event (camelCase, as in a FineTuneJob's status)."""
    progress: dict[str, Any] = {"step": step, "totalSteps": total_steps}
    if epoch is not None:
        progress["epoch"] = round(epoch, 4)
    if total_steps:
        progress["percent"] = min(100, int(100 * step / total_steps))
    if eta_seconds is not None and math.isfinite(eta_seconds):
        progress["etaSeconds"] = max(0, int(eta_seconds))
    if tokens_per_second is not None and _finite(tokens_per_second) is not None:
        progress["tokensPerSecond"] = round(tokens_per_second, 1)
    metrics = {}
    if _finite(loss) is not None:
        metrics["trainLoss"] = _finite(loss)
    if _finite(eval_loss) is not None:
        metrics["evalLoss"] = _finite(eval_loss)
    out: dict[str, Any] = {"progress": progress}
    if metrics:
        out["metrics"] = metrics
    return out


def status_patch(event: Mapping[str, Any]) -> dict[str, Any]:
    """The status merge patch one event stands for; {} for an event that changes no status field."""
    kind = event.get("event")
    if kind == "data":
        return {"data": dict(event.get("data") or {})}
    if kind == "data_failed":
        data = dict(event.get("data") or {})
        report = str(event.get("report") or "")
        data.setdefault("errors", [line for line in report.splitlines() if line.strip()][:DATA_ERRORS_KEPT])
        return {"data": data}
    if kind == "progress":
        out: dict[str, Any] = {}
        if "progress" in event:
            out["progress"] = event["progress"]
        if event.get("metrics"):
            out["metrics"] = dict(event["metrics"])
        return out
    if kind == "checkpoints":
        out = {"checkpoints": list(event.get("checkpoints") or [])}
        if event.get("bestCheckpoint"):
            out["bestCheckpoint"] = event["bestCheckpoint"]
        return out
    if kind == "finished":
        out = {"output": dict(event.get("output") or {})}
        if event.get("metrics"):
            out["metrics"] = dict(event["metrics"])
        return out
    if kind == "exported":
        return {"export": dict(event.get("export") or {})}
    if kind == "evaluation":
        return dict(event.get("status") or {})
    if kind == "tracking":
        return {"tracking": dict(event.get("tracking") or {})}
    if kind == "memory_plan":
        return {"memoryPlan": dict(event.get("memoryPlan") or {})}
    return {}  # interrupted (the operator sees the pod go), and events this version does not know


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`target` after a JSON merge patch (RFC 7386): objects merge key by key, null removes, the rest replaces."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_patch(out[key], value)
        elif isinstance(value, Mapping):
            out[key] = merge_patch({}, value)
        else:
            out[key] = value
    return out
