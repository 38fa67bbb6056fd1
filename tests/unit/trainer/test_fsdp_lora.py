"""LoRA under FSDP2 for real: `kubetune-trainer train` with 2 CPU worker processes (gloo), a LoRA adapter on the
nano Llama, `resources.sharding {strategy: fsdp, cpuOffload: true}` and activation checkpointing on.

One module-scoped run of 4 steps (tens of seconds on 2 cores). It proves that the adapter is what trains and is
sharded like the base, that the base stays frozen, that cpuOffload reaches fully_shard as torch's
CPUOffloadPolicy on every rank (on CPU workers the shards are in CPU memory anyway: this checks the wiring, not a
memory saving), and that the gathered output is an ordinary PEFT adapter that loads over the base model.
"""

from __future__ import annotations

import json
import math
import subprocess

import pytest
from trainer_helpers import make_config, quickstart_rows, trainer_command, trainer_env, write_config, write_jsonl

from kubetune_trainer.launcher import CPU_WORKERS_ENV
from kubetune_trainer.sharding import DEBUG_SHARDS_ENV

pytestmark = pytest.mark.slow

WORKERS = 2
STEPS = 4


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("fsdp-lora")
    train = write_jsonl(d / "train.jsonl", quickstart_rows(32))
    cfg = make_config(
        d,
        tiny_model,
        train,
        hyperparameters={
            "maxSteps": STEPS,
            "batchSize": 4,
            "learningRate": 1e-2,
            "packing": False,
            "gradientCheckpointing": "on",
        },
        checkpoints={"every": STEPS, "keep": 1},
        resources={"gpus": 0, "sharding": {"strategy": "fsdp", "cpuOffload": True}},
    )
    tmp = d / "tmp"  # the launcher's temporary files (TMPDIR), to see that none is left behind
    tmp.mkdir()
    env = {
        **trainer_env(),
        CPU_WORKERS_ENV: str(WORKERS),
        DEBUG_SHARDS_ENV: str(d / "shards"),
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(tmp),
    }
    proc = subprocess.run(
        trainer_command(write_config(d, cfg)), env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    ranks = [json.loads((d / "shards" / f"shards-rank{r}.json").read_text()) for r in range(WORKERS)]
    return d, proc, ranks


def _is_lora(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def test_only_the_adapter_trains_and_it_is_sharded_like_the_base(lora_run):
    """On both ranks after a real step: the trainable parameters are exactly the LoRA matrices, every parameter
    (adapter and frozen base) is a DTensor holding its half of dim 0, and activation checkpointing wrapped the
    decoder layers."""
    _, _, ranks = lora_run
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {WORKERS}
    for record in ranks:
        params = record["params"]
        trainable = {n for n, p in params.items() if p["trainable"]}
        lora = {n for n in params if _is_lora(n)}
        assert lora and trainable == lora, sorted(trainable ^ lora)[:5]
        assert any("embed_tokens" in n for n in params if n not in trainable)  # the base is there, frozen
        assert any("_checkpoint_wrapped_module" in n for n in params)  # FSDP's activation checkpointing
    for name in ranks[0]["params"]:
        shapes = [r["params"][name] for r in ranks]
        full = shapes[0]["global"]
        assert all(s["dtensor"] for s in shapes), name
        assert shapes[0]["local"][0] == math.ceil(full[0] / WORKERS), (name, shapes)
        assert sum(s["local"][0] for s in shapes) == full[0], (name, shapes)


def test_cpu_offload_reaches_fully_shard_on_every_rank(lora_run):
    """spec.resources.sharding.cpuOffload becomes torch's CPUOffloadPolicy in every fully_shard unit (unpinned:
    pinning needs a CUDA driver, which CPU workers do not have)."""
    _, proc, ranks = lora_run
    assert all(r["offload"] == ["CPUOffloadPolicy(pin_memory=False)"] for r in ranks), [r["offload"] for r in ranks]
    assert "FSDP2 over 2 processes" in proc.stderr + proc.stdout


def test_output_is_a_peft_adapter_that_loads_over_the_base(lora_run, tiny_model):
    """final/ holds only the adapter, gathered whole (not a rank's shard), under PEFT's own key names, trained
    (lora_B starts at zero), and PeftModel loads exactly those weights over the base model."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    d, _, ranks = lora_run
    final = d / "output" / "final"
    assert (final / "adapter_config.json").is_file() and not (final / "model.safetensors").exists()
    adapter = load_file(final / "adapter_model.safetensors")
    assert adapter and all(_is_lora(k) for k in adapter)
    assert not any("_fsdp" in k or "_checkpoint_wrapped_module" in k or ".default." in k for k in adapter)
    global_shapes = {
        n.replace("._checkpoint_wrapped_module", "").replace(".default.", "."): p["global"]
        for n, p in ranks[0]["params"].items()
        if _is_lora(n)
    }
    assert {k: list(v.shape) for k, v in adapter.items()} == global_shapes
    lora_b = [v for k, v in adapter.items() if ".lora_B." in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        base_logits = base(ids).logits
    model = PeftModel.from_pretrained(base, str(final))
    loaded = {k.replace(".default.", "."): v for k, v in model.state_dict().items() if _is_lora(k)}
    assert loaded.keys() == adapter.keys()
    assert all(torch.equal(loaded[k], adapter[k]) for k in adapter)
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, base_logits)


def test_loss_is_logged_and_the_run_config_copy_is_removed(lora_run):
    """The run trained all its steps, and the resolved run config that the launcher wrote for its workers
    (kubetune-run-config.*.json in the temporary directory) is gone once they exited."""
    d, *_ = lora_run
    state = json.loads((d / "output" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert state["global_step"] == STEPS and losses and all(math.isfinite(x) for x in losses)
    assert not list((d / "tmp").glob("kubetune-run-config.*")), list((d / "tmp").iterdir())
