"""Serving objects by server-side apply: after a 409, an object of this ModelDeployment is taken back (forced),
one that belongs to something else is an OwnershipConflict (which the controller reports as a failed
ModelDeployment) and is never forced. The API server is a fake k8s module answering apply and get."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune import k8s
from kubetune.controllers import modeldeployment
from kubetune.errors import OwnershipConflict, SpecError

OWNER = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "ModelDeployment",
    "name": "m",
    "uid": "u-1",
    "controller": True,
}
DESIRED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "m-serve", "namespace": "ns", "ownerReferences": [OWNER]},
    "spec": {"replicas": 1},
}


class FakeServer:
    """Refuses an unforced apply with 409 (another manager set one of the fields); holds the object's owners."""

    def __init__(self, owners: list[dict[str, Any]]) -> None:
        self.owners, self.forced = owners, []

    async def apply(self, manifest: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
        self.forced.append(force)
        if not force:
            raise k8s.Conflict(409, "Conflict", "Apply failed with 1 conflict: conflict with kubectl-edit")
        return manifest

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": namespace, "ownerReferences": self.owners}}


def serve(monkeypatch: pytest.MonkeyPatch, owners: list[dict[str, Any]]) -> FakeServer:
    server = FakeServer(owners)
    monkeypatch.setattr(k8s, "apply", server.apply)
    monkeypatch.setattr(k8s, "get", server.get)
    return server


async def test_an_object_that_belongs_to_something_else_is_an_ownership_conflict_and_never_forced(monkeypatch):
    server = serve(monkeypatch, [{"kind": "Deployment", "name": "someone-else", "uid": "u-2"}])
    with pytest.raises(
        OwnershipConflict, match="Deployment 'm-serve' exists and does not belong to ModelDeployment 'm'"
    ):
        await modeldeployment._apply(DESIRED)
    assert server.forced == [False]


async def test_an_object_of_this_modeldeployment_is_taken_back_by_force(monkeypatch):
    server = serve(monkeypatch, [{"kind": "ModelDeployment", "name": "m", "uid": "u-1"}])
    assert await modeldeployment._apply(DESIRED) == DESIRED
    assert server.forced == [False, True]


def test_the_three_errors_are_told_apart_and_still_value_errors():
    """Callers catch the one they handle; code that caught ValueError before they had names still does."""
    assert not issubclass(OwnershipConflict, SpecError) and not issubclass(SpecError, OwnershipConflict)
    assert all(issubclass(e, ValueError) for e in (OwnershipConflict, SpecError))
