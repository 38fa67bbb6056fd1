"""Spec edits of a FineTuneJob: before training starts they re-create the Job and run config; after, the
CRD's freeze rule refuses them; `observedGeneration` moves only for a generation the operator acted on.

"Started" is one definition shared by the operator's status (`status.startTime`) and the CEL rule
(`has(oldSelf.status.startTime)`): a trainer pod ran. A pod that waits (unschedulable, queued) does not.
"""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from kubetune.api import FineTuneJob, cel
from kubetune.builders.pods import PodSettings
from kubetune.builders.training import build_run_config_map, build_training_job, job_run_config, spec_hash
from kubetune.status.finetunejob import compute_status, is_stale, observed_generation, spec_action

NOW = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
GPU = "nvidia.com/gpu"


def manifest(gpus: int = 8, generation: int = 1, status: dict | None = None) -> dict:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "travel", "namespace": "team", "uid": "u", "generation": generation},
        "spec": {
            "baseModel": {"uri": "hf://m"},
            "dataset": {"train": {"uri": "pvc://d/t.jsonl"}},
            "resources": {"gpus": gpus},
        },
        "status": status,
    }


def ftj(gpus: int = 8, generation: int = 1, status: dict | None = None) -> FineTuneJob:
    return FineTuneJob.model_validate(manifest(gpus, generation, status))


def batch_job(job: FineTuneJob, **status) -> dict:
    """The training Job the operator built for `job`, with the status the Job controller gave it."""
    out = build_training_job(job, PodSettings())
    out["metadata"]["uid"] = "job-uid"
    out["status"] = status
    return out


def config_map(job: FineTuneJob) -> dict:
    return build_run_config_map(job, job_run_config(job, PodSettings()))


def pending_pod() -> dict:
    """A trainer pod the scheduler cannot place (asks for more GPUs than any node has)."""
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes: 8 GPUs"}
    return {"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": [cond]}}


def running_pod(started: str = "2025-01-01T11:30:00Z") -> dict:
    cs = {"name": "trainer", "state": {"running": {"startedAt": started}}}
    return {"metadata": {"name": "p"}, "status": {"phase": "Running", "containerStatuses": [cs]}}


# A real Job controller sets status.startTime as soon as the Job is not suspended, pods pending or not.
PENDING_JOB = {"active": 1, "startTime": "2025-01-01T11:00:00Z"}


def test_the_children_carry_the_spec_they_were_built_from_and_in_place_fields_do_not_count():
    job = ftj(gpus=8)
    assert batch_job(job)["metadata"]["annotations"]["kubetune.dev/spec-hash"] == spec_hash(job)
    assert config_map(job)["metadata"]["annotations"]["kubetune.dev/spec-hash"] == spec_hash(job)
    assert spec_hash(ftj(gpus=1)) != spec_hash(job)
    suspended = manifest()
    suspended["spec"].update(suspend=True, ttlSecondsAfterFinished=60)
    assert spec_hash(FineTuneJob.model_validate(suspended)) == spec_hash(job)  # patched into the Job in place


def test_defaults_written_out_leave_the_spec_hash_as_it_was():
    """The API server fills a CRD's defaults in on every read: after an upgrade that adds a field with a default,
    each job reads back with it. The children built before carry a hash of the spec without it, so the hash
    must not change, or every queued job would be re-created and every running one refuse a 'spec change'."""
    job = ftj(gpus=8)
    spelled_out = FineTuneJob.model_validate({**manifest(), "spec": job.spec.to_k8s()})  # every default written
    assert "storage" in spelled_out.spec.to_k8s() and spelled_out.spec.to_k8s() != manifest()["spec"]
    assert spec_hash(spelled_out) == spec_hash(job)
    assert job.spec.identity() == manifest()["spec"]  # only what the user set
    # What this version writes on the children of this job: a version that changes it re-creates every queued
    # job in every cluster it is upgraded on. Adding a field with a default must leave it as it is.
    assert spec_hash(job) == "70d914cf6642288e"


