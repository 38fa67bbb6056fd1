"""Serving on a shared cluster: KEDA ScaledObject (HPA fallback), PodMonitor, NetworkPolicy, API key, extra vLLM args."""

from __future__ import annotations

import pytest

from kubetune.api import ModelDeployment
from kubetune.builders import autoscaling, monitoring, network_policy, serving
from kubetune.builders.autoscaling import ClusterEngines, ScalingSettings
from kubetune.builders.promotion import Decision
from kubetune.errors import SpecError

CKPT = "pvc://travel-data/output/checkpoint-400"
PROMOTE = Decision("promote", "checkpoint-400", CKPT, "Promoted", "exact_match 0.88 passed")
KEDA = ClusterEngines(keda=True, pod_monitor=True)
PLAIN = ClusterEngines()


def md(**spec) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "team-a", "uid": "m-1"},
            "spec": {"model": {"uri": CKPT}, **spec},
        }
    )


def server(deployment: ModelDeployment) -> dict:
    plan = serving.plan(deployment, PROMOTE, None)
    dep = serving.build_deployment(deployment, plan, None)
    return dep["spec"]["template"]["spec"]["containers"][0]


# --- autoscaling -----------------------------------------------------------------------------------------


def test_keda_chosen_where_served_and_scales_vllm_on_running_plus_waiting():
    deployment = md(resources={"gpus": 1}, autoscaling={"minReplicas": 1, "maxReplicas": 6, "targetConcurrency": 4})
    assert autoscaling.engine_of(deployment, KEDA) == "keda"
    assert autoscaling.engine_of(deployment, PLAIN) == "hpa"
    so = autoscaling.build_scaled_object(deployment, ScalingSettings(prometheus_url="http://prom.mon.svc:9090"))
    assert so["apiVersion"] == "keda.sh/v1alpha1" and so["kind"] == "ScaledObject"
    assert so["metadata"]["ownerReferences"][0]["uid"] == "m-1"
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "travel"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 6)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == "http://prom.mon.svc:9090"
    assert trigger["metadata"]["threshold"] == "4"
    query = trigger["metadata"]["query"]
    assert "vllm:num_requests_running|vllm:num_requests_waiting" in query
    assert 'namespace="team-a"' in query and 'pod=~"(travel|travel-serve-canary)-[a-z0-9]+-[a-z0-9]+"' in query
    assert "cooldownPeriod" not in spec  # only when it may go to zero


def test_built_in_server_is_scaled_on_its_own_in_flight_gauge():
    deployment = md(autoscaling={"maxReplicas": 3})
    so = autoscaling.build_scaled_object(deployment)
    query = so["spec"]["triggers"][0]["metadata"]["query"]
    assert query.startswith("sum(kubetune_serve_requests_in_flight{") and "vllm" not in query


def test_scale_to_zero_needs_keda_and_a_wake_query():
    deployment = md(
        resources={"gpus": 1},
        autoscaling={"minReplicas": 0, "wakeQuery": 'sum(rate(envoy_http_rq{route="travel"}[1m]))'},
    )
    so = autoscaling.build_scaled_object(deployment)
    assert so["spec"]["minReplicaCount"] == 0 and so["spec"]["cooldownPeriod"] == 600
    assert [t["name"] for t in so["spec"]["triggers"]] == ["load", "wake"]
    assert so["spec"]["triggers"][1]["metadata"]["query"].startswith("sum(rate(envoy_http_rq")
    with pytest.raises(SpecError, match=r"spec.autoscaling.minReplicas: 0 .*needs KEDA"):
        autoscaling.engine_of(deployment, PLAIN)


def test_keda_asked_for_but_not_installed_says_what_to_do():
    with pytest.raises(SpecError, match=r"spec.autoscaling.engine: keda.*set engine: hpa"):
        autoscaling.engine_of(md(autoscaling={"engine": "keda"}), PLAIN)
    assert autoscaling.engine_of(md(autoscaling={"engine": "hpa"}), KEDA) == "hpa"
    assert autoscaling.engine_of(md(), KEDA) is None


def test_hpa_fallback_keeps_the_scale_down_delay():
    hpa = autoscaling.build_hpa(md(autoscaling={"scaleDownDelaySeconds": 120}))
    assert hpa is not None
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120


def test_settings_from_the_environment():
    s = ScalingSettings.from_env(
        {
            "KUBETUNE_PROMETHEUS_URL": "http://p:9090",
            "KUBETUNE_KEDA": "false",
            "KUBETUNE_POD_MONITOR_LABELS": '{"release": "prom"}',
            "KUBETUNE_MONITORING_NAMESPACES": "obs, mon",
        }
    )
    assert (s.prometheus_url, s.keda_allowed, s.pod_monitor_allowed) == ("http://p:9090", False, True)
    assert s.pod_monitor_labels == {"release": "prom"} and s.monitoring_namespaces == ("obs", "mon")
    with pytest.raises(ValueError, match="KUBETUNE_POD_MONITOR_LABELS"):
        ScalingSettings.from_env({"KUBETUNE_POD_MONITOR_LABELS": '["x"]'})


