"""The NetworkPolicy of a ModelDeployment's serving pods (`spec.networkPolicy`): who may connect to them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetune import constants as c
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.builders.meta import child_metadata
from kubetune.builders.serving import all_tracks_selector, serving_name

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace


def _namespace_peer(namespace: str, pod_labels: dict[str, str] | None = None) -> dict[str, Any]:
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
    if pod_labels:
        peer["podSelector"] = {"matchLabels": dict(pod_labels)}
    return peer


def build_network_policy(
    deployment: ModelDeployment, monitoring_namespaces: Sequence[str] = ("monitoring",)
) -> dict[str, Any] | None:
    """A NetworkPolicy on the serving pods admitting, on the serving port only: the namespace's own pods (unless
    `sameNamespace: false`), the named namespaces, the gateway's pods, and Prometheus from the monitoring
    namespaces (`spec.networkPolicy.monitoringNamespaces`, default `monitoring_namespaces` from the operator
    settings; /metrics is on the serving port). Nothing else reaches them. None without `spec.networkPolicy`."""
    policy = deployment.spec.network_policy
    if policy is None:
        return None
    port = [{"protocol": "TCP", "port": c.SERVE_PORT}]
    callers: list[dict[str, Any]] = []
    if policy.same_namespace:
        callers.append({"podSelector": {}})  # a podSelector alone: pods of the policy's own namespace
    callers += [_namespace_peer(ns) for ns in policy.namespaces]
    if policy.gateway is not None:
        callers.append(_namespace_peer(policy.gateway.namespace, policy.gateway.pod_labels))
    scrapers = policy.monitoring_namespaces if policy.monitoring_namespaces is not None else monitoring_namespaces
    # An ingress rule with no `from` admits everyone: a rule is written only when it names someone.
    ingress = [{"from": peers, "ports": port} for peers in (callers, [_namespace_peer(ns) for ns in scrapers]) if peers]
    spec: dict[str, Any] = {
        "podSelector": all_tracks_selector(deployment),  # a canary is guarded as stable is
        "policyTypes": ["Ingress"],  # with no ingress rule: nobody is admitted
    }
    if ingress:  # the API server stores an empty list as absent: applying [] would rewrite it every resync
        spec["ingress"] = ingress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(deployment, c.ROLE_SERVE, name=serving_name(deployment)),
        "spec": spec,
    }
