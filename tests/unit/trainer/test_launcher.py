"""The command a training pod runs for 1 GPU, 8 GPUs and 4 nodes x 8 GPUs."""

from kubetune_trainer.launcher import Topology, launch_command

CFG = "/etc/kubetune/run-config.json"
WORKER = ["-m", "kubetune_trainer", "train", "--config", CFG, "--worker"]


def _opt(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_one_gpu_runs_the_trainer_itself():
    cmd = launch_command(Topology(gpus=1, nodes=1), CFG, python="python")
    assert cmd == ["python", *WORKER]


def test_cpu_only_is_one_process():
    assert not Topology(gpus=0, nodes=1).distributed


def test_eight_gpus_on_one_node():
    cmd = launch_command(Topology(gpus=8, nodes=1), CFG, python="python")
    assert cmd[:3] == ["python", "-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in cmd
    assert _opt(cmd, "--num_processes") == "8"
    assert _opt(cmd, "--num_machines") == "1"
    assert "--machine_rank" not in cmd and "--main_process_ip" not in cmd
    assert cmd[-6:] == WORKER


def test_four_nodes_of_eight_rendezvous_on_index_zero():
    env = {"NODE_RANK": "2", "MASTER_ADDR": "ft-train-0.ft-workers", "MASTER_PORT": "29500"}
    topo = Topology.from_env(gpus=8, nodes=4, env=env)
    cmd = launch_command(topo, CFG, python="python")
    assert _opt(cmd, "--num_processes") == "32"  # accelerate counts processes over all machines
    assert _opt(cmd, "--num_machines") == "4"
    assert _opt(cmd, "--machine_rank") == "2"
    assert _opt(cmd, "--main_process_ip") == "ft-train-0.ft-workers"
    assert _opt(cmd, "--main_process_port") == "29500"
    assert _opt(cmd, "--rdzv_backend") == "static"
    assert cmd[-6:] == WORKER  # accelerate's -m: run the trainer module in every process


def test_rank_falls_back_to_the_job_completion_index():
    topo = Topology.from_env(gpus=8, nodes=4, env={"JOB_COMPLETION_INDEX": "3", "MASTER_ADDR": "m"})
    assert topo.node_rank == 3 and topo.world_size == 32


def test_fsdp_on_two_gpus_launches_both_workers():
    cmd = launch_command(Topology(gpus=2, nodes=1), CFG, sharding="fsdp", python="python")
    assert cmd[:3] == ["python", "-m", "accelerate.commands.launch"]
    assert _opt(cmd, "--num_processes") == "2" and cmd[-6:] == WORKER


def test_fsdp_on_four_nodes_of_eight_shards_over_all_32_processes():
    topo = Topology.from_env(gpus=8, nodes=4, env={"NODE_RANK": "1", "MASTER_ADDR": "m"})
    cmd = launch_command(topo, CFG, sharding="fsdp", python="python")
    assert _opt(cmd, "--num_processes") == "32" and _opt(cmd, "--machine_rank") == "1"
    assert _opt(cmd, "--rdzv_backend") == "static" and cmd[-6:] == WORKER


def test_fsdp_on_one_gpu_is_still_a_distributed_world_of_one():
    """The HF Trainer shards only in a distributed setup: one GPU with FSDP (CPU offload) is launched too."""
    cmd = launch_command(Topology(gpus=1, nodes=1), CFG, sharding="fsdp", python="python")
    assert "accelerate.commands.launch" in cmd and _opt(cmd, "--num_processes") == "1"


def test_cpu_workers_come_from_the_environment_only_without_gpus():
    assert Topology.from_env(gpus=0, nodes=1, env={"KUBETUNE_CPU_WORKERS": "2"}).world_size == 2
    assert Topology.from_env(gpus=4, nodes=1, env={"KUBETUNE_CPU_WORKERS": "2"}).world_size == 4
    assert Topology.from_env(gpus=0, nodes=1, env={}).world_size == 1
