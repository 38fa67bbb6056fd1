"""Replicas that follow the load of a ModelDeployment: a KEDA ScaledObject, or the plain HPA as fallback.

KEDA (keda.sh/v1alpha1 ScaledObject) asks Prometheus for the requests in flight (running + waiting) on the
serving pods and scales the Deployment to `targetConcurrency` per replica, down to zero when asked. The query
follows the runtime (one vocabulary, docs/serving-autoscaling.md):

    vLLM            vllm:num_requests_running + vllm:num_requests_waiting
    built-in server kubetune_serve_requests_in_flight (running + queued)

The fallback, an autoscaling/v2 HPA on the pods metric `kubetune_serve_requests_in_flight`, needs a
custom-metrics adapter (e.g. prometheus-adapter, with a rule renaming vLLM's series); without one it reports
FailedGetPodsMetric and keeps the replica count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kubetune import constants as c
from kubetune.api.modeldeployment import AutoscalingSpec, ModelDeployment
from kubetune.builders.meta import child_metadata
from kubetune.builders.serving import Runtime, runtime_of, serving_name, workload_name
from kubetune.errors import SpecError

Engine = Literal["keda", "hpa"]
KEDA_API_VERSION = "keda.sh/v1alpha1"
VLLM_LOAD_METRICS = ("vllm:num_requests_running", "vllm:num_requests_waiting")
POLLING_SECONDS = 15
ENV_PROMETHEUS_URL = "KUBETUNE_PROMETHEUS_URL"
ENV_KEDA = "KUBETUNE_KEDA"
ENV_POD_MONITOR = "KUBETUNE_POD_MONITOR"
ENV_POD_MONITOR_LABELS = "KUBETUNE_POD_MONITOR_LABELS"
ENV_MONITORING_NAMESPACES = "KUBETUNE_MONITORING_NAMESPACES"
_OFF = ("0", "false", "no")


@dataclass(frozen=True)
class ScalingSettings:
    """Operator settings for autoscaling and scraping (KUBETUNE_* variables; Helm `serving.*`)."""

    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"  # where KEDA asks
    keda_allowed: bool = True  # KUBETUNE_KEDA is not false: use KEDA where the cluster serves ScaledObjects
    pod_monitor_allowed: bool = True  # KUBETUNE_POD_MONITOR is not false: a PodMonitor per serving Deployment
    pod_monitor_labels: dict[str, str] = field(default_factory=dict)  # e.g. the `release` a Prometheus selects
    monitoring_namespaces: tuple[str, ...] = ("monitoring",)  # where Prometheus runs (NetworkPolicy default)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ScalingSettings:
        """From KUBETUNE_PROMETHEUS_URL, KUBETUNE_KEDA and KUBETUNE_POD_MONITOR (auto | false),
        KUBETUNE_POD_MONITOR_LABELS (a JSON object) and KUBETUNE_MONITORING_NAMESPACES (comma-separated);
        unset: the default. ValueError naming the variable when one cannot be read."""
        d = cls()
        labels = env.get(ENV_POD_MONITOR_LABELS)
        parsed = json.loads(labels) if labels else {}
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise ValueError(f'{ENV_POD_MONITOR_LABELS}: give a JSON object of strings, e.g. {{"release": "prom"}}')
        namespaces = env.get(ENV_MONITORING_NAMESPACES)
        return cls(
            prometheus_url=env.get(ENV_PROMETHEUS_URL, d.prometheus_url),
            keda_allowed=(env.get(ENV_KEDA) or "auto").lower() not in _OFF,
            pod_monitor_allowed=(env.get(ENV_POD_MONITOR) or "auto").lower() not in _OFF,
            pod_monitor_labels={str(k): v for k, v in parsed.items()},
            monitoring_namespaces=d.monitoring_namespaces
            if namespaces is None
            else tuple(n.strip() for n in namespaces.split(",") if n.strip()),
        )


@dataclass(frozen=True)
class ClusterEngines:
    """Which optional serving engines the cluster serves (discovered at operator start) and may be used."""

    keda: bool = False
    pod_monitor: bool = False


def engine_of(deployment: ModelDeployment, engines: ClusterEngines) -> Engine | None:
    """Which engine scales `deployment`; None without `spec.autoscaling`. SpecError when the spec asks for
    what the cluster lacks."""
    scaling = deployment.spec.autoscaling
    if scaling is None:
        return None
    if scaling.engine == "keda" and not engines.keda:
        raise SpecError(
            "spec.autoscaling.engine: keda, but the cluster serves no keda.sh/v1alpha1 ScaledObjects (or the "
            "operator may not use them: Helm serving.autoscaling.keda); install KEDA and restart the operator, "
            "or set engine: hpa"
        )
    engine: Engine = "keda" if scaling.engine == "keda" or (scaling.engine == "auto" and engines.keda) else "hpa"
    if engine == "hpa" and scaling.min_replicas == 0:
        raise SpecError(
            "spec.autoscaling.minReplicas: 0 (scale to zero) needs KEDA, which this cluster does not serve; "
            "install KEDA and restart the operator, or set minReplicas to 1 or more"
        )
    return engine


def pod_selector(deployment: ModelDeployment) -> str:
    """PromQL label matchers of the serving pods (`<deployment>-<template hash>-<suffix>`) of both Deployments,
    stable and canary (`<name>-serve-canary`: its load is the ModelDeployment's too), by the `namespace` and
    `pod` target labels every Kubernetes scrape adds."""
    namespace = deployment.metadata.namespace or "default"
    workloads = "|".join(workload_name(deployment, track) for track in ("stable", "canary"))
    return f'namespace="{namespace}",pod=~"({workloads})-[a-z0-9]+-[a-z0-9]+"'


def load_query(deployment: ModelDeployment, runtime: Runtime) -> str:
    """Requests in flight (running + waiting) on all serving pods, in the runtime's own metric names."""
    sel = pod_selector(deployment)
    if runtime == "vllm":
        names = "|".join(VLLM_LOAD_METRICS)
        return f'sum({{__name__=~"{names}",{sel}}})'
    return f"sum({c.SERVE_CONCURRENCY_METRIC}{{{sel}}})"


def _behavior(scaling: AutoscalingSpec) -> dict[str, Any]:
    """Scale up at once, down only after the load stayed low for `scaleDownDelaySeconds` (servers start slowly)."""
    return {"scaleDown": {"stabilizationWindowSeconds": scaling.scale_down_delay_seconds}}


def _prometheus_trigger(url: str, query: str, threshold: int, name: str) -> dict[str, Any]:
    return {
        "type": "prometheus",
        "name": name,
        "metadata": {
            "serverAddress": url,
            "query": query,
            "threshold": str(threshold),
            "activationThreshold": "0",
            "ignoreNullValues": "true",  # no pods yet (or none scraped): 0, not an error
        },
    }


def build_scaled_object(deployment: ModelDeployment, settings: ScalingSettings | None = None) -> dict[str, Any]:
    """The KEDA ScaledObject scaling the serving Deployment on its load; owned by the ModelDeployment."""
    settings = settings or ScalingSettings()
    scaling = deployment.spec.autoscaling
    if scaling is None:
        raise ValueError("build_scaled_object needs spec.autoscaling")
    if not settings.prometheus_url:
        raise SpecError(
            "spec.autoscaling: KEDA needs the Prometheus address, and the operator has none "
            "(Helm serving.autoscaling.prometheusUrl, KUBETUNE_PROMETHEUS_URL)"
        )
    name = serving_name(deployment)
    query = load_query(deployment, runtime_of(deployment))
    triggers = [_prometheus_trigger(settings.prometheus_url, query, scaling.target_concurrency, "load")]
    if scaling.wake_query:
        triggers.append(_prometheus_trigger(settings.prometheus_url, scaling.wake_query, 1, "wake"))
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "pollingInterval": POLLING_SECONDS,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(scaling)}},
        "triggers": triggers,
    }
    if scaling.min_replicas == 0:
        spec["cooldownPeriod"] = scaling.scale_down_delay_seconds  # idle this long before going to zero
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": child_metadata(deployment, c.ROLE_SERVE, name=name),
        "spec": spec,
    }


def build_hpa(deployment: ModelDeployment) -> dict[str, Any] | None:
    """autoscaling/v2 HPA on in-flight requests per pod; None without `spec.autoscaling`.

    `kubetune_serve_requests_in_flight` is a custom pods metric: it needs a metrics adapter (e.g.
    prometheus-adapter) that serves it from the pods' Prometheus metrics: the image's server exports
    it under that name, vLLM as `vllm:num_requests_running` + `vllm:num_requests_waiting` (an adapter rule
    sums and renames them). Without an adapter the HPA reports FailedGetPodsMetric and keeps the replica count.
    """
    scaling = deployment.spec.autoscaling
    if scaling is None:
        return None
    name = serving_name(deployment)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(deployment, c.ROLE_SERVE, name=name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": max(scaling.min_replicas, 1),
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": c.SERVE_CONCURRENCY_METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(scaling.target_concurrency)},
                    },
                }
            ],
            "behavior": _behavior(scaling),
        },
    }
