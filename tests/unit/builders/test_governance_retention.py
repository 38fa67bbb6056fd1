"""Governance (issue 11 item 6): labels/annotations on every child, Evaluations through Kueue, ServiceAccount
annotations. Retention (item 7): the created PVC is not owned by its job, and what the finalizer decides."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from kubetune import constants as c
from kubetune.api import Evaluation, FineTuneJob
from kubetune.builders import evaluation as ev
from kubetune.builders import retention
from kubetune.builders.meta import Propagation
from kubetune.builders.pods import PodSettings
from kubetune.builders.storage import build_pvc, created_by_operator
from kubetune.controllers.config import OperatorConfig
from kubetune.controllers.finetunejob import children
from kubetune.status import evaluation as ev_status

TEAM_LABELS = {
    "team": "travel",
    "cost-center": "ml-42",
    c.LABEL_KUEUE_PRIORITY_CLASS: "batch-high",
    # Tool bookkeeping that must not reach the children: Argo CD would adopt (and prune) them.
    "app.kubernetes.io/instance": "argocd-app",
    "argocd.argoproj.io/instance": "argocd-app",
    c.LABEL_KUEUE_QUEUE: "sneaky",
}
TEAM_ANNOTATIONS = {
    "propagate.kubetune.dev/budget": "q3-fine-tunes",
    "kubectl.kubernetes.io/last-applied-configuration": "{...}",
    "example.com/private": "not for children",
}
CHART = Propagation(default_labels={"cluster-tier": "gpu", "team": "default-team"}, default_annotations={"a/b": "c"})


def ftj(name: str = "travel", *, labels=None, annotations=None, status=None, **spec: Any) -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {
                "name": name,
                "namespace": "team",
                "uid": "uid-1",
                "generation": 1,
                "labels": TEAM_LABELS if labels is None else labels,
                "annotations": TEAM_ANNOTATIONS if annotations is None else annotations,
            },
            "spec": {
                "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
                "dataset": {"train": {"uri": "pvc://datasets/train.jsonl"}},
                "resources": {"gpus": 0},
                **spec,
            },
            "status": status,
        }
    )


def evaluation(*, job_queue: str | None = None, **spec: Any) -> tuple[Evaluation, FineTuneJob]:
    e = Evaluation.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "Evaluation",
            "metadata": {
                "name": "travel-eval",
                "namespace": "team",
                "uid": "e-1",
                "generation": 1,
                "labels": TEAM_LABELS,
                "annotations": TEAM_ANNOTATIONS,
            },
            "spec": {
                "model": {"fineTuneJob": {"name": "travel"}},
                "dataset": {"uri": "pvc://datasets/test.jsonl"},
                "resources": {"gpus": 0},
                **spec,
            },
        }
    )
    status = {"checkpoints": [{"name": "checkpoint-10", "step": 10, "uri": "pvc://travel-data/output/checkpoint-10"}]}
    job = ftj(status=status, **({"queueName": job_queue} if job_queue else {}))
    return e, job


def metadatas(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, metadata) of an object and every pod or Job template inside it."""
    out = [(manifest["kind"], manifest["metadata"])]
    spec = manifest.get("spec") or {}
    for i, rj in enumerate(spec.get("replicatedJobs") or []):
        out.append((f"replicatedJobs[{i}]", rj["template"]["metadata"]))
        out.append((f"replicatedJobs[{i}] pods", rj["template"]["spec"]["template"]["metadata"]))
    if "template" in spec:
        out.append((f"{manifest['kind']} pods", spec["template"]["metadata"]))
    return out


def assert_governed(manifests: Sequence[dict[str, Any] | None], parent_label: str, parent: str) -> None:
    for manifest in manifests:
        if manifest is None:
            continue
        for where, meta in metadatas(manifest):
            labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
            assert labels["team"] == "travel", where  # the resource's own label beats the chart's default
            assert labels["cost-center"] == "ml-42", where
            assert labels[c.LABEL_KUEUE_PRIORITY_CLASS] == "batch-high", where
            assert labels["cluster-tier"] == "gpu", where  # the chart's default
            assert labels[c.LABEL_INSTANCE] == parent, where  # ours, not Argo CD's tracking label
            assert labels[parent_label] == parent, where
            assert "argocd.argoproj.io/instance" not in labels, where
            assert annotations["propagate.kubetune.dev/budget"] == "q3-fine-tunes", where
            assert annotations["a/b"] == "c", where
            assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations, where
            assert "example.com/private" not in annotations, where


