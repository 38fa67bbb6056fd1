"""A child the API server refuses as invalid (422 on create) fails the FineTuneJob visibly: phase Failed with
the server's message in status and conditions (Stalled), a Warning Event, and no retry loop (PermanentError).
The API server here is a fake k8s module; the real server's 422 for a negative CPU request is what it mimics."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from kubetune import k8s
from kubetune.controllers import common, finetunejob

JOB_INVALID = (
    'Job.batch "travel-train" is invalid: spec.template.spec.containers[0].resources.requests[cpu]: '
    'Invalid value: "-8": must be greater than or equal to 0'
)
BODY = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "travel", "namespace": "team", "uid": "u", "generation": 1},
    "spec": {"baseModel": {"uri": "hf://a/b"}, "dataset": {"train": {"uri": "pvc://d/t.jsonl"}}},
}


class FakeServer:
    """Records status patches and Events; refuses every Job with `status` (the rest is created)."""

    def __init__(self, status: int) -> None:
        self.status, self.patches, self.events, self.creates = status, [], [], 0

    async def create_if_absent(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        self.creates += 1
        if manifest["kind"] == "Job":
            raise k8s.ApiError(self.status, "Invalid" if self.status == 422 else "InternalError", JOB_INVALID)
        return {**manifest, "metadata": {**manifest["metadata"], "uid": "x"}}, True

    async def get_or_none(self, *_: Any) -> None:
        return None

    async def patch_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patches.append(patch)

    async def post_event(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def run_reconcile(monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> None:
    for name in ("create_if_absent", "get_or_none", "patch_status", "post_event"):
        monkeypatch.setattr(k8s, name, getattr(server, name))
    memo = SimpleNamespace(state=common.OperatorState())
    coro = finetunejob.reconcile(
        body=BODY,
        namespace="team",
        name="travel",
        logger=logging.getLogger("test"),
        memo=memo,
        training_jobs={},
        training_pods={},
    )
    asyncio.run(coro)


def test_a_job_refused_as_invalid_fails_the_finetunejob_with_the_servers_message(monkeypatch):
    server = FakeServer(422)
    with pytest.raises(kopf.PermanentError) as raised:  # Kopf does not retry it
        run_reconcile(monkeypatch, server)
    assert isinstance(raised.value, common.ChildRefused)
    (patch,) = [p for p in server.patches if "phase" in p]
    assert patch["phase"] == "Failed" and JOB_INVALID in patch["message"]
    conditions = {cond["type"]: cond for cond in patch["conditions"]}
    assert conditions["Stalled"]["status"] == "True" and conditions["Stalled"]["reason"] == "ChildRefused"
    assert conditions["Ready"]["status"] == "False" and JOB_INVALID in conditions["Ready"]["message"]
    assert [(t, r) for t, r, _ in server.events] == [("Warning", "ChildRefused")]
    assert JOB_INVALID in server.events[0][2]


def test_other_api_errors_stay_retried_and_leave_the_status_alone(monkeypatch):
    server = FakeServer(500)
    with pytest.raises(k8s.ApiError) as raised:
        run_reconcile(monkeypatch, server)
    assert not isinstance(raised.value, kopf.PermanentError)
    assert [p for p in server.patches if "phase" in p] == [] and server.events == []
