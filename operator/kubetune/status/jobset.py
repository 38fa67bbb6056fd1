"""A training JobSet, observed as the batch Job the FineTuneJob status is computed from. Pure.

The phase of a multi-node job follows its JobSet the same way it follows a batch Job (`finetunejob.observe`):
JobSet's `Completed` condition reads as the Job's `Complete`, `Failed` as `Failed` (reaching
`failurePolicy.maxRestarts` reads as `BackoffLimitExceeded`, which is what it means: the trainer failed more
often than `spec.backoffLimit`), `spec.suspend` as the Job's (JobSet's `Suspended` condition follows it). Group
restarts that count against maxRestarts are the retries; restarts after a preemption or a stop with a saved
checkpoint do not count, as with the batch Job's podFailurePolicy.
"""

from __future__ import annotations

from typing import Any

from kubetune import constants as c

COMPLETED, FAILED, SUSPENDED = "Completed", "Failed", "Suspended"  # JobSet's condition types
REACHED_MAX_RESTARTS = "ReachedMaxRestarts"  # JobSet's reason for failing once maxRestarts is used up


def _true(conditions: list[dict[str, Any]], ctype: str) -> dict[str, Any] | None:
    return next((x for x in conditions if x.get("type") == ctype and x.get("status") == "True"), None)


def as_batch_job(jobset: dict[str, Any]) -> dict[str, Any]:
    """The JobSet as a batch/v1 Job observation: metadata (name, uid, annotations: the spec hash), `spec.suspend`,
    and status `conditions`, `failed` (retries), `active`/`ready` (child Jobs running), `completionTime`."""
    spec, status = jobset.get("spec") or {}, jobset.get("status") or {}
    conds = status.get("conditions") or []
    retries = int(status.get("restartsCountTowardsMax") or 0)
    out: dict[str, Any] = {"failed": retries}
    batch_conditions = []
    done = _true(conds, COMPLETED)
    if done:
        batch_conditions.append({**done, "type": c.JOB_COMPLETE})
        out["completionTime"] = done.get("lastTransitionTime")
    failed = _true(conds, FAILED)
    if failed:
        if failed.get("reason") == REACHED_MAX_RESTARTS:
            failed = {**failed, "reason": c.Reason.BACKOFF_LIMIT_EXCEEDED}
            out["failed"] = retries + 1  # the restarts, and the failure that found none left
        batch_conditions.append({**failed, "type": c.JOB_FAILED})
    if batch_conditions:
        out["conditions"] = batch_conditions
    jobs = status.get("replicatedJobsStatus") or []
    active = sum(int(j.get("active") or 0) for j in jobs)
    ready = sum(int(j.get("ready") or 0) for j in jobs)
    if active:
        out["active"] = active
    if ready:
        out["ready"] = ready
    return {
        "apiVersion": jobset.get("apiVersion"),
        "kind": jobset.get("kind"),
        "metadata": jobset.get("metadata") or {},
        "spec": {"suspend": bool(spec.get("suspend"))},
        "status": out,
    }