# --- scraping --------------------------------------------------------------------------------------------


def test_pod_monitor_selects_the_serving_pods_metrics_port():
    deployment = md()
    pm = monitoring.build_pod_monitor(deployment, {"release": "prom"})
    assert pm["apiVersion"] == "monitoring.coreos.com/v1" and pm["kind"] == "PodMonitor"
    assert pm["metadata"]["labels"]["release"] == "prom"
    assert pm["spec"]["selector"] == serving.all_tracks_selector(deployment)  # stable and canary pods
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")


# --- network policy --------------------------------------------------------------------------------------


def test_no_network_policy_unless_asked():
    assert network_policy.build_network_policy(md()) is None


def test_network_policy_admits_only_what_the_spec_names():
    deployment = md(
        networkPolicy={
            "namespaces": ["team-b"],
            "gateway": {"namespace": "envoy-gateway-system", "podLabels": {"app": "envoy"}},
        }
    )
    np = network_policy.build_network_policy(deployment, ("monitoring",))
    assert np is not None
    spec = np["spec"]
    assert spec["podSelector"] == serving.all_tracks_selector(deployment)  # stable and canary pods
    assert spec["policyTypes"] == ["Ingress"]
    callers, scrapers = spec["ingress"]
    assert callers["ports"] == [{"protocol": "TCP", "port": 8000}]
    ns = "kubernetes.io/metadata.name"
    assert callers["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {ns: "team-b"}}},
        {
            "namespaceSelector": {"matchLabels": {ns: "envoy-gateway-system"}},
            "podSelector": {"matchLabels": {"app": "envoy"}},
        },
    ]
    assert scrapers["from"] == [{"namespaceSelector": {"matchLabels": {ns: "monitoring"}}}]


def test_network_policy_with_nobody_admitted_denies_all_rather_than_allowing_all():
    deployment = md(networkPolicy={"sameNamespace": False, "monitoringNamespaces": []})
    np = network_policy.build_network_policy(deployment)
    assert np is not None and np["spec"]["policyTypes"] == ["Ingress"]  # Ingress with no rule: nobody admitted
    # not `ingress: []`: the API server stores it as absent, so applying it rewrote the policy every resync (T3 D6);
    # and never a rule without `from`, which would admit everyone
    assert "ingress" not in np["spec"]


# --- API key ---------------------------------------------------------------------------------------------

AUTH = {"apiKeySecretRef": {"name": "travel-key", "key": "token"}}


def test_api_key_reaches_the_built_in_server_by_secret_reference():
    container = server(md(auth=AUTH))
    (var,) = [e for e in container["env"] if e["name"] == "KUBETUNE_API_KEY"]
    assert var == {"name": "KUBETUNE_API_KEY", "valueFrom": {"secretKeyRef": {"name": "travel-key", "key": "token"}}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"  # open: needs no key
    assert not [e for e in server(md())["env"] if e["name"] == "KUBETUNE_API_KEY"]


def test_api_key_reaches_vllm_as_its_env_not_an_argument():
    container = server(md(auth=AUTH, resources={"gpus": 1}))
    (var,) = [e for e in container["env"] if e["name"] == "VLLM_API_KEY"]
    assert var["valueFrom"]["secretKeyRef"] == {"name": "travel-key", "key": "token"}
    assert not [a for a in container["args"] if "api-key" in a]  # vLLM logs its arguments
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


# --- extra vLLM arguments --------------------------------------------------------------------------------


def test_extra_args_are_passed_to_vllm():
    extra = ["--tool-call-parser=hermes", "--enable-auto-tool-choice", "--quantization", "awq", "--max-model-len=8192"]
    args = server(md(resources={"gpus": 1}, extraArgs=extra))["args"]
    assert args[-len(extra) :] == extra


@pytest.mark.parametrize(
    ("spec", "arg", "message"),
    [
        ({}, "--port=9000", r"spec.extraArgs\[1\]: --port is set by the operator"),
        ({}, "--api-key", r"spec.extraArgs\[1\]: --api-key .*spec.auth.apiKeySecretRef"),
        ({"maxModelLen": 4096}, "--max_model_len=8192", r"--max-model-len .*set spec.maxModelLen instead"),
        ({"resources": {"gpus": 2}}, "--tensor-parallel-size=4", r"spec.resources.gpus"),
    ],
)
def test_extra_args_colliding_with_operator_flags_are_refused_with_the_field(spec, arg, message):
    deployment = md(**{"resources": {"gpus": 1}, **spec, "extraArgs": ["--enforce-eager", arg]})
    with pytest.raises(SpecError, match=message):
        server(deployment)


def test_extra_args_on_the_built_in_server_are_refused():
    with pytest.raises(SpecError, match=r"spec.extraArgs: extra arguments go to vLLM"):
        server(md(extraArgs=["--quantization=awq"]))
