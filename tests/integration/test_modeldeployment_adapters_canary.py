"""Multi-LoRA and canary promotion through the API server, with real kubectl.

Adapters: one ModelDeployment serves a base and two LoRA FineTuneJobs' adapters; promoting, pinning or rolling
back one adapter changes only the adapter-set ConfigMap: the serving Deployment (its template, its generation)
stays as it is, so no pod restarts. Canary: a better checkpoint goes to `<name>-serve-canary` at the spec's weight,
split by replicas behind the one Service, or by an HTTPRoute's backend weights where the cluster serves HTTPRoute;
it is rolled back when the Evaluation says it failed, and promoted at weight 100.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from harness import (
    EVAL_PATH,
    GROUP_PATH,
    NAMESPACE,
    ROOT,
    Cluster,
    InProcessOperator,
    evaluation,
    example,
    operator_with_crd,
    wait_for,
)

BASE = "hf://Qwen/Qwen2.5-0.5B-Instruct"
MDEP_PATH = f"{GROUP_PATH}/namespaces/{NAMESPACE}/modeldeployments/travel"
ROUTE_CRD = ROOT / "tests" / "fixtures" / "crds" / "gateway.networking.k8s.io_httproutes.yaml"
ROUTES = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/httproutes"


def trained(cluster: Cluster, name: str, *steps: int) -> None:
    """A LoRA FineTuneJob that trained (the Job controller's and the trainer's parts played here)."""
    cluster.apply(example(name, resources={"gpus": 0}))
    wait_for(lambda: cluster.objects("jobs").get(f"{name}-train"), what=f"the training Job of {name}")
    cps = [{"name": f"checkpoint-{s}", "step": s, "uri": f"pvc://{name}-data/output/checkpoint-{s}"} for s in steps]
    path = f"{GROUP_PATH}/namespaces/{NAMESPACE}/finetunejobs/{name}"
    cluster.patch_status(path, {"checkpoints": cps, "bestCheckpoint": cps[-1]["name"]})
    cluster.finish_job(f"{name}-train")
    wait_for(lambda: (cluster.ftj(name).get("status") or {}).get("phase") == "Succeeded", what=f"{name} to succeed")


def mdep(cluster: Cluster) -> dict[str, Any]:
    return cluster.get(MDEP_PATH) or {}


def adapter_set(cluster: Cluster) -> dict[str, str]:
    cm = cluster.objects("configmaps").get("travel-serve-adapters")
    if cm is None:
        return {}
    return {a["name"]: a["path"] for a in json.loads(cm["data"]["adapters.json"])["adapters"]}


def kubectl_patch(cluster: Cluster, patch: dict[str, Any]) -> None:
    cluster.kubectl("patch", "modeldeployment", "travel", "--type=merge", "-p", json.dumps(patch))


def adapters_spec(fr_pin: str = "") -> list[dict[str, Any]]:
    return [
        {"name": "travel-fr", "fineTuneJob": {"name": "fr"}, "promotion": {"pin": fr_pin}},
        {"name": "travel-de", "fineTuneJob": {"name": "de"}},
    ]


def test_one_adapters_promotion_pin_and_rollback_change_only_the_adapter_configmap(cluster: Cluster, operator) -> None:
    trained(cluster, "fr", 200, 400)
    trained(cluster, "de", 300)
    cluster.apply(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "travel", "namespace": NAMESPACE},
            "spec": {"model": {"uri": BASE}, "adapters": adapters_spec("checkpoint-200"), "resources": {"gpus": 0}},
        }
    )
    wait_for(lambda: len(adapter_set(cluster)) == 2, what="the adapter set")
    assert adapter_set(cluster) == {
        "travel-fr": "/mnt/pvc/fr-data/output/checkpoint-200",
        "travel-de": "/mnt/pvc/de-data/output/checkpoint-300",
    }
    dep = wait_for(lambda: cluster.objects("deployments").get("travel"), what="the Deployment")
    template, generation = dep["spec"]["template"], dep["metadata"]["generation"]
    containers = [x["name"] for x in template["spec"]["containers"]]
    assert containers == ["server", "adapters-sync"]

    # Unpin travel-fr: it rolls forward to its best checkpoint; travel-de is untouched; no pod restarts.
    kubectl_patch(cluster, {"spec": {"adapters": adapters_spec()}})
    wait_for(
        lambda: adapter_set(cluster).get("travel-fr") == "/mnt/pvc/fr-data/output/checkpoint-400",
        what="travel-fr promoted in the ConfigMap",
    )
    assert adapter_set(cluster)["travel-de"] == "/mnt/pvc/de-data/output/checkpoint-300"
    status = wait_for(
        lambda: (
            (s := mdep(cluster).get("status") or {})
            and [a.get("servedCheckpoint") for a in s.get("adapters") or []] == ["checkpoint-400", "checkpoint-300"]
            and s
        ),
        what="per-adapter status",
    )
    fr, de = status["adapters"]
    assert [r["checkpoint"] for r in fr["revisions"]] == ["checkpoint-200", "checkpoint-400"]
    assert len(de["revisions"]) == 1

    # Pin travel-fr back: a rollback of that adapter alone.
    kubectl_patch(cluster, {"spec": {"adapters": adapters_spec("checkpoint-200")}})
    wait_for(
        lambda: adapter_set(cluster).get("travel-fr") == "/mnt/pvc/fr-data/output/checkpoint-200",
        what="travel-fr rolled back in the ConfigMap",
    )
    fr = wait_for(
        lambda: (a := (mdep(cluster).get("status") or {}).get("adapters")) and len(a[0]["revisions"]) == 3 and a[0],
        what="travel-fr's third revision",
    )
    assert fr["revisions"][-1]["reason"] == "pinned to checkpoint-200 (rollback from checkpoint-400)"

    dep = cluster.objects("deployments")["travel"]
    assert dep["spec"]["template"] == template
    assert dep["metadata"]["generation"] == generation  # the pod template never changed: no rollout, no restart
    reasons = [e["reason"] for e in cluster.events("travel") if e["involvedObject"]["kind"] == "ModelDeployment"]
    assert "RolledBack" in reasons and "RolledForward" in reasons


def result(step: int, score: float, passed: bool) -> dict[str, Any]:
    uri = f"pvc://travel-data/output/checkpoint-{step}"
    return {"model": f"checkpoint-{step}", "uri": uri, "metrics": {"exact_match": score}, "passed": passed}


def canary_deployment(weight: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "travel", "namespace": NAMESPACE},
        "spec": {
            "model": {"fineTuneJob": {"name": "travel"}},
            "promotion": {"evaluation": {"name": "travel-eval"}, "canary": {"weight": weight}},
            "resources": {"gpus": 0},
            **spec,
        },
    }


def serving_200(cluster: Cluster, manifest: dict[str, Any]) -> None:
    trained(cluster, "travel", 200, 400)
    cluster.apply(evaluation())
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.82, True), result(400, 0.5, False)]})
    cluster.apply(manifest)
    wait_for(lambda: (mdep(cluster).get("status") or {}).get("servedCheckpoint") == "checkpoint-200", what="stable")


def traffic(cluster: Cluster) -> list[tuple[str, str, int]]:
    return [
        (t["track"], t["checkpoint"], t["weight"]) for t in (mdep(cluster).get("status") or {}).get("traffic") or []
    ]


def test_canary_by_replica_proportion_and_its_automatic_rollback(cluster: Cluster, operator) -> None:
    serving_200(cluster, canary_deployment(25, replicas=4))
    assert "travel-serve-canary" not in cluster.objects("deployments")  # the first promotion has nothing to canary

    # A better checkpoint passes: it goes to the canary with a quarter of the replicas; stable keeps serving.
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.82, True), result(400, 0.9, True)]})
    canary = wait_for(lambda: cluster.objects("deployments").get("travel-serve-canary"), what="the canary")
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["template"]["metadata"]["annotations"]["kubetune.dev/checkpoint"] == "checkpoint-400"
    stable = cluster.objects("deployments")["travel"]
    assert stable["spec"]["replicas"] == 3
    assert stable["spec"]["template"]["metadata"]["annotations"]["kubetune.dev/checkpoint"] == "checkpoint-200"
    assert cluster.objects("services")["travel"]["spec"]["selector"] == {"kubetune.dev/modeldeployment": "travel"}
    wait_for(
        lambda: traffic(cluster) == [("stable", "checkpoint-200", 75), ("canary", "checkpoint-400", 25)], what="traffic"
    )
    assert mdep(cluster)["status"]["servedCheckpoint"] == "checkpoint-200"

    # The evaluation is re-run and checkpoint-400 now fails: the canary is rolled back on its own.
    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.82, True), result(400, 0.6, False)]})
    wait_for(lambda: "travel-serve-canary" not in cluster.objects("deployments"), what="the canary removed")
    wait_for(lambda: traffic(cluster) == [("stable", "checkpoint-200", 100)], what="all traffic on stable")
    assert cluster.objects("deployments")["travel"]["spec"]["replicas"] == 4
    assert cluster.objects("services")["travel"]["spec"]["selector"]["kubetune.dev/role"] == "serve"
    events = [e for e in cluster.events("travel") if e["reason"] == "CanaryRolledBack"]
    assert events and "canary checkpoint-400 removed: it failed Evaluation travel-eval" in events[0]["message"]


@pytest.fixture
def gateway_operator(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessOperator]:
    """The HTTPRoute CRD installed, then the operator started."""
    with operator_with_crd(cluster, monkeypatch, ROUTE_CRD, "httproutes.gateway.networking.k8s.io", ROUTES) as op:
        yield op


def backends(cluster: Cluster) -> list[tuple[str, int]]:
    route = cluster.get(f"{ROUTES}/travel") or {}
    rules = (route.get("spec") or {}).get("rules") or [{}]
    return [(b["name"], b["weight"]) for b in rules[0].get("backendRefs") or []]


def test_canary_weights_in_the_httproute_then_promoted_at_100(cluster: Cluster, gateway_operator) -> None:
    serving_200(cluster, canary_deployment(10, gateway={"name": "inference", "namespace": "gateways"}))
    wait_for(lambda: backends(cluster) == [("travel", 100)], what="the HTTPRoute")
    route = cluster.get(f"{ROUTES}/travel")
    assert route["spec"]["parentRefs"][0]["name"] == "inference"

    cluster.patch_status(EVAL_PATH, {"results": [result(200, 0.82, True), result(400, 0.9, True)]})
    wait_for(lambda: backends(cluster) == [("travel", 90), ("travel-serve-canary", 10)], what="the canary weight")
    assert cluster.objects("services")["travel-serve-canary"]["spec"]["selector"]["kubetune.dev/role"] == "serve-canary"
    assert cluster.objects("services")["travel"]["spec"]["selector"]["kubetune.dev/role"] == "serve"
    wait_for(
        lambda: traffic(cluster) == [("stable", "checkpoint-200", 90), ("canary", "checkpoint-400", 10)], what="traffic"
    )

    # Git raises the weight to 100: the canary checkpoint becomes stable (a revision), the canary goes away.
    kubectl_patch(cluster, {"spec": {"promotion": {"canary": {"weight": 100}}}})
    wait_for(lambda: (mdep(cluster).get("status") or {}).get("servedCheckpoint") == "checkpoint-400", what="promoted")
    wait_for(lambda: backends(cluster) == [("travel", 100)], what="all traffic on stable")
    wait_for(lambda: "travel-serve-canary" not in cluster.objects("deployments"), what="the canary removed")
    revisions = mdep(cluster)["status"]["revisions"]
    assert [r["checkpoint"] for r in revisions] == ["checkpoint-200", "checkpoint-400"]
    assert revisions[-1]["reason"].endswith("(canary weight 100)")
