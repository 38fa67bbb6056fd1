"""Per-run identity: a pod may read and patch the status of the one resource it works for, nothing else.

The trainer pod of a FineTuneJob patches `finetunejobs/status` of its job; the evaluation pod of an
Evaluation patches `evaluations/status` of its Evaluation. Both get the same three objects from
`build_status_rbac`; only the owner (and with it the resource) and the name differ.
"""

from __future__ import annotations

from typing import Any

from kubetune import constants as c
from kubetune.api.evaluation import Evaluation
from kubetune.api.finetunejob import FineTuneJob
from kubetune.builders import names
from kubetune.builders.meta import child_metadata

StatusOwner = FineTuneJob | Evaluation


def runner_name(owner: StatusOwner, suffix: str = c.ROLE_RUNNER) -> str:
    """`<owner>-<suffix>`: the name of the ServiceAccount, Role and RoleBinding of its pods."""
    return names.child_name(owner.metadata.name, suffix)


def build_status_rbac(owner: StatusOwner, suffix: str = c.ROLE_RUNNER) -> list[dict[str, Any]]:
    """[ServiceAccount, Role, RoleBinding], all named `<owner>-<suffix>` and owned by `owner`; the
    ServiceAccount carries `spec.serviceAccount.annotations`.

    The Role allows get and patch of `<plural>/status` of `owner` alone (`resourceNames`), so the
    operator, which holds that permission itself, may create it without `escalate` or `bind`.
    """
    name = runner_name(owner, suffix)
    # spec.serviceAccount.annotations: e.g. the cloud identity (IRSA, GKE Workload Identity) its pods act as.
    sa_annotations = dict(owner.spec.service_account.annotations)
    sa = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(owner, c.ROLE_RUNNER, name=name, annotations=sa_annotations),
        "automountServiceAccountToken": True,
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": child_metadata(owner, c.ROLE_RUNNER, name=name),
        "rules": [
            {
                "apiGroups": [c.GROUP],
                "resources": [f"{c.PLURALS[owner.kind]}/status"],
                "resourceNames": [owner.metadata.name],
                "verbs": ["get", "patch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": child_metadata(owner, c.ROLE_RUNNER, name=name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.metadata.namespace}],
    }
    return [sa, role, binding]


def service_account_name(job: FineTuneJob) -> str:
    """`<job>-runner`: the identity of a FineTuneJob's trainer pods."""
    return runner_name(job)


def build_rbac(job: FineTuneJob) -> list[dict[str, Any]]:
    """The trainer pod's identity: get/patch of this FineTuneJob's status only."""
    return build_status_rbac(job)
