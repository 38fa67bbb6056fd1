"""A ModelDeployment's children carry the labels and annotations it passes on (team, cost centre, Kueue's priority
class; issue 11 item 6), a canary's pods are counted, scraped and guarded like the stable ones (item 3/4), and an
Evaluation of a protected ModelDeployment gets its API key by secretKeyRef (item 4).

The controller test runs `modeldeployment.reconcile` against a fake k8s module that records what is applied."""

from __future__ import annotations

import json
import re
from typing import Any

import kopf
import pytest

from kubetune import constants as c
from kubetune import k8s
from kubetune.api import Evaluation, ModelDeployment
from kubetune.builders import autoscaling, monitoring, network_policy, serving
from kubetune.builders import evaluation as ev
from kubetune.builders.meta import Propagation
from kubetune.builders.promotion import Decision
from kubetune.controllers import common, modeldeployment
from kubetune.controllers.config import OperatorConfig

CKPT = "pvc://travel-data/output/checkpoint-400"
LABELS = {
    "team": "travel",
    "cost-center": "ml-42",
    c.LABEL_KUEUE_PRIORITY_CLASS: "serving-high",
    "argocd.argoproj.io/instance": "argocd-app",  # tool bookkeeping: never passed on
}
ANNOTATIONS = {"propagate.kubetune.dev/budget": "q3-serving", "example.com/private": "not for children"}


def md_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "travel",
            "namespace": "team-a",
            "uid": "m-1",
            "generation": 1,
            "labels": LABELS,
            "annotations": ANNOTATIONS,
        },
        "spec": {"model": {"uri": CKPT}, **spec},
    }