@pytest.mark.parametrize("on_jobset", [False, True], ids=["batch-job", "jobset"])
def test_every_child_of_a_finetunejob_and_its_pods_carry_the_team_labels(on_jobset: bool):
    nodes = {"nodes": 2, "gpus": 0} if on_jobset else {"gpus": 0}
    storage = {"accessModes": ["ReadWriteMany"]} if on_jobset else {}
    job = ftj(resources=nodes, storage=storage)
    made = children(job, None, PodSettings(), on_jobset=on_jobset, propagation=CHART)
    kinds = [m["kind"] for m in made if m is not None]
    assert kinds == ["PersistentVolumeClaim", "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Job"] or (
        on_jobset and kinds[-1] == "JobSet"
    )
    assert_governed(made, c.LABEL_JOB, "travel")
    workload = made[-1]
    assert workload is not None
    # spec.queueName alone queues a workload: a queue label on the resource's metadata is not passed on.
    assert c.LABEL_KUEUE_QUEUE not in workload["metadata"]["labels"]
    assert workload["spec"].get("suspend") in (False, None)


def test_the_selector_labels_stay_kubetunes_whatever_the_resource_says():
    job = ftj(labels={c.LABEL_ROLE: "evil", c.LABEL_MANAGED_BY: "someone", "team": "t"})
    made = children(job, None, PodSettings(), propagation=Propagation(default_labels={c.LABEL_ROLE: "x"}))
    batch = made[-1]
    assert batch is not None
    for _, meta in metadatas(batch):
        assert meta["labels"][c.LABEL_ROLE] == c.ROLE_TRAIN
        assert meta["labels"][c.LABEL_MANAGED_BY] == c.MANAGED_BY
        assert meta["labels"]["team"] == "t"


def test_evaluation_children_carry_the_labels_and_its_job_goes_through_kueue():
    e, job = evaluation(queueName="team-eval")
    made = ev.build_children(e, job, ev.run_config(e, job), PodSettings(), CHART)
    assert [m["kind"] for m in made] == ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Job"]
    assert_governed(made, c.LABEL_EVALUATION, "travel-eval")
    batch = made[-1]
    assert batch["metadata"]["labels"][c.LABEL_KUEUE_QUEUE] == "team-eval"
    assert batch["spec"]["suspend"] is True  # Kueue admits it; the operator never unsuspends it


def test_an_evaluation_queues_where_its_finetunejob_queues_unless_it_names_a_queue():
    e, job = evaluation(job_queue="team-train")
    batch = ev.build_eval_job(e, job, ev.run_config(e, job))
    assert batch["metadata"]["labels"][c.LABEL_KUEUE_QUEUE] == "team-train" and batch["spec"]["suspend"] is True
    e, job = evaluation()
    batch = ev.build_eval_job(e, job, ev.run_config(e, job))
    assert c.LABEL_KUEUE_QUEUE not in batch["metadata"]["labels"] and batch["spec"]["suspend"] is False


def test_a_suspended_evaluation_job_is_queued_not_running():
    e, job = evaluation(queueName="team-eval")
    batch = ev.build_eval_job(e, job, ev.run_config(e, job))
    outcome = ev_status.observe(e, batch)
    assert (outcome.phase, outcome.reason) == ("Queued", "Queued")
    assert "team-eval" in outcome.message and batch["metadata"]["name"] in outcome.message
    batch["spec"]["suspend"] = False  # Kueue admitted it
    assert ev_status.observe(e, batch).phase == "Running"


def test_service_accounts_carry_the_workload_identity_annotations_from_the_spec():
    identity = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/travel-s3"}
    sa = children(ftj(serviceAccount={"annotations": identity}), None, PodSettings())[2]
    assert sa is not None and sa["kind"] == "ServiceAccount"
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == identity["eks.amazonaws.com/role-arn"]
    gke = {"iam.gke.io/gcp-service-account": "travel@proj.iam.gserviceaccount.com"}
    e, _ = evaluation(serviceAccount={"annotations": gke})
    sa = ev.build_rbac(e)[0]
    assert sa["metadata"]["annotations"] == gke
    with pytest.raises(ValueError, match="serviceAccount"):
        ftj(serviceAccount={"annotations": {"not a key!": "x"}})


def test_the_created_pvc_has_no_owner_reference_and_is_still_known_as_the_operators():
    pvc = build_pvc(ftj())
    assert pvc is not None
    assert "ownerReferences" not in pvc["metadata"]
    assert created_by_operator(pvc, "uid-1") and not created_by_operator(pvc, "uid-2")
    # One made before retention policies (owned by the job) still counts.
    legacy = {"metadata": {"annotations": {c.ANNOTATION_CREATED_PVC: "true"}, "ownerReferences": [{"uid": "uid-1"}]}}
    assert created_by_operator(legacy, "uid-1")
    assert ftj().spec.storage.retention_policy.when_deleted == "Delete"  # the default, explicit in the CRD


