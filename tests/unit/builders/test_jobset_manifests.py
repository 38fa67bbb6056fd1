"""A multi-node FineTuneJob as a JobSet: group restart, rendezvous on index 0, Kueue, ownership."""

import re

from kubetune import constants as c
from kubetune.api import FineTuneJob
from kubetune.builders import jobset
from kubetune.builders.training import build_training_job, spec_hash

BASE = {
    "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
    "dataset": {"train": {"uri": "pvc://datasets/travel/train.jsonl"}},
}


def ftj(name="travel", **spec) -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": "team", "uid": "uid-1", "generation": 1},
            "spec": {**BASE, "resources": {"nodes": 4, "gpus": 8}, **spec},
        }
    )


def child(js):
    (rj,) = js["spec"]["replicatedJobs"]
    return rj


def env_of(js):
    (container,) = child(js)["template"]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def job_failure_message(rule_index: int, exit_code: int = 1) -> str:
    """What the Job controller writes when podFailurePolicy rule `rule_index` (FailJob) fails the Job."""
    return f"Container trainer for pod team/p-0 failed with exit code {exit_code} matching FailJob rule at index {rule_index}"


def first_matching_rule(js, reason: str, message: str):
    """JobSet's rule selection: the first rule whose reasons and message patterns match (empty lists match)."""
    for rule in js["spec"]["failurePolicy"]["rules"]:
        reasons, patterns = rule.get("onJobFailureReasons") or [], rule.get("onJobFailureMessagePatterns") or []
        if (not reasons or reason in reasons) and (not patterns or any(re.search(p, message) for p in patterns)):
            return rule["action"]
    return "RestartJobSet"


def test_jobset_is_owned_by_the_job_and_carries_its_spec_hash():
    job = ftj()
    js = jobset.build_training_jobset(job)
    assert (js["apiVersion"], js["kind"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet")
    (ref,) = js["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("FineTuneJob", "uid-1", True)
    assert js["metadata"]["namespace"] == "team"
    assert js["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH] == spec_hash(job)
    assert js["metadata"]["labels"][c.LABEL_ROLE] == c.ROLE_TRAIN


def test_one_indexed_child_job_with_a_pod_per_node_rendezvous_on_index_0():
    job = ftj()
    js = jobset.build_training_jobset(job)
    rj = child(js)
    assert rj["replicas"] == 1
    spec = rj["template"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    network = js["spec"]["network"]
    assert network["enableDNSHostnames"] is True
    env = env_of(js)
    # JobSet's hostnames: <jobset>-<replicatedJob>-<jobIndex>-<podIndex>.<subdomain>
    assert env["MASTER_ADDR"] == f"{js['metadata']['name']}-{rj['name']}-0-0.{network['subdomain']}"
    assert env["NNODES"] == "4" and env["NPROC_PER_NODE"] == "8"
    assert env["NODE_RANK"] == {"fieldRef": {"fieldPath": f"metadata.annotations['{c.ANNOTATION_COMPLETION_INDEX}']"}}
    # JobSet sets the pods' subdomain itself
    assert "subdomain" not in spec["template"]["spec"]


def test_pod_hostnames_of_a_long_named_job_stay_dns_labels():
    job = ftj(name="a" * 63, resources={"nodes": 12})
    js = jobset.build_training_jobset(job)
    last_pod = f"{js['metadata']['name']}-{child(js)['name']}-0-11"
    assert len(last_pod) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", last_pod)


def test_a_crash_restarts_the_whole_group_up_to_backoff_limit():
    js = jobset.build_training_jobset(ftj(backoffLimit=5))
    policy = js["spec"]["failurePolicy"]
    assert policy["maxRestarts"] == 5 and policy["restartStrategy"] == "Recreate"
    # any crash fails the child Job at once, and JobSet recreates every Job of the group
    assert child(js)["template"]["spec"]["backoffLimit"] == 0
    assert first_matching_rule(js, "BackoffLimitExceeded", "Job has reached the specified backoff limit") == (
        "RestartJobSet"
    )


def test_preemption_and_a_stop_after_a_checkpoint_do_not_use_up_retries_but_bad_data_fails_at_once():
    js = jobset.build_training_jobset(ftj())
    pfp = child(js)["template"]["spec"]["podFailurePolicy"]["rules"]
    by_index = {i: r for i, r in enumerate(pfp)}
    disrupted = next(i for i, r in by_index.items() if r.get("onPodConditions") == [{"type": "DisruptionTarget"}])
    stopped = next(i for i, r in by_index.items() if 143 in (r.get("onExitCodes") or {}).get("values", []))
    bad_data = next(
        i
        for i, r in by_index.items()
        if c.EXIT_DATA_VALIDATION_FAILED in (r.get("onExitCodes") or {}).get("values", [])
    )
    assert all(r["action"] == "FailJob" for r in pfp)
    preempted = f"Pod team/p-0 has condition DisruptionTarget matching FailJob rule at index {disrupted}"
    assert first_matching_rule(js, "PodFailurePolicy", preempted) == "RestartJobSetAndIgnoreMaxRestarts"
    assert first_matching_rule(js, "PodFailurePolicy", job_failure_message(stopped, 143)) == (
        "RestartJobSetAndIgnoreMaxRestarts"
    )
    assert first_matching_rule(js, "PodFailurePolicy", job_failure_message(bad_data, 3)) == "FailJobSet"
    assert first_matching_rule(js, "DeadlineExceeded", "Job was active longer than specified deadline") == (
        "FailJobSet"
    )


def test_kueue_jobset_carries_the_queue_label_and_starts_suspended():
    js = jobset.build_training_jobset(ftj(queueName="team-travel"))
    assert js["metadata"]["labels"][c.LABEL_KUEUE_QUEUE] == "team-travel"
    assert js["spec"]["suspend"] is True
    assert jobset.build_training_jobset(ftj())["spec"]["suspend"] is False


def test_the_pods_are_the_indexed_jobs_but_for_rendezvous():
    """The JobSet's pod is the fallback's pod: same image, command, volumes, security; only the master differs."""
    job = ftj()
    js_pod = child(jobset.build_training_jobset(job))["template"]["spec"]["template"]
    job_pod = build_training_job(job)["spec"]["template"]
    for pod in (js_pod, job_pod):
        pod["spec"].pop("subdomain", None)
        (container,) = pod["spec"]["containers"]
        container["env"] = [e for e in container["env"] if e["name"] != "MASTER_ADDR"]
    assert js_pod == job_pod


def test_jobset_is_used_for_several_nodes_when_served_only():
    assert jobset.uses_jobset(ftj(), True)
    assert not jobset.uses_jobset(ftj(), False)
    assert not jobset.uses_jobset(ftj(resources={"nodes": 1}), True)
