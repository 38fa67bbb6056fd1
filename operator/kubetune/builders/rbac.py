"""Per-job identity: the trainer pod may read and patch the status of its own FineTuneJob, nothing else."""

from __future__ import annotations

from typing import Any

from kubetune import constants as c
from kubetune.api.finetunejob import FineTuneJob
from kubetune.builders import names
from kubetune.builders.meta import child_metadata


def service_account_name(job: FineTuneJob) -> str:
    return names.child_name(job.metadata.name, c.ROLE_RUNNER)


def build_rbac(job: FineTuneJob) -> list[dict[str, Any]]:
    """[ServiceAccount, Role, RoleBinding], all named `<job>-runner` and owned by the job."""
    name = service_account_name(job)
    sa = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(job, c.ROLE_RUNNER, name=name),
        "automountServiceAccountToken": True,
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": child_metadata(job, c.ROLE_RUNNER, name=name),
        "rules": [
            {
                "apiGroups": [c.GROUP],
                "resources": [f"{c.PLURALS[c.FINETUNEJOB]}/status"],
                "resourceNames": [job.metadata.name],
                "verbs": ["get", "patch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": child_metadata(job, c.ROLE_RUNNER, name=name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": job.metadata.namespace}],
    }
    return [sa, role, binding]
