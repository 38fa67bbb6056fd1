"""What goes wrong in a serving rollout reaches the ModelDeployment's status (issue 11, T3 D4, D5): a Deployment the
API server refuses, serving pods that wait on a missing Secret. `modeldeployment.reconcile` runs against a fake k8s."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kubetune import constants as c
from kubetune import k8s
from kubetune.api import ModelDeployment
from kubetune.builders import adapters, pods, serving
from kubetune.builders.promotion import decide
from kubetune.controllers import common, modeldeployment

CKPT = "pvc://travel-data/output/checkpoint-400"


def md_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "travel", "namespace": "team-a", "uid": "m-1", "generation": 1},
        "spec": {"model": {"uri": CKPT}, **spec},
    }


class FakeCluster:
    """The ModelDeployment; applies answered by `answer` (the object back, or an ApiError); status and Events kept."""

    def __init__(self, body: dict[str, Any], refuse: k8s.ApiError | None = None) -> None:
        self.body, self.refuse = body, refuse
        self.status: dict[str, Any] | None = None
        self.events: list[tuple[str, str, str]] = []

    async def get_or_none(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.body if kind == c.MODELDEPLOYMENT else None

    async def apply(self, manifest: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
        if self.refuse is not None and manifest["kind"] == "Deployment":
            raise self.refuse
        if manifest["kind"] == "Deployment":  # as the API server answers once the ReplicaSet exists
            status = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 0}
            return {**manifest, "metadata": {**manifest["metadata"], "generation": 1}, "status": status}
        return manifest

    async def served(self, kind: str) -> bool:
        return False

    async def delete(self, *_: Any, **__: Any) -> None:
        return None

    async def patch_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.status = patch

    async def post_event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    def install(body: dict[str, Any], refuse: k8s.ApiError | None = None) -> FakeCluster:
        cluster = FakeCluster(body, refuse)
        for name in ("get_or_none", "apply", "served", "delete", "patch_status", "post_event"):
            monkeypatch.setattr(k8s, name, getattr(cluster, name))
        return cluster

    return install


async def test_a_deployment_the_api_server_refuses_fails_the_modeldeployment_with_its_message(fake):
    refused = k8s.ApiError(500, "Internal Server Error", 'duplicate entries for key [name="pvc-my-claim"]')
    cluster = fake(md_body(), refuse=refused)
    await modeldeployment.reconcile(common.OperatorState(), "team-a", "travel")  # said in status, not raised
    assert cluster.status is not None and cluster.status["phase"] == "Failed"
    assert "the API server refused Deployment 'travel'" in cluster.status["message"]
    assert 'duplicate entries for key [name="pvc-my-claim"]' in cluster.status["message"]
    stalled = next(x for x in cluster.status["conditions"] if x["type"] == "Stalled")
    assert stalled["reason"] == "ApplyFailed"
    assert [e[:2] for e in cluster.events] == [("Warning", "ApplyFailed")]


async def test_serving_pods_waiting_on_the_missing_api_key_secret_stall_the_modeldeployment(fake):
    cluster = fake(md_body(auth={"apiKeySecretRef": {"name": "travel-key", "key": "token"}}))
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "travel-key" not found'}}
    pod = {
        "metadata": {"name": "travel-serve-abc", "uid": "p-1", "labels": {c.LABEL_DEPLOYMENT: "travel"}},
        "status": {"containerStatuses": [{"name": "server", "state": waiting}]},
    }
    index = {("team-a", "travel"): [pod]}
    await modeldeployment.reconcile(common.OperatorState(), "team-a", "travel", index)  # type: ignore[arg-type]
    assert cluster.status is not None and cluster.status["phase"] == "Failed", cluster.status
    assert "spec.auth.apiKeySecretRef" in cluster.status["message"]
    assert ("Warning", "CreateContainerConfigError") in [e[:2] for e in cluster.events]


def test_adapter_claims_whose_names_collide_once_shortened_get_distinct_volume_names():
    long = "a" * 65
    uris = [f"pvc://{long}-one/a", f"pvc://{long}-two/a", "pvc://my.claim/a", "pvc://my-claim/a"]
    deployment = ModelDeployment.model_validate(
        md_body(
            model={"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            adapters=[{"name": f"a{i}", "uri": uri} for i, uri in enumerate(uris)],
        )
    )
    sources = [adapters.AdapterSource(i, a) for i, a in enumerate(deployment.spec.adapters)]
    plan = serving.plan(deployment, decide(deployment, None, None), None)
    outcomes = adapters.decide_adapters(deployment, sources, plan.served_uri, "t")
    dep = serving.build_deployment(deployment, plan, None, pool=adapters.adapter_pool(deployment, sources, outcomes))
    volumes = [v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]]
    assert len(volumes) == len(set(volumes))
    assert all(len(v) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", v) for v in volumes), volumes
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in dep["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert sorted(claims) == sorted([f"{long}-one", f"{long}-two", "my.claim", "my-claim"])
    assert pods.volume_name("travel-data") == "pvc-travel-data"  # a plain claim keeps its readable name