def test_an_edit_before_training_started_recreates_job_and_config_map():
    old = ftj(gpus=8, generation=1)
    edited = ftj(gpus=1, generation=2, status={"phase": "Pending", "observedGeneration": 1})
    children = [batch_job(old, **PENDING_JOB), config_map(old)]
    assert spec_action(edited, children, started=False) == "recreate"
    assert [is_stale(edited, child) for child in children] == [True, True]
    rebuilt = batch_job(edited)
    assert rebuilt["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][GPU] == "1"
    assert spec_action(edited, [rebuilt, config_map(edited)], started=False) == "keep"


def test_a_half_done_recreation_goes_on_after_a_restart():
    """Old Job deleted, operator restarted before the new one: only the stale ConfigMap is left; it goes too."""
    old, edited = ftj(gpus=8, generation=1), ftj(gpus=1, generation=2)
    assert spec_action(edited, [None, config_map(old)], started=False) == "recreate"
    assert spec_action(edited, [None, config_map(edited)], started=False) == "keep"  # only the Job to create


def test_a_queued_job_held_by_kueue_is_recreated_too():
    old = FineTuneJob.model_validate({**manifest(), "spec": {**manifest()["spec"], "queueName": "team-a"}})
    edited_doc = manifest(gpus=1, generation=2)
    edited_doc["spec"]["queueName"] = "team-a"
    edited = FineTuneJob.model_validate(edited_doc)
    queued = batch_job(old)
    assert queued["spec"]["suspend"] is True
    assert spec_action(edited, [queued], started=False) == "recreate"
    assert batch_job(edited)["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


def test_an_edit_after_training_started_is_refused_not_applied():
    old = ftj(gpus=8, generation=1)
    edited = ftj(gpus=1, generation=2, status={"phase": "Running", "startTime": "2025-01-01T11:30:00Z"})
    assert spec_action(edited, [batch_job(old, active=1, ready=1)], started=True) == "refuse"


def test_observed_generation_waits_until_the_job_matches_the_spec():
    old = ftj(gpus=8, generation=1)
    edited = ftj(gpus=1, generation=2, status={"phase": "Pending", "observedGeneration": 1})
    # The edit is in; the Job still asks for 8 GPUs (before the operator re-created it): generation 1 only.
    patch = compute_status(edited, batch_job(old, **PENDING_JOB), [pending_pod()], NOW)
    assert patch["observedGeneration"] == 1
    assert {c["observedGeneration"] for c in patch["conditions"]} == {1}
    assert observed_generation(edited, batch_job(old)) == 1
    # Re-created from generation 2: now it is observed.
    patch = compute_status(edited, batch_job(edited, active=1), [pending_pod()], NOW)
    assert patch["observedGeneration"] == 2


def test_an_edit_that_slipped_past_the_freeze_is_reported_and_not_observed():
    """Training started before the operator recorded it, so the API server let the edit through."""
    old = ftj(gpus=8, generation=1)
    edited = ftj(gpus=1, generation=2, status={"phase": "Validating", "observedGeneration": 1})
    patch = compute_status(edited, batch_job(old, active=1, ready=1), [running_pod()], NOW)
    assert patch["observedGeneration"] == 1
    assert patch["startTime"] == "2025-01-01T11:30:00Z"  # recorded now: the freeze rule holds from here
    stalled = next(c for c in patch["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "SpecChangeRefused"
    assert "generation 2 was not applied" in stalled["message"] and "new FineTuneJob" in stalled["message"]
    assert "generation 2 was not applied" in patch["message"]


def test_a_waiting_pod_is_not_a_start_so_the_freeze_rule_lets_the_user_fix_the_spec():
    """`gpus: 8` on a cluster without such a node: the Job runs (startTime set), its pod waits. The user may
    still lower gpus; once a trainer pod runs, the same edit is refused by the CRD's rule."""
    doc = manifest(gpus=8)
    job = FineTuneJob.model_validate(doc)
    pending = compute_status(job, batch_job(job, **PENDING_JOB), [pending_pod()], NOW)
    assert pending["phase"] == "Pending" and "Unschedulable" in pending["message"]
    assert "startTime" not in pending

    def edit_allowed(status: dict) -> bool:
        old = {**copy.deepcopy(doc), "status": status}
        new = copy.deepcopy(old)
        new["spec"]["resources"] = {"gpus": 1}
        return cel.validate(FineTuneJob.model_validate(new), FineTuneJob.model_validate(old)) == []

    assert edit_allowed(pending)
    running = compute_status(job, batch_job(job, **PENDING_JOB, ready=1), [running_pod()], NOW)
    assert running["phase"] == "Validating" and running["startTime"] == "2025-01-01T11:30:00Z"
    assert not edit_allowed(running)


@pytest.mark.parametrize(
    "change",
    [
        {"env": [{"name": "NCCL_DEBUG", "value": "INFO"}]},
        {"resources": {"gpus": 8, "nodeSelector": {"gpu": "h100"}}},
        {"resources": {"gpus": 8, "tolerations": [{"key": "gpu", "operator": "Exists"}]}},
        {"storage": {"size": "100Gi"}},
        {"checkpoints": {"every": 10}},
        {"backoffLimit": 5},
    ],
)
def test_the_freeze_rule_covers_nested_fields_lists_and_maps(change):
    doc = {**manifest(gpus=8), "status": {"phase": "Running", "startTime": "2025-01-01T11:30:00Z"}}
    new = copy.deepcopy(doc)
    new["spec"].update(change)
    (err,) = cel.validate(FineTuneJob.model_validate(new), FineTuneJob.model_validate(doc))
    assert "immutable once the job has started" in err.message
