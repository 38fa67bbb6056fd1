"""`ShardRecord`: with KUBETUNE_DEBUG_SHARDS=DIR each rank writes the global and local shape of every parameter
after its first optimizer step, so tests can assert the sharding of a real run (kubetune_trainer.sharding)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from kubetune_trainer.sharding import DEBUG_SHARDS_ENV


class ShardRecord(TrainerCallback):
    """After the first optimizer step, each rank writes `shards-rank{R}.json`: global and local shape of
    every parameter (a DTensor's `to_local()`), so a test can check the real run's sharding."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.done = False

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> Any:
        if self.done or model is None:
            return control
        from torch.distributed.tensor import DTensor

        params = {}
        for name, p in model.named_parameters():
            local = p.to_local() if isinstance(p, DTensor) else p
            params[name] = {
                "global": list(p.shape),
                "local": list(local.shape),
                "dtensor": isinstance(p, DTensor),
                "trainable": p.requires_grad,
            }
        rank = int(os.environ.get("RANK", "0"))
        record = {
            "rank": rank,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "params": params,
            "offload": _offload_policies(model),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"shards-rank{rank}.json").write_text(json.dumps(record, indent=1))
        self.done = True
        return control


def _offload_policies(model: Any) -> list[str]:
    """The offload policies fully_shard was given for the units of `model` (CPUOffloadPolicy: CPU offload)."""
    from torch.distributed.fsdp import FSDPModule

    found = set()
    for module in model.modules():
        if isinstance(module, FSDPModule):
            for group in module._get_fsdp_state()._fsdp_param_groups:  # torch's own record of the policy
                policy = group.offload_policy
                found.add(f"{type(policy).__name__}(pin_memory={getattr(policy, 'pin_memory', None)})")
    return sorted(found)


def debug_callbacks() -> list[TrainerCallback]:
    out = os.environ.get(DEBUG_SHARDS_ENV)
    return [ShardRecord(out)] if out else []
