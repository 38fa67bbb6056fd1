"""Canary promotion with the weight in the spec (`spec.promotion.canary.weight`): pure decisions and manifests.

When the promotion policy would roll forward from a served (stable) checkpoint, the new checkpoint goes to a
canary Deployment (`<name>-serve-canary`) that serves `weight` percent of requests beside the stable one:
- weight 100: the canary checkpoint becomes stable (a revision, as a roll-forward without canary) and the canary
  goes away; weight 0: no canary runs (one that ran is removed: rolled back), the candidate waits;
- the canary is rolled back automatically when the policy stops choosing it, e.g. the Evaluation now says its
  checkpoint failed; a pin or a rollback goes straight to stable (a rollback must not wait).
Traffic is split by a Gateway API HTTPRoute's backend weights when `spec.gateway` is set and the cluster serves
HTTPRoute; otherwise by replica proportion behind the one Service, which then selects both tracks' pods.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from kubetune import constants as c
from kubetune.api.evaluation import Evaluation
from kubetune.api.modeldeployment import ModelDeployment, ModelDeploymentStatus, TrafficTarget
from kubetune.builders.meta import child_metadata
from kubetune.builders.promotion import Decision

ROLE_CANARY = f"{c.ROLE_SERVE}-canary"
HTTPROUTE_API = "gateway.networking.k8s.io/v1"


@dataclass(frozen=True)
class CanaryPlan:
    """The checkpoint the canary track serves, at `weight` percent (the spec's)."""

    checkpoint: str
    uri: str
    weight: int
    message: str

    def decision(self) -> Decision:
        """As a promotion decision, for `serving.plan`."""
        return Decision("promote", self.checkpoint, self.uri, c.Reason.CANARY_STARTED, self.message)


@dataclass(frozen=True)
class Split:
    """What the stable track does (`stable`), the canary (or None), and the canary transition to tell, if any:
    (event type, reason, message)."""

    stable: Decision
    canary: CanaryPlan | None
    event: tuple[str, str, str] | None = None


def current_canary(status: ModelDeploymentStatus | None) -> TrafficTarget | None:
    return next((t for t in (status.traffic if status else []) if t.track == "canary"), None)


def _failed_in(evaluation: Evaluation | None, checkpoint: str) -> bool:
    results = evaluation.status.results if evaluation and evaluation.status else []
    return any(r.model == checkpoint and not r.passed for r in results)


def _rolled_back(old: TrafficTarget, why: str, stable: str | None) -> tuple[str, str, str]:
    back = f"; {stable} serves all requests" if stable else ""
    return ("Warning", c.Reason.CANARY_ROLLED_BACK, f"canary {old.checkpoint} removed: {why}{back}")


def split(
    deployment: ModelDeployment, decision: Decision, evaluation: Evaluation | None, *, routed: bool = True
) -> Split:
    """Route `decision` through the canary, as `spec.promotion.canary` says (see the module's rules); `routed`:
    split by an HTTPRoute (the weight as asked), else by replicas (the share their proportion gives)."""
    spec = deployment.spec.promotion.canary
    status = deployment.status or ModelDeploymentStatus()
    stable = status.served_checkpoint
    old = current_canary(status)
    canaryable = decision.checkpoint is not None and (
        decision.kind == "rollforward" or (decision.kind == "promote" and stable is not None)
    )
    if spec is None:
        return Split(decision, None)
    if not canaryable:
        event = None
        if old is not None and decision.checkpoint != old.checkpoint:
            if _failed_in(evaluation, old.checkpoint):
                ref = deployment.spec.promotion.evaluation
                why = f"it failed Evaluation {ref.name if ref else ''}".rstrip()
            else:
                why = f"it is no longer chosen ({decision.message})"
            event = _rolled_back(old, why, decision.checkpoint)
        return Split(decision, None, event)
    assert decision.checkpoint is not None and decision.uri is not None
    if spec.weight >= 100:
        return Split(replace(decision, message=f"{decision.message} (canary weight 100)"), None)
    keep = Decision("none", stable, status.served_uri, c.Reason.CANARY, "")
    if spec.weight <= 0:
        message = f"{decision.checkpoint} waits for spec.promotion.canary.weight above 0 ({decision.message})"
        event = _rolled_back(old, "spec.promotion.canary.weight is 0", stable) if old is not None else None
        return Split(replace(keep, message=message), None, event)
    message = f"canary {decision.checkpoint} at {spec.weight}%: {decision.message}"
    plan = CanaryPlan(decision.checkpoint, decision.uri, spec.weight, decision.message)
    event = None
    if old is None or old.checkpoint != decision.checkpoint:
        replaced = f" (replacing canary {old.checkpoint})" if old is not None else ""
        share = canary_share(deployment, spec.weight, routed)
        said = message if share == spec.weight else message.replace(f" at {spec.weight}%:", f" at {share}%:", 1)
        how = "" if routed else f" (replica proportion for spec.promotion.canary.weight {spec.weight}%)"
        event = ("Normal", c.Reason.CANARY_STARTED, f"{said}{replaced}; {stable} serves the rest{how}")
    return Split(replace(keep, message=message), plan, event)


def replica_split(total: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replicas whose proportion comes closest to `weight` percent with one of each at least."""
    if total <= 0:
        return 0, 0
    if total == 1:
        return 1, 1
    canary = min(max(round(total * weight / 100), 1), total - 1)
    return total - canary, canary


def canary_share(deployment: ModelDeployment, weight: int, routed: bool) -> int:
    """The percent of requests the canary gets: the HTTPRoute's weight, or its replicas' proportion."""
    if routed:
        return weight
    s, k = replica_split(total_replicas(deployment), weight)
    return round(100 * k / (s + k)) if s + k else 0


def route_pending(route: dict[str, Any], parent: dict[str, Any]) -> str | None:
    """Why the HTTPRoute's weights are not in effect: its status has no parent entry for `parent` (the Gateway has
    not seen it) or Accepted/ResolvedRefs is not True there; None once both are."""
    name = (route.get("metadata") or {}).get("name", "")
    gateway = (
        f"Gateway {parent.get('namespace') or (route.get('metadata') or {}).get('namespace', '')}/{parent['name']}"
    )
    for entry in (route.get("status") or {}).get("parents") or []:
        ref = entry.get("parentRef") or {}
        if ref.get("name") != parent["name"] or ref.get("namespace", "") not in ("", parent.get("namespace", "")):
            continue
        if ref.get("sectionName", "") != parent.get("sectionName", ""):
            continue
        for kind in ("Accepted", "ResolvedRefs"):
            cond = next((x for x in entry.get("conditions") or [] if x.get("type") == kind), None)
            if cond is None or cond.get("status") != "True":
                why = f" ({cond.get('reason')}: {cond.get('message')})" if cond is not None else ""
                return f"HTTPRoute {name!r} not {kind} by {gateway}{why}"
        return None
    return f"HTTPRoute {name!r} not accepted by {gateway} yet (no status for it: is the Gateway there?)"


def traffic(
    deployment: ModelDeployment, stable: Decision, canary: CanaryPlan | None, revision: int | None, routed: bool
) -> list[dict[str, Any]]:
    """status.traffic: stable and canary with the share each gets (the HTTPRoute's weights, or the replica
    proportion); empty without spec.promotion.canary or with nothing served."""
    if deployment.spec.promotion.canary is None or stable.checkpoint is None:
        return []
    weight = canary_share(deployment, canary.weight, routed) if canary is not None else 0
    out = [
        TrafficTarget(
            track="stable", checkpoint=stable.checkpoint, uri=stable.uri, weight=100 - weight, revision=revision
        )
    ]
    if canary is not None:
        out.append(TrafficTarget(track="canary", checkpoint=canary.checkpoint, uri=canary.uri, weight=weight))
    return [t.to_k8s() for t in out]


def total_replicas(deployment: ModelDeployment) -> int:
    """The replicas the proportion is taken over: spec.replicas, or the autoscaler's minimum."""
    scaling = deployment.spec.autoscaling
    return scaling.min_replicas if scaling is not None else deployment.spec.replicas


def build_httproute(
    deployment: ModelDeployment, name: str, stable_service: str, canary_service: str, canary: CanaryPlan | None
) -> dict[str, Any]:
    """Gateway API HTTPRoute `name` attached to spec.gateway: stable and canary Services weighted as the spec says."""
    gateway = deployment.spec.gateway
    assert gateway is not None
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name}
    if gateway.namespace:
        parent["namespace"] = gateway.namespace
    if gateway.section_name:
        parent["sectionName"] = gateway.section_name
    weight = canary.weight if canary is not None else 0
    backends = [{"name": stable_service, "port": c.SERVE_PORT, "weight": 100 - weight}]
    if canary is not None:
        backends.append({"name": canary_service, "port": c.SERVE_PORT, "weight": weight})
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": gateway.path_prefix}}]}
    if gateway.path_prefix != "/":  # the server answers /v1/...: the prefix is the route's, not the model's
        rewrite = {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}
        rule["filters"] = [{"type": "URLRewrite", "urlRewrite": rewrite}]
    rule["backendRefs"] = backends
    spec: dict[str, Any] = {"parentRefs": [parent]}
    if gateway.hostnames:
        spec["hostnames"] = list(gateway.hostnames)
    spec["rules"] = [rule]
    return {
        "apiVersion": HTTPROUTE_API,
        "kind": "HTTPRoute",
        "metadata": child_metadata(deployment, c.ROLE_SERVE, name=name),
        "spec": spec,
    }


