#!/usr/bin/env python3
"""The memory plan (kubetune.api.memoryplan) against the measured peak of real training steps.

Each case runs in a fresh process: build the model from its config (random weights, nothing downloaded),
add LoRA when asked, and train a few steps the way the HF Trainer does (the model's own loss, fused AdamW,
gradients set to None between steps). Measured:

- on CPU: peak resident memory (VmHWM) minus the resident memory before the model was built, after a
  warm-up step of a one-layer model of the same family (so kernels, thread pools and PEFT are loaded and not
  counted); the peak is reset through /proc/self/clear_refs, and glibc serves every allocation over 64 KiB
  by mmap and gives it back at once (MALLOC_MMAP_THRESHOLD_), so RSS follows the live tensors;
- on a GPU: torch.cuda.max_memory_allocated() (the CUDA context is not part of it; the plan's 1 GiB for it is
  left out of the comparison).

    python benchmarks/memory_plan.py --arch tiny                    # seconds
    python benchmarks/memory_plan.py --arch qwen2.5-0.5b --seq 256  # ~10 GB of RAM for full fine-tuning
    python benchmarks/memory_plan.py --arch qwen2.5-0.5b --device cuda --batch 4 --seq 2048

Prints a Markdown table (plan, measured, error); --json writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tests" / "fixtures" / "model-configs"
TINY_CONFIG = {  # kubetune model init-tiny --size tiny (1024-token vocabulary)
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "vocab_size": 1024,
    "tie_word_embeddings": True,
    "max_position_embeddings": 4096,
}
ARCHS = {"tiny": None, "qwen2.5-0.5b": CONFIGS / "qwen2.5-0.5b" / "config.json"}


def model_config(arch: str) -> dict[str, Any]:
    path = ARCHS[arch]
    return dict(TINY_CONFIG) if path is None else json.loads(path.read_text())


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(cfg: dict[str, Any], adapter: str, batch: int, seq: int, steps: int, checkpointing: bool, device: str):
    """Train `steps` steps and return the peak bytes above the baseline (runs in the child process)."""
    import gc

    import torch

    torch.set_num_threads(1)
    warm = {**cfg, "num_hidden_layers": 1, "vocab_size": 256}
    _train(warm, adapter, 1, 16, 1, checkpointing, device)  # load kernels and libraries outside the measurement
    gc.collect()
    cuda = device == "cuda"
    ids = torch.randint(0, cfg["vocab_size"], (batch, seq), device=device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        baseline = _rss("VmRSS")
    _train(cfg, adapter, batch, seq, steps, checkpointing, device, ids)
    if cuda:
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - baseline
    return _rss("VmHWM") - baseline


def _train(cfg, adapter, batch, seq, steps, checkpointing, device, ids=None) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(**cfg)
    if ids is None:
        ids = torch.randint(0, cfg["vocab_size"], (batch, seq), device=device)
    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda and adapter != "none" else torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if adapter == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
    for _ in range(steps):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def planned(cfg: dict[str, Any], adapter: str, batch: int, seq: int, checkpointing: bool, device: str):
    from kubetune.api import FineTuneJobSpec
    from kubetune.api.memoryplan import plan

    spec = FineTuneJobSpec.model_validate(
        {
            "baseModel": {"uri": "file:///model"},
            "dataset": {"train": {"uri": "train.jsonl"}},
            "adapter": {"type": adapter, "r": 16, "targetModules": "all-linear"},
            "hyperparameters": {
                "batchSize": batch,
                "maxSeqLength": seq,
                "gradientCheckpointing": "on" if checkpointing else "off",
            },
            "resources": {"gpus": 1 if device == "cuda" else 0, "memory": "1Ti"},
        }
    )
    p = plan(spec, cfg, gpu_memory_gib=1024)
    return p.peak_bytes - p.overhead_bytes, p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    ap.add_argument("--adapters", default="none,lora", help="comma-separated: none, lora")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cfg = model_config(args.arch)
    if args.child:
        peak = measure(cfg, args.child, args.batch, args.seq, args.steps, args.checkpointing, args.device)
        print(json.dumps({"peak": peak}))
        return 0
    rows = []
    for adapter in args.adapters.split(","):
        child = [sys.executable, __file__, "--child", adapter, "--arch", args.arch, "--batch", str(args.batch)]
        child += ["--seq", str(args.seq), "--steps", str(args.steps), "--device", args.device]
        child += ["--checkpointing"] if args.checkpointing else []
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        out = subprocess.run(child, capture_output=True, text=True, check=False, env=env)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        measured = json.loads(out.stdout.strip().splitlines()[-1])["peak"]
        estimate, p = planned(cfg, adapter, args.batch, args.seq, args.checkpointing, args.device)
        rows.append(
            {
                "arch": args.arch,
                "device": args.device,
                "adapter": adapter,
                "batch": args.batch,
                "seq": args.seq,
                "checkpointing": args.checkpointing,
                "parameters": p.parameters,
                "planned_bytes": estimate,
                "measured_bytes": measured,
                "error": round(estimate / measured - 1, 4),
            }
        )
    print("| arch | device | adapter | batch x seq | checkpointing | planned | measured | plan error |")
    print("|---|---|---|---|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['arch']} | {r['device']} | {'full' if r['adapter'] == 'none' else r['adapter']} | "
            f"{r['batch']} x {r['seq']} | {'on' if r['checkpointing'] else 'off'} | "
            f"{r['planned_bytes'] / 2**20:,.1f} MiB | {r['measured_bytes'] / 2**20:,.1f} MiB | {r['error']:+.1%} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
