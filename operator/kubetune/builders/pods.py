"""Pieces of pod specs shared by training, evaluation and serving pods.

Pods run as a non-root user with a read-only root file system, no privilege escalation, the runtime's
default seccomp profile and no capabilities; what must be writable (/tmp, the Hugging Face cache,
/dev/shm for data loaders and NCCL) is an emptyDir. Models and data referenced as `pvc://CLAIM/PATH`
are mounted read-only at `/mnt/pvc/CLAIM`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from kubetune import constants as c
from kubetune.api.common import EnvVar, ResourcesSpec, SecretKeyRef, Toleration
from kubetune.api.modeldeployment import ServeResources


@dataclass(frozen=True)
class PodSettings:
    """What the operator is configured with (env vars / flags) and every pod builder needs."""

    trainer_image: str = c.DEFAULT_TRAINER_IMAGE
    image_pull_policy: str = "IfNotPresent"
    storage_class_name: str | None = None  # default StorageClass of created PVCs (None: the cluster default)
    run_as_user: int = c.TRAINER_USER_ID
    progress_interval_seconds: float = 10.0  # how often the trainer patches status.progress


def pod_security_context(settings: PodSettings) -> dict[str, Any]:
    uid = settings.run_as_user
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def termination_message() -> dict[str, Any]:
    """Container fields that make the trainer's failure reason (or, without one, its last log lines) the
    container's termination message, which the operator puts into the resource's status."""
    return {"terminationMessagePath": c.TERMINATION_LOG_PATH, "terminationMessagePolicy": "FallbackToLogsOnError"}


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scratch_volumes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) of the writable scratch space a read-only root file system needs."""
    volumes = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "hf-cache", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]
    mounts = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "hf-cache", "mountPath": c.HF_CACHE_DIR},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    return volumes, mounts


def pvc_claims(uris: Iterable[str | None]) -> list[str]:
    """Claims named by `pvc://CLAIM/...` URIs, in first-seen order."""
    out: list[str] = []
    for uri in uris:
        if uri and uri.startswith("pvc://"):
            claim = urlparse(uri).netloc
            if claim and claim not in out:
                out.append(claim)
    return out


def volume_name(claim: str) -> str:
    """A volume name (DNS-1123 label, <= 63 chars) for a claim, unique per claim: a claim name that had to be
    changed (dots, longer than fits) gets an 8-character hash of the claim (`my.claim` and `my-claim` differ)."""
    name = "pvc-" + claim
    if len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        return name
    digest = hashlib.sha256(claim.encode()).hexdigest()[:8]
    safe = re.sub(r"[^a-z0-9-]", "-", claim.lower())
    return f"pvc-{safe[: 63 - 4 - 9].strip('-')}-{digest}"


def claim_volumes(
    claims: Iterable[str], *, writable: Iterable[str] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) for claims at /mnt/pvc/CLAIM; read-only unless listed in `writable`."""
    rw = set(writable)
    volumes, mounts = [], []
    for claim in claims:
        vol = volume_name(claim)
        volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": claim, "readOnly": claim not in rw}})
        mounts.append({"name": vol, "mountPath": f"{c.PVC_MOUNT_ROOT}/{claim}", "readOnly": claim not in rw})
    return volumes, mounts


def secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    """An env var taken from a Secret key: the value never appears in a manifest."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def user_env(env: Iterable[EnvVar]) -> list[dict[str, Any]]:
    out = []
    for var in env:
        if var.secret_key_ref is not None:
            out.append(secret_env(var.name, var.secret_key_ref))
        else:
            out.append({"name": var.name, "value": var.value or ""})
    return out


def process_env() -> list[dict[str, Any]]:
    """What the process in every kubetune container needs: the Hugging Face cache on the scratch volume,
    a writable HOME (the root file system is read-only) and unbuffered logs."""
    return [
        {"name": "HF_HOME", "value": c.HF_CACHE_DIR},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def downward_env() -> list[dict[str, Any]]:
    """The pod's namespace, for the trainer's status patches."""
    return [{"name": c.ENV_POD_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]


def container_resources(res: ResourcesSpec | ServeResources) -> dict[str, Any]:
    """Requests and limits; memory is limited at its request, GPUs are requested as limits."""
    requests: dict[str, Any] = {"cpu": str(res.cpu), "memory": str(res.memory)}
    limits: dict[str, Any] = {"memory": str(res.memory)}
    if res.gpus > 0:
        limits[res.gpu_resource_name] = str(res.gpus)
        requests[res.gpu_resource_name] = str(res.gpus)
    return {"requests": requests, "limits": limits}


def scheduling(res: ResourcesSpec | ServeResources) -> dict[str, Any]:
    """nodeSelector, tolerations and priorityClassName of a pod spec (only those set)."""
    out: dict[str, Any] = {}
    if res.node_selector:
        out["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        out["tolerations"] = [_toleration(t) for t in res.tolerations]
    if res.priority_class_name:
        out["priorityClassName"] = res.priority_class_name
    return out


def _toleration(t: Toleration) -> dict[str, Any]:
    return t.to_k8s()
