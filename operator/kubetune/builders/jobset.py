"""The training workload of a multi-node FineTuneJob as a JobSet (jobset.x-k8s.io/v1alpha2), used when the
cluster serves JobSets (the operator discovers the CRD at start) and the operator may use them.

One replicated Job `node` (one replica): an Indexed Job with one pod per node, as Kubeflow Trainer v2 builds
it. JobSet gives the pods stable hostnames `<jobset>-node-0-<index>.<subdomain>` through the headless Service
it creates (`network.enableDNSHostnames`), so index 0 is the rendezvous host; Kueue admits the JobSet as one
gang (queue label, created suspended).

Group restart: the child Job has `backoffLimit: 0`, so any trainer crash fails it, and the JobSet recreates
every Job of the group (`restartStrategy: Recreate`) instead of leaving the other ranks hung in a collective;
`failurePolicy.maxRestarts` is `spec.backoffLimit`. What the batch Job's podFailurePolicy says carries over
through JobSet's failure-policy rules, which match the child Job's failure reason and message (the Job
controller writes "... matching FailJob rule at index N"):

- invalid data (trainer exit 3): FailJobSet, at once;
- preemption or a drain (DisruptionTarget) and a stop after a saved checkpoint (exit 143): the whole group
  restarts without using up a retry (RestartJobSetAndIgnoreMaxRestarts), resuming from the checkpoint;
- the child Job ran past `activeDeadlineSeconds`: FailJobSet;
- anything else (a crash): RestartJobSet, counted against maxRestarts.
"""

from __future__ import annotations

from typing import Any

from kubetune import constants as c
from kubetune.api.finetunejob import FineTuneJob
from kubetune.builders import names
from kubetune.builders.meta import child_metadata
from kubetune.builders.pods import PodSettings
from kubetune.builders.training import headless_service_name, spec_hash, training_pod_template

GROUP = "jobset.x-k8s.io"
VERSION = "v1alpha2"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "JobSet"
PLURAL = "jobsets"
REPLICATED_JOB = "node"
LABEL_JOBSET_UID = "jobset.sigs.k8s.io/jobset-uid"  # JobSet puts it on its child Jobs and their pods

# The child Job's podFailurePolicy rules, by index: JobSet's rules below match the index in the failure
# message the Job controller writes, so keep the two in step.
RULE_DATA_INVALID, RULE_DISRUPTED, RULE_STOPPED_WITH_CHECKPOINT = 0, 1, 2


def jobset_name(job: FineTuneJob) -> str:
    """`<job>-train`, short enough that each pod's hostname `<jobset>-node-0-<index>` is a DNS label."""
    suffix = len(f"-{REPLICATED_JOB}-0-{job.spec.resources.nodes - 1}")
    return names.dns_label_name(job.metadata.name, c.ROLE_TRAIN, max_len=names.MAX_NAME - suffix)


def child_job_name(job: FineTuneJob) -> str:
    """The one Job the JobSet creates: `<jobset>-<replicatedJob>-<jobIndex>`."""
    return f"{jobset_name(job)}-{REPLICATED_JOB}-0"


def subdomain(job: FineTuneJob) -> str:
    """The headless Service JobSet creates for the pods (the same name the Indexed Job fallback uses)."""
    return headless_service_name(job)


def rendezvous_host(job: FineTuneJob) -> str:
    """Index 0's fully qualified hostname: `<jobset>-node-0-0.<subdomain>`."""
    return f"{child_job_name(job)}-0.{subdomain(job)}"


def child_pod_failure_policy() -> dict[str, Any]:
    """The child Job fails at once on each of these (FailJob), with the rule's index in its message, so the
    JobSet's rules can tell them apart; any other exit fails it through `backoffLimit: 0`."""
    data_invalid = {
        "action": "FailJob",
        "onExitCodes": {
            "containerName": c.TRAINER_CONTAINER,
            "operator": "In",
            "values": [c.EXIT_DATA_VALIDATION_FAILED],
        },
    }
    disrupted = {"action": "FailJob", "onPodConditions": [{"type": c.POD_DISRUPTION_TARGET}]}
    stopped_with_checkpoint = {
        "action": "FailJob",
        "onExitCodes": {
            "containerName": c.TRAINER_CONTAINER,
            "operator": "In",
            "values": [c.EXIT_STOPPED_WITH_CHECKPOINT],
        },
    }
    rules = [data_invalid, disrupted, stopped_with_checkpoint]  # in the order of the RULE_* indexes
    return {"rules": rules}


