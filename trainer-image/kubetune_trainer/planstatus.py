"""The memory plan of this run, computed at start and reported into status.memoryPlan.

Here, not in the operator: only the trainer reads the base model's config.json (an hf:// model through the
Hub with the job's token, a pvc:// one mounted in this pod), knows the training data's token count and the
GPU's real memory. Only config.json is read (kubetune.api.modelconfig), never the weights. A plan that
cannot be made (no config.json, a model the plan does not know) is logged and skipped: it never fails a run.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from kubetune import constants as c
from kubetune.api.memoryplan import MemoryPlan, ModelConfigError, plan
from kubetune.api.modelconfig import ModelConfigUnavailable, read_model_config
from kubetune.api.runconfig import TrainRunConfig

log = logging.getLogger(__name__)


def gpu_memory_bytes() -> int | None:
    """Total memory of this process's GPU; None without CUDA (the plan then uses the spec's)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)


def memory_plan(cfg: TrainRunConfig, train_tokens: int | None) -> MemoryPlan | None:
    """The plan for this run's base model, data and device; None (logged) when it cannot be made."""
    try:
        config = read_model_config(
            cfg.base_model_uri,
            cfg.storage,
            revision=cfg.spec.base_model.revision,
            token=os.environ.get(c.ENV_HF_TOKEN),
        )
        return plan(
            cfg.spec,
            config,
            train_tokens=train_tokens,
            gpu_memory_bytes=gpu_memory_bytes() if cfg.spec.resources.gpus > 0 else None,
            model=cfg.spec.base_model.uri or cfg.base_model_uri,
        )
    except (ModelConfigUnavailable, ModelConfigError, ValueError) as err:
        log.warning("memory plan skipped: %s", err)
        return None


def report_memory_plan(cfg: TrainRunConfig, data_status: dict[str, Any], reporter: Any) -> MemoryPlan | None:
    """Plan the run and report it (status.memoryPlan); a run that does not fit is said in the log, and goes on:
    admission and `kubetune validate` refuse what they can plan, and the GPU's own allocator has the last word."""
    p = memory_plan(cfg, data_status.get("trainTokens"))
    if p is None:
        return None
    (log.info if p.fits else log.warning)("memory plan: %s", p.summary())
    reporter.memory_plan(p.to_status())
    return p
