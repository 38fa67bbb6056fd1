"""Deleting a watched namespace always completes (trial T2's D2), on the real kube-apiserver only (the emulator
has no namespace controller): the operator runs with the chart's namespaced RBAC (watchNamespaces), the
namespace controller deletes the chart's Role there as early as anything else, and the FineTuneJob's and the
ModelDeployment's finalizers must still go. Before, the operator got 403 patching them and the namespace
stayed Terminating (NamespaceFinalizersRemaining)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from harness import (
    RealServer,
    api_path,
    dump,
    example,
    operator_env,
    rendered_chart,
    wait_for,
)
from kopf.testing import KopfRunner

from kubetune import constants as c

DOOMED = "kubetune-doomed"


def finalized(plane: RealServer, plural: str, name: str) -> bool:
    resp = plane.http.get(f"{api_path(plural, DOOMED)}/{name}")
    return resp.status_code == 200 and c.FINALIZER in (resp.json()["metadata"].get("finalizers") or [])


@contextlib.contextmanager
def watched_namespace(plane: RealServer) -> Iterator[None]:
    """DOOMED with the chart's Role and RoleBinding for it (watchNamespaces); removed by force if the test left
    it behind, so that the session's control plane stays clean."""
    plane.http.post("/api/v1/namespaces", json={"metadata": {"name": DOOMED}}).raise_for_status()
    rbac = [d for d in rendered_chart({"watchNamespaces": [DOOMED]}) if d["metadata"].get("namespace") == DOOMED]
    assert {d["kind"] for d in rbac} == {"Role", "RoleBinding"}
    applied = plane.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(rbac))
    assert applied.returncode == 0, applied.stderr
    try:
        yield
    finally:
        merge = {"Content-Type": "application/merge-patch+json"}
        for plural in ("finetunejobs", "modeldeployments", "evaluations"):
            items = plane.http.get(api_path(plural, DOOMED)).json().get("items") or []
            for item in items:
                path = f"{api_path(plural, DOOMED)}/{item['metadata']['name']}"
                plane.http.patch(path, json={"metadata": {"finalizers": None}}, headers=merge)
        plane.http.delete(f"/api/v1/namespaces/{DOOMED}")
        wait_for(lambda: plane.http.get(f"/api/v1/namespaces/{DOOMED}").status_code == 404, 60, "cleanup")


def test_a_watched_namespace_holding_a_job_and_a_deployment_is_deleted(
    real_server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = real_server
    plane.start_namespace_controller()
    for key, value in operator_env(plane.operator_kubeconfig).items():
        monkeypatch.setenv(key, value)
    with watched_namespace(plane):
        args = ["run", "-m", "kubetune.controllers.handlers", "--standalone", f"--namespace={DOOMED}"]
        with KopfRunner(args, timeout=30):
            job = example(resources={"gpus": 0})
            job["metadata"]["namespace"] = DOOMED
            deployment: dict[str, Any] = {
                "apiVersion": "kubetune.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "travel", "namespace": DOOMED},
                "spec": {"model": {"fineTuneJob": {"name": "travel"}}, "resources": {"gpus": 0}},
            }
            applied = plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([job, deployment]))
            assert applied.returncode == 0, applied.stderr
            wait_for(lambda: finalized(plane, "finetunejobs", "travel"), 30, "the job's finalizer")
            wait_for(lambda: finalized(plane, "modeldeployments", "travel"), 30, "the deployment's finalizer")
            pvcs = f"{api_path('persistentvolumeclaims', DOOMED)}/travel-data"
            wait_for(lambda: plane.http.get(pvcs).status_code == 200, 30, "the job's PVC")

            plane.http.delete(f"/api/v1/namespaces/{DOOMED}").raise_for_status()

            def gone() -> bool:
                return plane.http.get(f"/api/v1/namespaces/{DOOMED}").status_code == 404

            try:
                wait_for(gone, 60, f"namespace {DOOMED} deleted")
            except AssertionError:
                left = {
                    p: plane.http.get(api_path(p, DOOMED)).json().get("items")
                    for p in ("finetunejobs", "modeldeployments")
                }
                ns = plane.http.get(f"/api/v1/namespaces/{DOOMED}").json()
                raise AssertionError(f"stuck: {dump(ns.get('status'))}\n{dump(left)}") from None
