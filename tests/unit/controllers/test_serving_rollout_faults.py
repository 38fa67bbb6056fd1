"""What goes wrong in a serving rollout reaches the ModelDeployment's status (issue 11, T3 D4, D5): a Deployment the
API server refuses, serving pods that wait on a missing Secret. `modeldeployment.reconcile` runs against a fake k8s."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kubetune import constants as c
from kubetune import k8s
from kubetune.api import ModelDeployment
from kubetune.builders import adapters, canary, pods, serving
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
        self.applied: list[str] = []
        self.manifests: dict[str, dict[str, Any]] = {}
        self.claims: set[str] = set()  # PersistentVolumeClaims that exist

    async def get_or_none(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind == "PersistentVolumeClaim":
            return {"metadata": {"name": name}} if name in self.claims else None
        return self.body if kind == c.MODELDEPLOYMENT else None

    async def apply(self, manifest: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
        self.applied.append(manifest["kind"])
        self.manifests[manifest["kind"]] = manifest
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


GATEWAY = {"name": "inference", "namespace": "gateways", "sectionName": "http"}


def _route_index(*bodies: dict[str, Any]) -> dict[Any, list[Any]]:
    """What Kopf's deployments_by_route index holds for these ModelDeployments."""
    index: dict[Any, list[Any]] = {}
    for body in bodies:
        meta = body["metadata"]
        key = canary.route_key(meta["namespace"], body["spec"]["gateway"])
        index.setdefault(key, []).append((meta["creationTimestamp"], meta["namespace"], meta["name"]))
    return index


async def test_a_newer_modeldeployment_routing_the_same_gateway_match_is_stalled_naming_the_older(fake):
    older = md_body(gateway=GATEWAY)
    older["metadata"] |= {"name": "bot", "creationTimestamp": "2026-01-01T00:00:00Z"}
    newer = md_body(gateway={**GATEWAY, "pathPrefix": "/"})  # the default written out: still the same match
    newer["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    cluster = fake(newer)
    routes = _route_index(older, newer)
    await modeldeployment.reconcile(common.OperatorState(), "team-a", "travel", None, routes)  # type: ignore[arg-type]
    assert cluster.status is not None and cluster.status["phase"] == "Failed", cluster.status
    stalled = next(x for x in cluster.status["conditions"] if x["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "RouteConflict"
    assert "team-a/bot" in cluster.status["message"] and "spec.gateway" in cluster.status["message"]
    assert [e[:2] for e in cluster.events] == [("Warning", "RouteConflict")]
    assert cluster.applied == []  # no HTTPRoute (nor pods) for a route that would get no request

    cluster = fake(older)  # the older keeps serving
    await modeldeployment.reconcile(common.OperatorState(), "team-a", "bot", None, routes)  # type: ignore[arg-type]
    assert cluster.status is not None and cluster.status["phase"] != "Failed", cluster.status
    assert "Deployment" in cluster.applied


async def test_modeldeployments_on_one_gateway_told_apart_by_path_prefix_do_not_conflict(fake):
    older = md_body(gateway=GATEWAY)
    older["metadata"] |= {"name": "bot", "creationTimestamp": "2026-01-01T00:00:00Z"}
    newer = md_body(gateway={**GATEWAY, "pathPrefix": "/team-a/travel"})
    newer["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    cluster = fake(newer)
    routes = _route_index(older, newer)
    await modeldeployment.reconcile(common.OperatorState(), "team-a", "travel", None, routes)  # type: ignore[arg-type]
    assert cluster.status is not None and cluster.status["phase"] != "Failed", cluster.status


async def test_an_adapter_whose_job_or_claim_is_missing_is_named_by_field_path_and_not_mounted(fake):
    body = md_body(
        model={"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
        adapters=[
            {"name": "ghost", "fineTuneJob": {"name": "does-not-exist"}},
            {"name": "support", "uri": "pvc://adapters/support"},
            {"name": "travel-lora", "uri": "pvc://travel-data/lora"},
        ],
    )
    cluster = fake(body)
    cluster.claims = {"travel-data"}
    await modeldeployment.reconcile(common.OperatorState(), "team-a", "travel")
    assert cluster.status is not None
    message = cluster.status["message"]
    assert "spec.adapters[0].fineTuneJob: FineTuneJob 'does-not-exist' not found" in message
    by_name = {a["name"]: a for a in cluster.status["adapters"]}
    assert "spec.adapters[1].uri: PersistentVolumeClaim 'adapters' not found" in by_name["support"]["message"]
    assert by_name["travel-lora"]["servedUri"] == "pvc://travel-data/lora"
    warnings = [e[1] for e in cluster.events if e[0] == "Warning"]
    assert warnings == ["AdapterNotFound", "AdapterClaimNotFound"]
    template = cluster.manifests["Deployment"]["spec"]["template"]["spec"]
    mounted = [v["persistentVolumeClaim"]["claimName"] for v in template["volumes"] if "persistentVolumeClaim" in v]
    assert mounted == ["travel-data"]  # the missing claim is not mounted: the pods do not wait on it

    cluster.body = {**body, "status": cluster.status}  # the next reconcile says it again only in status
    cluster.events.clear()
    await modeldeployment.reconcile(common.OperatorState(), "team-a", "travel")
    assert [e for e in cluster.events if e[0] == "Warning"] == []
