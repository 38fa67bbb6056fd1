"""Names, labels and locations of the objects and files that belong to a resource.

Child objects are `<parent>-<role>` and stay within 63 characters: a name that would be longer keeps
its start and gets an 8-character hash of the full name, so two long parents never collide.
"""

from __future__ import annotations

import hashlib
import re

from kubetune import constants as c
from kubetune.api.finetunejob import FineTuneJob

MAX_NAME = 63


def child_name(parent: str, role: str, max_len: int = MAX_NAME) -> str:
    full = f"{parent}-{role}"
    if len(full) <= max_len:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    keep = max_len - len(role) - len(digest) - 2
    return f"{parent[:keep].rstrip('-.')}-{digest}-{role}"


DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def dns_label_name(parent: str, role: str, max_len: int = MAX_NAME) -> str:
    """child_name that is also a DNS-1035 label, as Service names and pod hostnames must be.

    A parent name may be a DNS subdomain (dots) or start with a digit; such a name keeps its letters and
    digits, dots become dashes, a leading digit gets an `x` in front, and an 8-character hash of the full
    original name goes in: the mapping is stable (the same parent always gets the same name) and unique
    (`a.b` and `a-b` differ). Names that are already valid labels are unchanged.
    """
    name = child_name(parent, role, max_len)
    if DNS1035_LABEL.match(name):
        return name
    digest = hashlib.sha256(f"{parent}-{role}".encode()).hexdigest()[:8]
    safe = re.sub(r"[^a-z0-9-]+", "-", parent.lower())
    safe = safe if safe[:1].isalpha() else f"x{safe}"
    keep = max_len - len(role) - len(digest) - 2
    return f"{safe[:keep].strip('-')}-{digest}-{role}"


def labels(parent_label: str, parent: str, role: str) -> dict[str, str]:
    """Labels of a child object; `parent_label` is e.g. constants.LABEL_JOB."""
    return {
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_PART_OF: "kubetune",
        c.LABEL_COMPONENT: role,
        c.LABEL_INSTANCE: parent[:MAX_NAME].rstrip("-."),
        parent_label: parent[:MAX_NAME].rstrip("-."),
        c.LABEL_ROLE: role,
    }


def job_claim_name(job: FineTuneJob) -> str:
    """The PVC holding the job's checkpoints: the user's claim, or the one the operator creates."""
    return job.spec.storage.claim_name or child_name(job.metadata.name, c.ROLE_DATA)


def job_output_path(job: FineTuneJob) -> str:
    """Path of the job's output inside its claim; a shared user claim gets a folder per job."""
    if job.spec.storage.claim_name:
        return f"kubetune/{job.metadata.name}/output"
    return "output"


def job_output_uri(job: FineTuneJob) -> str:
    return f"pvc://{job_claim_name(job)}/{job_output_path(job)}"


def checkpoint_uri(job: FineTuneJob, checkpoint: str) -> str:
    return f"{job_output_uri(job)}/{checkpoint}"
