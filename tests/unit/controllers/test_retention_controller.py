"""controllers.retention against a fake API server: a FineTuneJob naming a kept claim in storage.claimName adopts
it (no sweep deletes it afterwards), a job being deleted is no user of its own claim (no Event naming it), and a
namespace being deleted never blocks the FineTuneJob's finalizer (the chart's Role there may already be gone)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kubetune import constants as c
from kubetune import k8s
from kubetune.controllers import retention as ctl

LOG = logging.getLogger("test")
# Kopf retypes decorated handlers; called here as plain coroutine functions.
ON_JOB_EVENT: Any = ctl.kept_claims_after_job
ADOPTERS_OF: Any = ctl.claim_adopters
USERS_OF_JOB: Any = ctl.claim_users_of_jobs


class FakeServer:
    """PVCs and namespaces by name; records patches, deletions and Events. `refuse`: status of every PVC call."""

    def __init__(self, pvcs: dict[str, dict[str, Any]], terminating: bool = False, refuse: int | None = None) -> None:
        self.pvcs, self.terminating, self.refuse = pvcs, terminating, refuse
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.deleted: list[str] = []
        self.events: list[tuple[str, str, str]] = []

    def _check(self) -> None:
        if self.refuse is not None:
            raise k8s.ApiError(self.refuse, "Forbidden", "persistentvolumeclaims is forbidden")

    async def get_or_none(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        if kind == "Namespace":
            meta: dict[str, Any] = {"name": name}
            if self.terminating:
                meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            return {"metadata": meta}
        if kind == "PersistentVolumeClaim":
            self._check()
            return self.pvcs.get(name)
        return None

    async def patch_merge(self, kind: str, namespace: str | None, name: str, patch: dict[str, Any]) -> None:
        self._check()
        self.patches.append((name, patch))

    async def delete(self, kind: str, namespace: str | None, name: str, **_: Any) -> bool:
        self._check()
        self.deleted.append(name)
        return True

    async def post_event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], reason, message))


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch):
    def install(server: FakeServer) -> FakeServer:
        for name in ("get_or_none", "patch_merge", "delete", "post_event"):
            monkeypatch.setattr(k8s, name, getattr(server, name))
        return server

    return install


def kept(name: str = "adopt-data", job: str = "adopt") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team",
            "uid": "pvc-uid",
            "labels": {c.LABEL_RETENTION: "Delete"},
            "annotations": {
                c.ANNOTATION_CREATED_PVC: "true",
                c.ANNOTATION_OWNER_UID: "old-uid",
                c.ANNOTATION_RETAINED_FROM: f"FineTuneJob/{job}",
                c.ANNOTATION_RETAINED_FOR: "Evaluation/adopt-eval",
                c.ANNOTATION_RELEASED_CLAIM_UID: "pvc-uid",
            },
        }
    }


def ftj(name: str, **storage: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": "team", "uid": f"{name}-uid"},
        "spec": {"storage": storage},
    }


async def test_a_job_naming_a_kept_claim_adopts_it_and_says_so_on_both(serve):
    server = serve(FakeServer({"adopt-data": kept()}))
    adopter = ftj("adopter", claimName="adopt-data")
    adopting = await ADOPTERS_OF(body=adopter, namespace="team", name="adopter")
    indexes = {
        "kept_claims": {"team": ["adopt-data"]},
        ctl.ADOPTERS_INDEX: {key: [value] for key, value in adopting.items()},  # as Kopf's index holds them
        "claim_users_of_jobs": {("team", "adopt-data"): ["FineTuneJob/adopter"]},
    }
    await ON_JOB_EVENT(event={"type": "ADDED"}, body=adopter, namespace="team", logger=LOG, **indexes)
    ((name, patch),) = server.patches
    assert name == "adopt-data" and patch["metadata"]["labels"][c.LABEL_RETENTION] is None
    assert patch["metadata"]["annotations"][c.ANNOTATION_ADOPTED_BY] == "FineTuneJob/adopter"
    assert [(obj, reason) for obj, reason, _ in server.events] == [
        ("adopt-data", c.Reason.PVC_ADOPTED),
        ("adopter", c.Reason.PVC_ADOPTED),
    ]
    assert "is now the user's" in server.events[1][2]

    # T2's D1: the adopter deleted later (the claim as the patch left it); its going deletes nothing.
    claim = server.pvcs["adopt-data"]
    claim["metadata"]["labels"], claim["metadata"]["annotations"] = (
        {},
        {
            **claim["metadata"]["annotations"],
            c.ANNOTATION_ADOPTED_BY: "FineTuneJob/adopter",
        },
    )
    server.patches.clear()
    await ON_JOB_EVENT(event={"type": "DELETED"}, body=adopter, namespace="team", logger=LOG, **indexes)
    await ctl.sweep_claim("team", "adopt-data", {}, LOG)
    assert server.deleted == [] and server.patches == []


async def test_a_job_being_deleted_is_no_user_of_its_own_claim():
    body = ftj("travel")
    body["status"] = {"outputUri": "pvc://travel-data/kubetune/travel/output"}
    live = await USERS_OF_JOB(body=body, namespace="team", name="travel")
    assert live == {("team", "travel-data"): "FineTuneJob/travel"}
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert await USERS_OF_JOB(body=body, namespace="team", name="travel") == {}


async def test_a_refused_claim_blocks_the_finalizer_only_outside_a_namespace_being_deleted(serve):
    server = serve(FakeServer({"travel-data": kept("travel-data", "travel")}, terminating=True, refuse=403))
    await ctl.release_job_claim(ftj("travel"), {}, LOG)  # returns: the namespace controller deletes the claim
    server.terminating = False  # a live namespace: the error stands (Kopf retries, the claim is never lost)
    with pytest.raises(k8s.ApiError):
        await ctl.release_job_claim(ftj("travel"), {}, LOG)
