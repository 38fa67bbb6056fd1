"""A resource name may be a DNS subdomain (dots, a leading digit); the children that must be DNS-1035 labels
(Services, the hostnames of Indexed pods) get a stable, unique mapped name instead of an invalid one."""

from __future__ import annotations

import re

import pytest

from kubetune import constants as c
from kubetune.api import FineTuneJob, ModelDeployment
from kubetune.builders.names import dns_label_name
from kubetune.builders.serving import build_service, serving_name
from kubetune.builders.training import build_headless_service, build_training_job

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def job(name: str, nodes: int = 2) -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": "team", "uid": "u"},
            "spec": {
                "baseModel": {"uri": "hf://a/b"},
                "dataset": {"train": {"uri": "pvc://d/t.jsonl"}},
                "resources": {"nodes": nodes},
                "storage": {"accessModes": ["ReadWriteMany"]},
            },
        }
    )


@pytest.mark.parametrize("name", ["travel.v2", "2nd-run", "a.b.c", "x" * 60 + ".y"])
def test_multi_node_children_of_a_dotted_name_are_dns_labels(name):
    ftj = job(name, nodes=4)
    service = build_headless_service(ftj)
    batch = build_training_job(ftj)
    svc_name = service["metadata"]["name"]
    assert DNS1035.match(svc_name) and len(svc_name) <= 63, svc_name
    hostname = f"{batch['metadata']['name']}-3"
    assert DNS1035.match(hostname) and len(hostname) <= 63, hostname
    pod = batch["spec"]["template"]["spec"]
    assert pod["subdomain"] == svc_name
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == f"{batch['metadata']['name']}-0.{svc_name}"


def test_mapped_names_are_stable_and_unique():
    assert dns_label_name("a.b", "headless") == dns_label_name("a.b", "headless")
    assert len({dns_label_name(n, "headless") for n in ("a.b", "a-b", "a.b.", "a..b")}) == 4
    assert dns_label_name("travel", "headless") == "travel-headless"  # valid names are unchanged


def test_single_node_and_plain_names_keep_their_names():
    assert build_training_job(job("travel", nodes=1))["metadata"]["name"] == "travel-train"
    assert build_headless_service(job("travel"))["metadata"]["name"] == f"travel-{c.ROLE_HEADLESS}"


@pytest.mark.parametrize("name", ["assistant.v2", "7b-assistant"])
def test_a_model_deployments_service_name_is_a_dns_label(name):
    md = ModelDeployment.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "team", "uid": "u"},
            "spec": {"model": {"uri": "hf://a/b"}},
        }
    )
    assert DNS1035.match(serving_name(md)) and build_service(md)["metadata"]["name"] == serving_name(md)
