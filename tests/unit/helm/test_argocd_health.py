"""The Argo CD health checks in deploy/argocd, run by a real Lua 5.1 interpreter (lupa), as Argo CD's gopher-lua
would run them: the resource in the global `obj`, the script's return value the health."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import ROOT

lupa = pytest.importorskip("lupa.lua51", reason="lupa is not installed (pip install lupa): Lua health checks untested")

ARGOCD = ROOT / "deploy" / "argocd"
KINDS = ("FineTuneJob", "Evaluation", "ModelDeployment")


def health(kind: str, status: dict[str, Any] | None, generation: int = 1) -> dict[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=False)
    obj = {"apiVersion": "kubetune.dev/v1alpha1", "kind": kind, "metadata": {"name": "x", "generation": generation}}
    if status is not None:
        obj["status"] = status
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((ARGOCD / f"health-{kind.lower()}.lua").read_text())
    return dict(result.items())


def cond(ctype: str, message: str = "", status: str = "True") -> dict[str, str]:
    return {"type": ctype, "status": status, "reason": "R", "message": message}


# --- FineTuneJob ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["Pending", "Validating", "Queued", "Running"])
def test_job_in_progress_is_progressing(phase):
    hs = health("FineTuneJob", {"phase": phase, "observedGeneration": 1, "conditions": [cond("Reconciling", "busy")]})
    assert hs == {"status": "Progressing", "message": "busy"}


def test_running_job_shows_its_progress():
    hs = health("FineTuneJob", {"phase": "Running", "observedGeneration": 1, "progress": {"step": 420, "percent": 62}})
    assert hs == {"status": "Progressing", "message": "Running: 62%"}


def test_job_without_status_or_with_an_unobserved_spec_is_progressing():
    assert health("FineTuneJob", None)["status"] == "Progressing"
    hs = health("FineTuneJob", {"phase": "Succeeded", "observedGeneration": 1}, generation=2)
    assert hs == {"status": "Progressing", "message": "Waiting for the operator to observe generation 2"}


def test_job_outcomes():
    done = health("FineTuneJob", {"phase": "Succeeded", "observedGeneration": 3, "bestCheckpoint": "checkpoint-400"}, 3)
    assert done == {"status": "Healthy", "message": "Trained; best checkpoint checkpoint-400"}
    failed = health(
        "FineTuneJob",
        {
            "phase": "Failed",
            "observedGeneration": 1,
            "conditions": [cond("Ready", "x", "False"), cond("Failed", "OOM")],
        },
    )
    assert failed == {"status": "Degraded", "message": "OOM"}
    suspended = health("FineTuneJob", {"phase": "Suspended", "observedGeneration": 1})
    assert suspended == {"status": "Suspended", "message": "Suspended"}


def test_health_of_the_status_the_operator_writes():
    """The operator's own status computation, fed to the health check."""
    from kubetune.api import FineTuneJob
    from kubetune.status.finetunejob import compute_status

    job = FineTuneJob.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "team", "uid": "u", "generation": 2},
            "spec": {"baseModel": {"uri": "hf://org/m"}, "dataset": {"train": {"uri": "pvc://d/t.jsonl"}}},
        }
    )
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    t = "2026-01-01T00:00:00Z"
    batch = {
        "active": {"spec": {}, "status": {"active": 1, "startTime": t}},
        "failed": {
            "spec": {},
            "status": {
                "failed": 4,
                "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
            },
        },
        "complete": {
            "spec": {},
            "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": t}]},
        },
    }
    seen = {}
    for name, batch_job in batch.items():
        status = compute_status(job, batch_job, [], now)
        assert status["observedGeneration"] == 2
        seen[name] = health("FineTuneJob", status, generation=2)["status"]
    assert seen == {"active": "Progressing", "failed": "Degraded", "complete": "Healthy"}


# --- Evaluation -------------------------------------------------------------------------------------------


def test_evaluation_health():
    ok = health("Evaluation", {"phase": "Succeeded", "observedGeneration": 1, "passed": True, "best": "checkpoint-400"})
    assert ok == {"status": "Healthy", "message": "Passed; best checkpoint-400"}
    not_passed = health("Evaluation", {"phase": "Succeeded", "observedGeneration": 1, "passed": False})
    assert not_passed == {"status": "Degraded", "message": "No model met the pass criteria"}
    assert health("Evaluation", {"phase": "Running", "observedGeneration": 1})["status"] == "Progressing"
    assert health("Evaluation", {"phase": "Failed", "observedGeneration": 1})["status"] == "Degraded"
    assert health("Evaluation", {"phase": "Succeeded", "passed": True}, generation=1)["status"] == "Progressing"


# --- ModelDeployment --------------------------------------------------------------------------------------


def test_modeldeployment_health():
    ready = {
        "phase": "Ready",
        "observedGeneration": 4,
        "servedCheckpoint": "checkpoint-400",
        "endpoint": "http://travel.team.svc:8000/v1",
    }
    assert health("ModelDeployment", ready, 4) == {
        "status": "Healthy",
        "message": "Serving checkpoint-400 at http://travel.team.svc:8000/v1",
    }
    assert health("ModelDeployment", ready, 5)["status"] == "Progressing"  # a new spec not rolled out yet
    assert health("ModelDeployment", {"phase": "Deploying", "observedGeneration": 1})["status"] == "Progressing"
    stalled = {"phase": "Pending", "observedGeneration": 1, "conditions": [cond("Stalled", "pin not found")]}
    assert health("ModelDeployment", stalled) == {"status": "Degraded", "message": "pin not found"}
    assert health("ModelDeployment", {"phase": "Failed", "observedGeneration": 1})["status"] == "Degraded"


# --- the argocd-cm patch -------------------------------------------------------------------------------


def test_argocd_cm_patch_embeds_the_scripts():
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap" and patch["metadata"]["name"] == "argocd-cm"
    assert set(patch["data"]) == {f"resource.customizations.health.kubetune.dev_{k}" for k in KINDS}
    for kind in KINDS:
        script = Path(ARGOCD / f"health-{kind.lower()}.lua").read_text()
        assert patch["data"][f"resource.customizations.health.kubetune.dev_{kind}"] == script, kind