def _matching_rule(index: int) -> str:
    """A regular expression (RE2) for the Job controller's message when podFailurePolicy rule `index` failed it."""
    return f"matching FailJob rule at index {index}$"


def failure_policy(job: FineTuneJob) -> dict[str, Any]:
    """JobSet's failurePolicy: the group restarts on a failure, up to `spec.backoffLimit` times for crashes."""
    return {
        "maxRestarts": job.spec.backoff_limit,
        "restartStrategy": "Recreate",
        "rules": [
            {
                "name": "DataValidationFailed",
                "action": "FailJobSet",
                "onJobFailureReasons": ["PodFailurePolicy"],
                "onJobFailureMessagePatterns": [_matching_rule(RULE_DATA_INVALID)],
            },
            {
                "name": "DisruptedOrStoppedWithCheckpoint",
                "action": "RestartJobSetAndIgnoreMaxRestarts",
                "onJobFailureReasons": ["PodFailurePolicy"],
                "onJobFailureMessagePatterns": [
                    _matching_rule(RULE_DISRUPTED),
                    _matching_rule(RULE_STOPPED_WITH_CHECKPOINT),
                ],
            },
            {"name": "DeadlineExceeded", "action": "FailJobSet", "onJobFailureReasons": ["DeadlineExceeded"]},
            {"name": "Crashed", "action": "RestartJobSet"},
        ],
    }


def build_training_jobset(
    job: FineTuneJob, settings: PodSettings | None = None, *, source_checkpoint_uri: str | None = None
) -> dict[str, Any]:
    """The JobSet that trains a multi-node job; owned by the FineTuneJob, carrying the spec hash as the batch
    Job does (so a spec edit before training re-creates it)."""
    settings = settings or PodSettings()
    spec, res = job.spec, job.spec.resources
    template = training_pod_template(
        job, settings, source_checkpoint_uri=source_checkpoint_uri, master=rendezvous_host(job)
    )
    child_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": res.nodes,
        "parallelism": res.nodes,
        "backoffLimit": 0,  # a crash fails the child Job, and the JobSet restarts the whole group
        "podFailurePolicy": child_pod_failure_policy(),
        "podReplacementPolicy": "Failed",  # two pods never hold the same GPUs
        "template": template,
    }
    if spec.active_deadline_seconds is not None:
        child_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    meta = child_metadata(
        job, c.ROLE_TRAIN, name=jobset_name(job), annotations={c.ANNOTATION_SPEC_HASH: spec_hash(job)}
    )
    if spec.queue_name:
        meta["labels"][c.LABEL_KUEUE_QUEUE] = spec.queue_name
    jobset_spec: dict[str, Any] = {
        "suspend": bool(spec.suspend or spec.queue_name),
        "network": {"enableDNSHostnames": True, "subdomain": subdomain(job), "publishNotReadyAddresses": True},
        "successPolicy": {"operator": "All"},
        "failurePolicy": failure_policy(job),
        "replicatedJobs": [
            {
                "name": REPLICATED_JOB,
                "replicas": 1,
                "template": {"metadata": {"labels": dict(template["metadata"]["labels"])}, "spec": child_spec},
            }
        ],
    }
    if spec.ttl_seconds_after_finished is not None:
        jobset_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": jobset_spec}


def uses_jobset(job: FineTuneJob, jobset_available: bool) -> bool:
    """Whether the job trains on a JobSet: several nodes, and the cluster serves JobSets the operator may use."""
    return jobset_available and job.spec.resources.nodes > 1
