"""Publish an evaluation's outcome where the run config's progress sink says.

- `kubernetes`: a merge patch of the Evaluation's status subresource (the pod's ServiceAccount may
  update only its own Evaluation), through the trainer's `KubernetesReporter`. Only the fields the
  evaluation owns are written (baseline, results, best, passed, report); phase,
  conditions, times and evaluatedCheckpoints stay with the operator.
- `file`: one JSON line `{"time", "event": "evaluation", "status": {...}}` through `JsonlReporter`.
- `none`: nothing (local runs read results.json).
"""

from __future__ import annotations

import logging
from typing import Any

from kubetune import constants as c
from kubetune.api.runconfig import EvalRunConfig
from kubetune_trainer.progress import JsonlReporter, KubernetesReporter

log = logging.getLogger(__name__)


def evaluation_status_url(reporter: KubernetesReporter, name: str, namespace: str) -> str:
    plural = c.PLURALS[c.EVALUATION]
    return f"{reporter.api_server}/apis/{c.GROUP}/{c.VERSION}/namespaces/{namespace}/{plural}/{name}/status"


def publish(config: EvalRunConfig, status: dict[str, Any]) -> bool:
    """Send `status`; False when the Kubernetes patch failed (the reporter has logged why)."""
    backend = config.progress.backend
    if backend == "kubernetes":
        reporter = KubernetesReporter(config.job.name, config.job.namespace)
        reporter.url = evaluation_status_url(reporter, config.job.name, config.job.namespace)
        return reporter.send(status)
    if backend == "file":
        if not config.progress.path:
            raise ValueError("progress.path is required with progress.backend file")
        JsonlReporter(config.progress.path)._write("evaluation", status=status)
    return True
