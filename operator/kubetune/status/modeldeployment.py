"""ModelDeployment status from what was observed: phase, kstatus conditions, what is served and where. Pure.

The observation is a `Workload`: on a cluster the apps/v1 Deployment's rollout (`rollout`, `compute_status`),
in `kubetune run` the local server process. Together with the promotion decision it gives the phase:
Failed (a stalled decision, or a workload that cannot serve), Pending (nothing to serve, or nothing
running), Deploying (rolling out), Ready.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubetune import constants as c
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.builders.adapters import AdapterOutcome
from kubetune.builders.canary import Split, traffic
from kubetune.builders.promotion import Decision
from kubetune.builders.serving import endpoint
from kubetune.status import conditions as kstatus


@dataclass(frozen=True)
class Workload:
    """What was observed of the serving workload (an apps/v1 Deployment, or a local server process).

    `idle`: why nothing runs although there is something to serve (`--no-serve`, the local run ended):
    Pending with that message. `failure`: (reason, message) of a workload that cannot serve: Failed."""

    ready: bool = False
    ready_replicas: int = 0
    endpoint: str | None = None
    idle: str | None = None
    failure: tuple[str, str] | None = None
    scaled_to_zero: bool = False
    waiting: str | None = None  # why the serving pods do not start (said while Deploying)


def rollout(deployment: ModelDeployment, apps_deployment: dict[str, Any] | None) -> tuple[bool, int]:
    """(ready, readyReplicas): ready once the current template is rolled out and one replica is ready, or
    once it is scaled to zero on purpose (KEDA minReplicas 0, spec.replicas 0) with no replica left."""
    if apps_deployment is None:
        return False, 0
    meta, status = apps_deployment.get("metadata") or {}, apps_deployment.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    if observed and _scaled_to_zero(apps_deployment):
        return True, 0
    updated = int(status.get("updatedReplicas") or 0) >= 1
    return observed and updated and ready >= 1, ready


def _scaled_to_zero(apps_deployment: dict[str, Any]) -> bool:
    """The Deployment wants no replica and has none left (an old one still terminating is not idle yet)."""
    spec, status = apps_deployment.get("spec") or {}, apps_deployment.get("status") or {}
    return spec.get("replicas") == 0 and int(status.get("replicas") or 0) == 0


# Pod waiting reasons that no retry fixes: the user has to act (create the Secret, fix the image).
_STUCK_REASONS = ("CreateContainerConfigError", "InvalidImageName", "ErrImageNeverPull")
_SECRET_NOT_FOUND = re.compile(r'secret "([^"]+)" not found')


def _pod_problem(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of a serving pod that does not start: Unschedulable, a container waiting on
    ImagePullBackOff, CreateContainerConfigError, CrashLoopBackOff (not the normal ContainerCreating)."""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return cond.get("reason") or "Unschedulable", cond.get("message") or ""
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return waiting["reason"], f"container {cs.get('name')}: {waiting.get('message') or waiting['reason']}"
    return None


def _named_field(deployment: ModelDeployment, message: str) -> str:
    """A missing Secret that the spec names, with its field path (what the user has to fix)."""
    missing = _SECRET_NOT_FOUND.search(message)
    auth = deployment.spec.auth
    if missing and auth is not None and auth.api_key_secret_ref.name == missing.group(1):
        return f"{message} (spec.auth.apiKeySecretRef: create Secret {missing.group(1)!r} or fix the reference)"
    return message


def observe(
    deployment: ModelDeployment, apps_deployment: dict[str, Any] | None, pods: Sequence[dict[str, Any]] = ()
) -> Workload:
    """What the serving Deployment and its pods say: ready (or idle at zero), or why it does not roll out.

    Stalled (a `failure`) when the Deployment's Progressing condition says ProgressDeadlineExceeded, or a pod
    waits on something only the user can fix (a missing Secret, an invalid image); any other waiting reason
    (Unschedulable, ImagePullBackOff) is said in the Deploying message."""
    ready, ready_replicas = rollout(deployment, apps_deployment)
    scaled = ready and apps_deployment is not None and _scaled_to_zero(apps_deployment)
    problems = [p for p in map(_pod_problem, pods) if p is not None]
    waiting = None
    if problems:
        reason, message = problems[0]
        waiting = _named_field(deployment, f"{reason}: {message}".rstrip(": "))
    failure = None
    if not ready:
        conditions = ((apps_deployment or {}).get("status") or {}).get("conditions") or []
        progressing = next((x for x in conditions if x.get("type") == "Progressing"), {})
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            why = f"; pods: {waiting}" if waiting else ""
            failure = (
                "ProgressDeadlineExceeded",
                f"rollout stalled: {progressing.get('message') or 'ProgressDeadlineExceeded'}{why}",
            )
        elif problems and problems[0][0] in _STUCK_REASONS and waiting is not None:
            failure = (problems[0][0], f"serving pods cannot start: {waiting}")
    return Workload(
        ready, ready_replicas, endpoint(deployment), failure=failure, scaled_to_zero=scaled, waiting=waiting
    )


