"""Publish an evaluation's outcome: a merge patch of the Evaluation's status (in a pod) or nothing (local runs).

For `progress.backend: file` the status is appended as one JSON line
`{"kind": "Evaluation", "status": {...}}` to `progress.path`. The pod's ServiceAccount may update only its own Evaluation's status subresource. Only the fields
the evaluation owns are written (baseline, results, best, passed, report, evaluatedCheckpoints);
phase and conditions stay with the operator.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kubetune import constants as c
from kubetune.api.runconfig import EvalRunConfig

log = logging.getLogger(__name__)


def publish(config: EvalRunConfig, status: dict[str, Any]) -> None:
    """Send `status` where the run config's progress sink says: Kubernetes, a JSON-lines file, or nowhere."""
    if config.progress.backend == "kubernetes":
        patch_evaluation_status(config, status)
    elif config.progress.backend == "file" and config.progress.path:
        with open(config.progress.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"kind": c.EVALUATION, "status": status}, sort_keys=True) + "\n")


def patch_evaluation_status(config: EvalRunConfig, status: dict[str, Any]) -> None:
    """Merge-patch `status` into the Evaluation named by the run config."""
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()
    api = client.CustomObjectsApi()
    api.patch_namespaced_custom_object_status(
        group=c.GROUP,
        version=c.VERSION,
        namespace=config.job.namespace,
        plural=c.PLURALS[c.EVALUATION],
        name=config.job.name,
        body={"status": status},
    )
    log.info("patched status of Evaluation %s/%s", config.job.namespace, config.job.name)
