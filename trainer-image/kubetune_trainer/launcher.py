"""The process layout of a training pod: one process, or `accelerate launch` over GPUs and nodes.

The pod always starts `kubetune-trainer train --config FILE`. That process validates the data once;
with more than one GPU or node it then starts the workers with `accelerate launch` (the Indexed
Job's pods rendezvous on index 0, whose address the operator puts into MASTER_ADDR).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

WORKER_FLAG = "--worker"
CPU_WORKERS_ENV = "KUBETUNE_CPU_WORKERS"  # gpus 0: this many training processes (gloo); default 1


@dataclass(frozen=True)
class Topology:
    gpus: int = 0  # per node
    nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    cpu_workers: int = 1  # processes per node when gpus is 0 (CPU runs of the distributed path, tests)

    @property
    def processes_per_node(self) -> int:
        return self.gpus if self.gpus > 0 else max(self.cpu_workers, 1)

    @property
    def world_size(self) -> int:
        return self.processes_per_node * self.nodes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, gpus: int, nodes: int, env: Mapping[str, str] | None = None) -> Topology:
        """The topology of this pod: sizes from the spec, rank and rendezvous from the operator's env."""
        env = os.environ if env is None else env
        rank = env.get("NODE_RANK") or env.get("JOB_COMPLETION_INDEX") or "0"
        return cls(
            gpus=gpus,
            nodes=nodes,
            node_rank=int(rank),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", "29500")),
            cpu_workers=int(env.get(CPU_WORKERS_ENV) or "1"),
        )


def needs_launch(topology: Topology, sharding: str | None) -> bool:
    """Whether the workers are started by `accelerate launch`: several processes, or FSDP on one (the HF
    Trainer shards only in a distributed setup, so one GPU with CPU offload is a world of one)."""
    return topology.distributed or sharding == "fsdp"


def launch_command(
    topology: Topology, config_path: str, *, sharding: str | None = None, python: str | None = None
) -> list[str]:
    """The command that runs the training workers of this pod.

    1 process: the trainer itself. Several GPUs on one node (or CPU workers): `accelerate launch
    --multi_gpu` (torchrun underneath; on CPU the workers join with gloo). Several nodes: the same with
    machine rank and a static rendezvous on the master address. `sharding` fsdp: the same layout, and
    every process holds only its shard; the FSDP settings themselves travel in the run config that the
    workers read (TrainingArguments.fsdp_config, kubetune_trainer.sharding), set in one place.
    """
    python = python or sys.executable
    worker = ["-m", "kubetune_trainer", "train", "--config", config_path, WORKER_FLAG]
    if not needs_launch(topology, sharding):
        return [python, *worker]
    cmd = [
        python,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_machines",
        str(topology.nodes),
        "--num_processes",
        str(topology.world_size),
        "--dynamo_backend",
        "no",
    ]
    if topology.nodes > 1:
        cmd += [
            "--machine_rank",
            str(topology.node_rank),
            "--main_process_ip",
            topology.master_addr,
            "--main_process_port",
            str(topology.master_port),
            "--rdzv_backend",
            "static",
            "--same_network",
        ]
    return [*cmd, *worker]
