"""What the controllers share: which watch events are news, and whose child changed."""

from kubetune.controllers import common

JOB = {"metadata": {"namespace": "team", "name": "travel"}}


def test_only_a_changed_signature_or_a_deletion_is_news_until_the_operator_restarts():
    seen = common.Signatures()
    assert seen.news("FineTuneJob", {"type": "ADDED"}, JOB, ("Running", ()))
    assert not seen.news("FineTuneJob", {"type": "MODIFIED"}, JOB, ("Running", ()))
    assert seen.news("FineTuneJob", {"type": "MODIFIED"}, JOB, ("Running", ("checkpoint-100",)))
    assert seen.news("Evaluation", {"type": "MODIFIED"}, JOB, ("Running", ("checkpoint-100",)))  # kinds apart
    assert seen.news("FineTuneJob", {"type": "DELETED"}, JOB, ("Running", ("checkpoint-100",)))
    assert seen.news("FineTuneJob", {"type": "ADDED"}, JOB, ("Running", ("checkpoint-100",)))  # forgotten
    common.reset()
    assert seen.news("FineTuneJob", {"type": "MODIFIED"}, JOB, ("Running", ("checkpoint-100",)))


def test_live_child_owner_ignores_deleted_and_unowned_children():
    child = {"metadata": {"ownerReferences": [{"kind": "Evaluation", "name": "travel-eval"}]}}
    assert common.live_child_owner({"type": "MODIFIED"}, child, "Evaluation") == "travel-eval"
    assert common.live_child_owner({"type": "DELETED"}, child, "Evaluation") is None
    assert common.live_child_owner({"type": "ADDED"}, child, "ModelDeployment") is None