RouteKey = tuple[str, str, str, tuple[str, ...], str]
"""(gateway namespace, gateway name, sectionName, sorted hostnames, pathPrefix): two HTTPRoutes with the same key
match the same requests on the same listener, and Gateway API gives them all to the older route."""


def route_key(namespace: str, gateway: dict[str, Any]) -> RouteKey:
    """The match of a ModelDeployment's HTTPRoute, from its spec.gateway as written (camelCase, defaults filled)."""
    return (
        gateway.get("namespace") or namespace,
        gateway.get("name", ""),
        gateway.get("sectionName") or "",
        tuple(sorted(gateway.get("hostnames") or [])),
        gateway.get("pathPrefix") or "/",
    )


RouteHolder = tuple[str, str, str]
"""(creationTimestamp, namespace, name) of a ModelDeployment holding a route key."""


def route_conflict(me: RouteHolder, holders: list[RouteHolder]) -> str | None:
    """The message when an older ModelDeployment (created earlier; the same second: the name first in order, as
    Gateway API breaks ties) has the same Gateway parent and match, so this one's route gets no request."""
    older = sorted(h for h in set(holders) if h != me and h < me)
    if not older:
        return None
    _, namespace, name = older[0]
    return (
        f"spec.gateway: ModelDeployment {namespace}/{name} already routes the same Gateway listener, hostnames and "
        "pathPrefix; Gateway API gives every such request to the older route, so this one would get none. "
        "Set spec.gateway.hostnames or spec.gateway.pathPrefix to tell them apart"
    )
