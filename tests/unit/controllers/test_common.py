"""What the controllers share: which watch events are news, and whose child changed."""

import copy

import kopf
import pytest

from kubetune.controllers import common

JOB = {"metadata": {"namespace": "team", "name": "travel"}}


def test_only_a_changed_signature_or_a_deletion_is_news_until_the_operator_restarts():
    memo = kopf.Memo()  # Kopf's per-object memo of one job
    assert common.changed_since_last_event(memo, "evaluations", {"type": "ADDED"}, ("Running", ()))
    assert not common.changed_since_last_event(memo, "evaluations", {"type": "MODIFIED"}, ("Running", ()))
    assert common.changed_since_last_event(memo, "evaluations", {"type": "MODIFIED"}, ("Running", ("checkpoint-100",)))
    # Each watcher keeps its own: the deployments' watcher has not seen it yet.
    assert common.changed_since_last_event(memo, "deployments", {"type": "MODIFIED"}, ("Running", ("checkpoint-100",)))
    assert common.changed_since_last_event(memo, "evaluations", {"type": "DELETED"}, ("Running", ("checkpoint-100",)))
    restarted = kopf.Memo()  # a restarted operator has seen nothing
    assert common.changed_since_last_event(
        restarted, "evaluations", {"type": "MODIFIED"}, ("Running", ("checkpoint-100",))
    )


def test_the_operator_state_lives_in_the_memo_and_gives_one_lock_per_object():
    memo = kopf.Memo()
    with pytest.raises(RuntimeError, match="startup handler"):
        common.state(memo)
    memo.state = common.OperatorState()
    state = common.state(copy.copy(memo))  # Kopf hands each object a shallow copy: the same state
    assert state is memo.state
    lock = state.lock("FineTuneJob", "team", "travel")
    assert state.lock("FineTuneJob", "team", "travel") is lock
    assert state.lock("Evaluation", "team", "travel") is not lock
    state.forget("FineTuneJob", "team", "travel")
    assert state.lock("FineTuneJob", "team", "travel") is not lock


def test_live_child_owner_ignores_deleted_and_unowned_children():
    child = {"metadata": {"ownerReferences": [{"kind": "Evaluation", "name": "travel-eval"}]}}
    assert common.live_child_owner({"type": "MODIFIED"}, child, "Evaluation") == "travel-eval"
    assert common.live_child_owner({"type": "DELETED"}, child, "Evaluation") is None
    assert common.live_child_owner({"type": "ADDED"}, child, "ModelDeployment") is None


def test_an_object_unchanged_in_what_admission_reads_is_not_admitted_again(monkeypatch):
    from kubetune.api.finetunejob import FineTuneJob

    admitted = []
    real = common.admit_resource
    monkeypatch.setattr(common, "admit_resource", lambda doc: admitted.append(doc) or real(doc))
    body = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "travel", "namespace": "team", "uid": "u1", "generation": 1},
        "spec": {
            "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "dataset": {"train": {"uri": "pvc://datasets/train.jsonl"}},
        },
    }
    state = common.OperatorState()
    common.parse(FineTuneJob, body, state)
    common.parse(FineTuneJob, {**body, "status": {"phase": "Running"}}, state)  # a status write
    assert len(admitted) == 1
    labelled = {**body["metadata"], "labels": {"team": "not a label value"}}
    edited = {**body, "metadata": labelled}  # an invalid edit is still refused
    with pytest.raises(kopf.PermanentError, match=r"metadata\.labels"):
        common.parse(FineTuneJob, edited, state)
    with pytest.raises(kopf.PermanentError):
        common.parse(FineTuneJob, edited, state)  # and stays refused
    assert len(admitted) == 3
