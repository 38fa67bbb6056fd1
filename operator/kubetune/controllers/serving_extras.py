"""What a ModelDeployment has beside its Deployment and Service: the autoscaler (KEDA ScaledObject or HPA), the
NetworkPolicy and the PodMonitor. Which optional engines the cluster serves is asked once, at the first
ModelDeployment the operator serves (a CRD installed later needs an operator restart, as for JobSet)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kubetune import k8s
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.builders import autoscaling, monitoring, network_policy, serving
from kubetune.builders.autoscaling import ClusterEngines
from kubetune.controllers.common import OperatorState

Apply = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Extras:
    """The objects to apply, and the kinds (of the serving name) to delete because the spec no longer asks."""

    apply: list[dict[str, Any]]
    delete: list[str]


async def engines(state: OperatorState) -> ClusterEngines:
    """KEDA and the Prometheus Operator's PodMonitor: served by the cluster and allowed by the settings."""
    if state.serving_engines is None:
        cfg = state.config.scaling
        keda = cfg.keda_allowed and await k8s.served("ScaledObject")
        pod_monitor = cfg.pod_monitor_allowed and await k8s.served("PodMonitor")
        state.serving_engines = ClusterEngines(keda=keda, pod_monitor=pod_monitor)
    return state.serving_engines


async def desired(md: ModelDeployment, state: OperatorState) -> Extras:
    """What the spec asks for on this cluster; SpecError (before anything is applied) when it cannot be had."""
    found = await engines(state)
    cfg = state.config.scaling
    engine = autoscaling.engine_of(md, found)
    apply: list[dict[str, Any]] = []
    delete: list[str] = []
    if engine == "keda":
        apply.append(autoscaling.build_scaled_object(md, cfg))
    elif found.keda:
        delete.append("ScaledObject")
    hpa = autoscaling.build_hpa(md) if engine == "hpa" else None
    if hpa is not None:
        apply.append(hpa)
    else:
        delete.append("HorizontalPodAutoscaler")
    policy = network_policy.build_network_policy(md, cfg.monitoring_namespaces)
    if policy is not None:
        apply.append(policy)
    else:
        delete.append("NetworkPolicy")
    if found.pod_monitor:
        apply.append(monitoring.build_pod_monitor(md, cfg.pod_monitor_labels))
    return Extras(apply, delete)


async def reconcile(md: ModelDeployment, extras: Extras, apply: Apply) -> None:
    """Apply what is asked (with the controller's `apply`, which settles ownership), delete what no longer is."""
    for manifest in extras.apply:
        await apply(manifest)
    for kind in extras.delete:
        await k8s.delete(kind, md.metadata.namespace, serving.serving_name(md))
