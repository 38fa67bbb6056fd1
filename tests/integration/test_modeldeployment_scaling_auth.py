"""Autoscaling, NetworkPolicy and API key of a ModelDeployment through the API server, with real kubectl.

`spec.autoscaling` becomes a KEDA ScaledObject where the cluster serves them (the CRD installed before the
operator starts) and a plain HPA otherwise; `spec.networkPolicy` a NetworkPolicy on the serving pods;
`spec.auth.apiKeySecretRef` a secretKeyRef in the pod spec, and the key's value appears nowhere: not in the
ModelDeployment's status, not in its Events, not in the operator's log.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from harness import GROUP_PATH, NAMESPACE, ROOT, Cluster, InProcessOperator, operator_with_crd, wait_for

MDEP_PATH = f"{GROUP_PATH}/namespaces/{NAMESPACE}/modeldeployments/travel"
KEDA_CRD = ROOT / "tests" / "fixtures" / "crds" / "keda.sh_scaledobjects.yaml"
SCALED_OBJECTS = f"/apis/keda.sh/v1alpha1/namespaces/{NAMESPACE}/scaledobjects"
KEY = "sk-live-4b1d-recognisable-9e27"  # grepped for everywhere it must not be
ENCODED = base64.b64encode(KEY.encode()).decode()


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "travel", "namespace": NAMESPACE, "labels": {"team": "travel"}},
        "spec": {
            "model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "resources": {"gpus": 0},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "targetConcurrency": 4},
            **spec,
        },
    }


def status(cluster: Cluster) -> dict[str, Any]:
    return (cluster.get(MDEP_PATH) or {}).get("status") or {}


@pytest.fixture
def keda_operator(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessOperator]:
    """The ScaledObject CRD installed, then the operator started (it asks once, at its first serving)."""
    with operator_with_crd(cluster, monkeypatch, KEDA_CRD, "scaledobjects.keda.sh", SCALED_OBJECTS) as op:
        yield op


def test_keda_scaledobject_networkpolicy_and_an_api_key_that_is_never_shown(
    cluster: Cluster, keda_operator: InProcessOperator, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the operator's log, all of it (kopf and kubetune, in this process)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "travel-key", "namespace": NAMESPACE},
        "data": {"token": ENCODED},
    }
    cluster.create(f"/api/v1/namespaces/{NAMESPACE}/secrets", secret)
    cluster.apply(
        deployment(
            auth={"apiKeySecretRef": {"name": "travel-key", "key": "token"}},
            networkPolicy={"namespaces": ["team-b"]},
        )
    )

    scaled = wait_for(lambda: cluster.get(f"{SCALED_OBJECTS}/travel") or {}, what="the ScaledObject")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "travel"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 3)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "4"
    assert trigger["metadata"]["query"].startswith("sum(kubetune_serve_requests_in_flight{")
    assert scaled["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    assert scaled["metadata"]["labels"]["team"] == "travel"  # governance labels reach the autoscaler too
    assert "travel" not in cluster.objects("horizontalpodautoscalers")  # KEDA makes its own HPA, not us

    policy = wait_for(lambda: cluster.objects("networkpolicies").get("travel") or {}, what="the NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"kubetune.dev/modeldeployment": "travel"}
    callers = policy["spec"]["ingress"][0]
    assert callers["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-b"}}} in callers["from"]

    dep = wait_for(lambda: cluster.objects("deployments").get("travel") or {}, what="the serving Deployment")
    assert "replicas" not in dep["spec"] or dep["spec"]["replicas"] == 1  # the autoscaler's, never set by us
    (server,) = dep["spec"]["template"]["spec"]["containers"]
    (var,) = [e for e in server["env"] if e["name"] == "KUBETUNE_API_KEY"]
    assert var == {"name": "KUBETUNE_API_KEY", "valueFrom": {"secretKeyRef": {"name": "travel-key", "key": "token"}}}
    assert KEY not in json.dumps(dep) and ENCODED not in json.dumps(dep)

    wait_for(lambda: status(cluster).get("endpoint"), what="the endpoint in status")
    md_status = status(cluster)
    assert md_status["phase"] != "Failed", md_status
    keda_operator.stop()
    log = "\n".join([caplog.text, capfd.readouterr().err, *keda_operator.outputs])
    assert "modeldeployment_changed" in log  # the log was captured: the operator's handler of this object
    for text in (json.dumps(md_status), json.dumps(cluster.events("travel")), log):
        assert KEY not in text and ENCODED not in text


def test_without_keda_the_hpa_is_the_fallback(cluster: Cluster, operator: InProcessOperator) -> None:
    cluster.apply(deployment())
    hpa = wait_for(lambda: cluster.objects("horizontalpodautoscalers").get("travel") or {}, what="the HPA")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "travel"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == "kubetune_serve_requests_in_flight"
    assert cluster.get(SCALED_OBJECTS) is None  # nothing of KEDA's on this cluster
    assert "travel" not in cluster.objects("networkpolicies")  # no spec.networkPolicy, no policy

    # minReplicas 0 needs KEDA: the ModelDeployment fails, saying so, and the HPA stays as it was.
    to_zero = {"spec": {"autoscaling": {"minReplicas": 0, "wakeQuery": "sum(rate(gateway_requests_total[1m]))"}}}
    cluster.kubectl("patch", "modeldeployment", "travel", "--type=merge", "-p", json.dumps(to_zero))
    wait_for(lambda: status(cluster).get("phase") == "Failed", what="Failed")
    assert "spec.autoscaling.minReplicas: 0 (scale to zero) needs KEDA" in status(cluster)["message"]
    assert cluster.objects("horizontalpodautoscalers")["travel"]["spec"]["minReplicas"] == 1