class FakeCluster:
    """Serves the ModelDeployment, KEDA's and the Prometheus Operator's kinds; records every apply."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body, self.applied, self.status = body, [], None

    async def get_or_none(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.body if kind == c.MODELDEPLOYMENT else None

    async def apply(self, manifest: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
        self.applied.append(manifest)
        return manifest

    async def served(self, kind: str) -> bool:
        return kind in ("ScaledObject", "PodMonitor", "HTTPRoute")

    async def delete(self, *_: Any, **__: Any) -> None:
        return None

    async def patch_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.status = patch

    async def post_event(self, *_: Any) -> None:
        return None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    def install(body: dict[str, Any]) -> FakeCluster:
        cluster = FakeCluster(body)
        for name in ("get_or_none", "apply", "served", "delete", "patch_status", "post_event"):
            monkeypatch.setattr(k8s, name, getattr(cluster, name))
        return cluster

    return install


async def test_every_child_of_a_modeldeployment_and_its_pods_carry_the_governance_labels(fake):
    cluster = fake(
        md_body(
            autoscaling={"minReplicas": 1, "maxReplicas": 3},
            networkPolicy={},
            auth={"apiKeySecretRef": {"name": "travel-key", "key": "token"}},
            gateway={"name": "inference"},
        )
    )
    chart = Propagation(default_labels={"cluster-tier": "gpu", "team": "default-team"})
    state = common.OperatorState(config=OperatorConfig(propagation=chart))
    await modeldeployment.reconcile(state, "team-a", "travel")
    assert cluster.status and cluster.status.get("phase") != "Failed", cluster.status

    kinds = sorted(m["kind"] for m in cluster.applied)
    assert kinds == ["ConfigMap", "Deployment", "HTTPRoute", "NetworkPolicy", "PodMonitor", "ScaledObject", "Service"]
    for manifest in cluster.applied:
        meta = manifest["metadata"]
        where = f"{manifest['kind']} {meta['name']}"
        assert meta["labels"]["team"] == "travel", where  # the resource's own label beats the chart default
        assert meta["labels"]["cost-center"] == "ml-42", where
        assert meta["labels"]["cluster-tier"] == "gpu", where
        assert meta["labels"][c.LABEL_KUEUE_PRIORITY_CLASS] == "serving-high", where
        assert "argocd.argoproj.io/instance" not in meta["labels"], where
        assert meta["labels"][c.LABEL_DEPLOYMENT] == "travel", where  # kubetune's own stay
        assert meta["annotations"]["propagate.kubetune.dev/budget"] == "q3-serving", where
        assert "example.com/private" not in meta.get("annotations", {}), where
    (dep,) = [m for m in cluster.applied if m["kind"] == "Deployment"]
    template = dep["spec"]["template"]["metadata"]
    assert template["labels"]["team"] == "travel" and template["labels"][c.LABEL_ROLE] == "serve"
    assert template["annotations"]["propagate.kubetune.dev/budget"] == "q3-serving"
    assert template["annotations"][c.ANNOTATION_CHECKPOINT] == "checkpoint-400"
    assert dep["spec"]["selector"]["matchLabels"] == serving.selector(ModelDeployment.model_validate(md_body()))


async def test_extra_args_refused_by_admission_fail_the_deployment_with_the_item_and_apply_nothing(fake):
    cluster = fake(md_body(resources={"gpus": 1}, extraArgs=["--enforce-eager", "--port=9000"]))
    with pytest.raises(kopf.PermanentError, match=r"spec.extraArgs\[1\]: --port is set by the operator"):
        await modeldeployment.reconcile(common.OperatorState(), "team-a", "travel")
    assert cluster.applied == []
    assert cluster.status is not None and cluster.status["phase"] == "Failed"
    assert "spec.extraArgs[1]: --port is set by the operator" in cluster.status["message"]


# --- a canary's pods count, are scraped and are guarded -----------------------------------------------------


def md(**spec: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(md_body(**spec))


def pod_labels(deployment: ModelDeployment, track: serving.Track) -> dict[str, str]:
    decision = Decision("promote", "checkpoint-400", CKPT, "Promoted", "")
    plan = serving.plan(deployment, decision, None)
    built = serving.build_deployment(deployment, plan, None, track=track)
    return built["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists) against `labels`."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


@pytest.mark.parametrize("gpus", [0, 1], ids=["built-in", "vllm"])
def test_the_load_query_counts_the_canary_pods_and_no_others(gpus):
    deployment = md(resources={"gpus": gpus}, autoscaling={"maxReplicas": 4})
    query = autoscaling.build_scaled_object(deployment)["spec"]["triggers"][0]["metadata"]["query"]
    pods = re.search(r'pod=~"([^"]+)"', query)
    assert pods is not None and 'namespace="team-a"' in query
    pattern = pods.group(1)  # PromQL regexes are anchored at both ends
    assert re.fullmatch(pattern, "travel-7d9f8b6c5-x2x4z")
    assert re.fullmatch(pattern, "travel-serve-canary-5c4b7d9f8-k8p2q")
    assert not re.fullmatch(pattern, "travel-eval-1a2b3c4d-x2x4z")  # an Evaluation of the same name
    assert not re.fullmatch(pattern, "travelling-7d9f8b6c5-x2x4z")


def test_the_pod_monitor_and_the_network_policy_select_stable_and_canary_pods():
    deployment = md(resources={"gpus": 1}, networkPolicy={})
    stable, canary = pod_labels(deployment, "stable"), pod_labels(deployment, "canary")
    other = pod_labels(
        ModelDeployment.model_validate({**md_body(), "metadata": {"name": "other", "uid": "2"}}), "stable"
    )
    scraped = monitoring.build_pod_monitor(deployment)["spec"]["selector"]
    policy = network_policy.build_network_policy(deployment)
    assert policy is not None
    guarded = policy["spec"]["podSelector"]
    for selector in (scraped, guarded):
        assert selects(selector, stable) and selects(selector, canary)
        assert not selects(selector, other)


# --- an Evaluation of a protected ModelDeployment -----------------------------------------------------------


def evaluation(**model: Any) -> Evaluation:
    return Evaluation.model_validate(
        {
            "metadata": {"name": "travel-eval", "namespace": "team-a", "uid": "e-1", "generation": 1},
            "spec": {
                "model": model or {"modelDeployment": {"name": "travel"}},
                "baseline": {"none": True},
                "dataset": {"uri": "pvc://datasets/test.jsonl"},
                "metrics": ["exact_match"],
            },
        }
    )


def eval_children(evaluation_: Evaluation, deployment: ModelDeployment | None) -> tuple[dict, list[dict]]:
    config = ev.run_config(evaluation_, None, endpoint="http://travel.team-a.svc:8000/v1")
    key = ev.endpoint_api_key_ref(evaluation_, deployment)
    *_, config_map, job = ev.build_children(evaluation_, None, config, endpoint_key=key)
    return config_map, job["spec"]["template"]["spec"]["containers"][0]["env"]


def key_env(env: list[dict]) -> list[dict]:
    return [e for e in env if e["name"] == "KUBETUNE_ENDPOINT_API_KEY"]


def test_an_evaluation_of_a_protected_deployment_gets_its_key_by_secret_reference_only():
    protected = md(auth={"apiKeySecretRef": {"name": "travel-key", "key": "token"}})
    config_map, env = eval_children(evaluation(), protected)
    assert key_env(env) == [
        {"name": "KUBETUNE_ENDPOINT_API_KEY", "valueFrom": {"secretKeyRef": {"name": "travel-key", "key": "token"}}}
    ]
    assert "travel-key" not in json.dumps(config_map)  # the run config names no Secret

    # The Evaluation's own reference wins (a key of its own, say a read-only one).
    own = evaluation(modelDeployment={"name": "travel"}, apiKeySecretRef={"name": "eval-key", "key": "k"})
    _, env = eval_children(own, protected)
    assert [e["valueFrom"]["secretKeyRef"] for e in key_env(env)] == [{"name": "eval-key", "key": "k"}]

    # An open deployment (or one not found yet): no key asked.
    assert key_env(eval_children(evaluation(), md())[1]) == []
    assert key_env(eval_children(evaluation(), None)[1]) == []


def test_the_endpoint_key_is_only_for_a_modeldeployment_and_the_trainer_reads_that_variable():
    from kubetune.api.admission import admit
    from kubetune_trainer.evaluate.runner import ENV_ENDPOINT_API_KEY

    assert ENV_ENDPOINT_API_KEY == "KUBETUNE_ENDPOINT_API_KEY"
    doc = evaluation(fineTuneJob={"name": "travel"}, apiKeySecretRef={"name": "k", "key": "k"}).to_k8s()
    doc |= {"apiVersion": "kubetune.dev/v1alpha1", "kind": "Evaluation"}
    _, errors = admit(doc, "e.yaml")
    assert [(e.path, e.message) for e in errors] == [
        (
            "spec.model.apiKeySecretRef",
            "model.apiKeySecretRef is the key of model.modelDeployment's endpoint: set model.modelDeployment",
        )
    ]
