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


def publish(config: EvalRunConfig, status: dict[str, Any]) -> bool:
    """Send `status`; False when the Kubernetes patch failed (the reporter has logged why)."""
    backend = config.progress.backend
    if backend == "kubernetes":
        return KubernetesReporter(config.job.name, config.job.namespace, kind=c.EVALUATION).send(status)
    if backend == "file":
        if not config.progress.path:
            raise ValueError("progress.path is required with progress.backend file")
        JsonlReporter(config.progress.path).event("evaluation", status=status)
    return True
