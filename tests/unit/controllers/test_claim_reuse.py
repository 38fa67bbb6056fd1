"""reconcile of a FineTuneJob whose `<job>-data` is a deleted namesake's kept PVC: nothing is created, status
says why (Pending, Stalled), one Warning Event names the claim and its users, and Kopf retries
(TemporaryError) until the claim is gone. Its own claim (same uid) is adopted. The API server is a fake."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from kubetune import constants as c
from kubetune import k8s
from kubetune.controllers import common, finetunejob

BODY = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "travel", "namespace": "team", "uid": "new-uid", "generation": 1},
    "spec": {"baseModel": {"uri": "hf://a/b"}, "dataset": {"train": {"uri": "pvc://d/t.jsonl"}}},
}


def pvc(owner_uid: str, **labels: str) -> dict[str, Any]:
    annotations = {c.ANNOTATION_CREATED_PVC: "true", c.ANNOTATION_OWNER_UID: owner_uid}
    if labels:
        annotations[c.ANNOTATION_RETAINED_FOR] = "ModelDeployment/travel"
        annotations[c.ANNOTATION_RETAINED_FROM] = "FineTuneJob/travel"
    return {"metadata": {"name": "travel-data", "namespace": "team", "labels": labels, "annotations": annotations}}


class FakeServer:
    """Serves one PVC `travel-data`; records creates, status patches and Events."""

    def __init__(self, claim: dict[str, Any] | None) -> None:
        self.claim, self.created, self.patches, self.events = claim, [], [], []

    async def create_if_absent(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if manifest["kind"] == "PersistentVolumeClaim" and self.claim is not None:
            return self.claim, False
        self.created.append(manifest["kind"])
        return {**manifest, "metadata": {**manifest["metadata"], "uid": "x"}}, True

    async def get_or_none(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.claim if kind == "PersistentVolumeClaim" and name == "travel-data" else None

    async def patch_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patches.append(patch)

    async def post_event(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def reconcile(monkeypatch: pytest.MonkeyPatch, server: FakeServer, body: dict[str, Any]) -> None:
    for name in ("create_if_absent", "get_or_none", "patch_status", "post_event"):
        monkeypatch.setattr(k8s, name, getattr(server, name))
    memo = SimpleNamespace(state=common.OperatorState())
    logger = logging.getLogger("test")
    asyncio.run(
        finetunejob.reconcile(  # pyright: ignore[reportCallIssue]  # kopf retypes decorated handlers
            body=body, namespace="team", name="travel", logger=logger, memo=memo, training_jobs={}, training_pods={}
        )
    )


def test_a_namesakes_kept_claim_stalls_the_new_job_once_and_creates_nothing(monkeypatch):
    server = FakeServer(pvc("old-uid", **{c.LABEL_RETENTION: "Delete"}))
    with pytest.raises(kopf.TemporaryError) as raised:  # Kopf tries again later: it goes on by itself
        reconcile(monkeypatch, server, BODY)
    assert "PersistentVolumeClaim/travel-data" in str(raised.value)
    assert server.created == []  # no ConfigMap, RBAC or Job half-made either
    (patch,) = server.patches
    assert patch["phase"] == "Pending" and patch["message"].startswith("PersistentVolumeClaim/travel-data holds")
    conditions = {cond["type"]: cond for cond in patch["conditions"]}
    assert conditions["Stalled"]["status"] == "True" and conditions["Stalled"]["reason"] == c.Reason.PVC_CONFLICT
    assert conditions["Ready"]["status"] == "False"
    ((type_, reason, message),) = server.events
    assert (type_, reason) == ("Warning", c.Reason.PVC_CONFLICT) and "ModelDeployment/travel" in message

    # The retry with that status recorded says nothing new: no second write, no second Event.
    with pytest.raises(kopf.TemporaryError):
        reconcile(monkeypatch, server, {**BODY, "status": patch})
    assert len(server.patches) == 1 and len(server.events) == 1

    # The kept claim is gone (its ModelDeployment deleted): the next try creates the job's own, then the rest.
    server.claim = None
    reconcile(monkeypatch, server, {**BODY, "status": patch})
    assert server.created[0] == "PersistentVolumeClaim" and "Job" in server.created


def test_only_the_claim_made_for_this_very_job_is_adopted(monkeypatch):
    with pytest.raises(kopf.TemporaryError):  # made for the deleted namesake, never released (no retention label)
        reconcile(monkeypatch, FakeServer(pvc("old-uid")), BODY)
    server = FakeServer(pvc("new-uid"))  # made for this job before an operator restart
    reconcile(monkeypatch, server, BODY)
    assert "Job" in server.created and "PersistentVolumeClaim" not in server.created
    assert not any(reason == c.Reason.PVC_CONFLICT for _, reason, _ in server.events)