def outcome_status(deployment: ModelDeployment, phase: str, reason: str, message: str, now: str) -> dict[str, Any]:
    """phase, message, observedGeneration and conditions (the fields every status write has)."""
    wanted = kstatus.wanted(
        reason,
        message,
        ready=phase == c.Phase.READY,
        reconciling=phase not in (c.Phase.READY, c.Phase.FAILED),
        stalled=phase == c.Phase.FAILED,
    )
    previous = kstatus.previous(deployment.status)
    return kstatus.outcome(phase, message, wanted, previous, deployment.metadata.generation, now)


def status_patch(
    deployment: ModelDeployment, decision: Decision, workload: Workload, revisions: list[dict[str, Any]], now: str
) -> dict[str, Any]:
    """The ModelDeployment's status after `decision` was applied to `workload` (merge patch).

    A stalled decision (e.g. a pin to a checkpoint that does not exist) is Failed: Ready False and Stalled
    True with its reason, whatever is still served meanwhile. A checkpoint held back by the safety gate is named
    in the message, whatever the phase."""
    serving = decision.checkpoint
    if decision.stalled:
        phase, reason, message = c.Phase.FAILED, decision.reason, decision.message
    elif workload.failure is not None:
        phase, (reason, message) = c.Phase.FAILED, workload.failure
    elif serving is None:
        phase, reason, message = c.Phase.PENDING, decision.reason, decision.message
    elif workload.idle is not None:
        phase, reason, message = c.Phase.PENDING, c.Reason.PENDING, workload.idle
    elif workload.ready:
        phase, reason = c.Phase.READY, c.Reason.READY
        message = f"serving {serving} at {workload.endpoint}"
        if workload.scaled_to_zero:
            message += " (idle: scaled to zero, the first request starts a replica)"
        if not decision.changes and decision.reason not in (c.Reason.UP_TO_DATE, c.Reason.PINNED):
            message += f" ({decision.message})"
    else:
        phase, reason = c.Phase.DEPLOYING, c.Reason.DEPLOYING
        message = f"rolling out {serving}: {workload.ready_replicas} replica(s) ready"
        if workload.waiting:
            message += f"; pods wait: {workload.waiting}"
        if not decision.changes and decision.reason not in (c.Reason.UP_TO_DATE, c.Reason.PINNED):
            message += f" ({decision.message})"  # e.g. a checkpoint waiting for a canary weight above 0
    if decision.held_back and decision.held_back not in message:
        message += f"; {decision.held_back}"
    patch = outcome_status(deployment, phase, reason, message, now)
    patch.update(readyReplicas=workload.ready_replicas, revisions=revisions)
    if serving is not None and workload.failure is None and workload.idle is None:
        patch.update(servedCheckpoint=serving, servedUri=decision.uri, endpoint=workload.endpoint)
    elif workload.endpoint is None:
        patch["endpoint"] = None
    return patch


def with_serving_extras(
    deployment: ModelDeployment,
    patch: dict[str, Any],
    split: Split,
    outcomes: list[AdapterOutcome],
    revisions: list[dict[str, Any]],
    routed: bool,
    route_pending: str | None = None,
) -> dict[str, Any]:
    """`patch` with `traffic` (stable and canary, their weights) and `adapters` (each one's checkpoint and history);
    an adapter that cannot be served is named in the message, by its field path; `route_pending`: why the
    HTTPRoute's weights are not in effect yet (its Gateway has not accepted it), said in the message."""
    revision = revisions[-1]["revision"] if revisions else None
    patch["traffic"] = traffic(deployment, split.stable, split.canary, revision, routed)
    if route_pending and patch["traffic"]:
        patch["message"] = f"{patch['message']}; {route_pending}: status.traffic weights are not in effect yet"
    had_adapters = bool(deployment.status and deployment.status.adapters)
    if outcomes or (had_adapters and not deployment.spec.adapters):
        patch["adapters"] = [o.status.to_k8s() for o in outcomes]
    errors = [o.error for o in outcomes if o.error]
    if errors:
        patch["message"] = f"{patch['message']}; not served: {'; '.join(errors)}"
    return patch


def compute_status(
    deployment: ModelDeployment,
    decision: Decision,
    apps_deployment: dict[str, Any] | None,
    revisions: list[dict[str, Any]],
    now: str,
    pods: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The ModelDeployment's status on a cluster: `decision` applied to the apps/v1 Deployment and its pods
    (merge patch)."""
    return status_patch(deployment, decision, observe(deployment, apps_deployment, pods), revisions, now)


def invalid_spec_status(
    deployment: ModelDeployment, message: str, now: str, reason: str = c.Reason.INVALID_SPEC
) -> dict[str, Any]:
    """Failed because the spec cannot be served as it stands (e.g. vLLM asked to read a file:// model), or the
    API server refused what it builds (reason ApplyFailed)."""
    return outcome_status(deployment, c.Phase.FAILED, reason, message, now)


def stopped_status(deployment: ModelDeployment, message: str, now: str) -> dict[str, Any]:
    """The server stopped (the local run ended): Pending, no endpoint, no ready replica; the rest stays."""
    patch = outcome_status(deployment, c.Phase.PENDING, c.Reason.PENDING, message, now)
    return {**patch, "endpoint": None, "readyReplicas": 0}


def changed(deployment: ModelDeployment, patch: dict[str, Any]) -> bool:
    """Whether applying `patch` would change the recorded status (so unchanged states are not re-written)."""
    return kstatus.changes(deployment.status, patch)
