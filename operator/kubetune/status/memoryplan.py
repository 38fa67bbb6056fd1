"""The Event a FineTuneJob's memory plan stands for (the trainer writes status.memoryPlan at start).

Pure: the handler (controllers.finetunejob.memory_plan_event) posts what `plan_event` returns, once per
distinct plan it sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REASON_PLANNED = "MemoryPlanned"
REASON_DOES_NOT_FIT = "MemoryPlanDoesNotFit"


def plan_signature(body: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What of status.memoryPlan an Event reports (None: no plan yet)."""
    plan = (body.get("status") or {}).get("memoryPlan")
    if not plan:
        return None
    return (plan.get("summary"), plan.get("fits"), plan.get("suggestion"))


def plan_event(body: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(type, reason, message) for the plan in `body`'s status: Warning when it does not fit; None without one."""
    plan = (body.get("status") or {}).get("memoryPlan")
    if not plan or not plan.get("summary"):
        return None
    if plan.get("fits") is False:
        fix = f"; a layout that fits: {plan['suggestion']}" if plan.get("suggestion") else ""
        return "Warning", REASON_DOES_NOT_FIT, f"memory plan: {plan['summary']}{fix}"
    return "Normal", REASON_PLANNED, f"memory plan: {plan['summary']}"