def test_claims_used_by_deployments_evaluations_and_continued_jobs():
    md = {"spec": {"model": {"fineTuneJob": {"name": "travel"}}, "adapters": [{"uri": "pvc://shared/a/b"}]}}
    assert retention.claims_used(md) == {"travel-data", "shared"}
    evaluation_body = {"spec": {"model": {"fineTuneJob": {"name": "travel"}}, "dataset": {"uri": "pvc://d/t"}}}
    assert retention.claims_used(evaluation_body) == {"travel-data", "d"}
    continued = {
        "spec": {"baseModel": {"fromJob": {"name": "travel", "checkpoint": "best"}}, "storage": {"claimName": "mine"}},
        "status": {"baseModelUri": "pvc://travel-data/output/checkpoint-400"},
    }
    assert retention.claims_used(continued) == {"travel-data", "mine"}


def kept_pvc(**annotations: str) -> dict[str, Any]:
    pvc = build_pvc(ftj())
    assert pvc is not None
    pvc["metadata"]["annotations"].update(annotations)
    pvc["metadata"]["ownerReferences"] = [{"uid": "uid-1", "kind": "FineTuneJob"}, {"uid": "other"}]  # legacy
    return pvc


def test_a_pvc_in_use_is_kept_with_its_users_and_an_explanation():
    verdict = retention.on_job_deleted(kept_pvc(), "travel", "uid-1", "Delete", ["ModelDeployment/travel"])
    assert verdict.action == "keep" and verdict.reason == c.Reason.PVC_RETAINED
    assert verdict.message.startswith("kept PersistentVolumeClaim/travel-data of deleted FineTuneJob travel")
    assert "still used by ModelDeployment/travel" in verdict.message
    assert verdict.patch is not None
    meta = verdict.patch["metadata"]
    # Argo CD's tracking label goes: nothing owns the kept PVC, an application of the job's name would prune it.
    assert meta["labels"] == {c.LABEL_RETENTION: "Delete", c.LABEL_INSTANCE: None}
    assert meta["annotations"][c.ANNOTATION_RETAINED_FOR] == "ModelDeployment/travel"
    assert meta["ownerReferences"] == [{"uid": "other"}]  # the job's reference goes, others stay


def test_an_unused_pvc_is_deleted_and_retain_always_keeps_it():
    assert retention.on_job_deleted(kept_pvc(), "travel", "uid-1", "Delete", []).action == "delete"
    verdict = retention.on_job_deleted(kept_pvc(), "travel", "uid-1", "Retain", [])
    assert verdict.action == "keep" and "Retain" in verdict.message
    assert verdict.patch is not None
    assert verdict.patch["metadata"]["labels"] == {c.LABEL_RETENTION: "Retain", c.LABEL_INSTANCE: None}


def test_a_kept_pvc_goes_once_its_last_user_has_gone_unless_retained():
    pvc = kept_pvc(**{c.ANNOTATION_RETAINED_FOR: "ModelDeployment/travel"})
    pvc["metadata"]["labels"][c.LABEL_RETENTION] = "Delete"
    pvc["metadata"]["uid"] = "pvc-uid"  # as the job's finalizer released it
    pvc["metadata"]["annotations"][c.ANNOTATION_RELEASED_CLAIM_UID] = "pvc-uid"
    pvc["metadata"]["annotations"][c.ANNOTATION_RETAINED_FROM] = "FineTuneJob/travel"
    assert retention.sweep(pvc, ["ModelDeployment/travel"]) is None  # nothing changed
    update = retention.sweep(pvc, ["Evaluation/e", "ModelDeployment/travel"])
    assert update is not None and update.action == "keep"
    assert update.patch == {
        "metadata": {"annotations": {c.ANNOTATION_RETAINED_FOR: "Evaluation/e, ModelDeployment/travel"}}
    }
    gone = retention.sweep(pvc, [])
    assert gone is not None and gone.action == "delete" and gone.reason == c.Reason.PVC_DELETED
    pvc["metadata"]["labels"][c.LABEL_RETENTION] = "Retain"
    assert retention.sweep(pvc, ["ModelDeployment/travel"]) is None
    unused = retention.sweep(pvc, [])  # Retain: never deleted, its users still noted
    assert unused is not None and unused.action == "keep"


def test_chart_defaults_are_read_from_the_environment_and_bad_json_names_the_variable():
    cfg = OperatorConfig.from_env(
        {"KUBETUNE_DEFAULT_LABELS": '{"team": "x"}', "KUBETUNE_PROPAGATE_ANNOTATION_PREFIXES": "a/, b/"}
    )
    assert cfg.propagation.default_labels == {"team": "x"}
    assert cfg.propagation.annotation_prefixes == ("a/", "b/")
    assert OperatorConfig.from_env({}).propagation.annotation_prefixes == ("propagate.kubetune.dev/",)
    with pytest.raises(ValueError, match="KUBETUNE_DEFAULT_ANNOTATIONS"):
        OperatorConfig.from_env({"KUBETUNE_DEFAULT_ANNOTATIONS": "team=x"})
