#!/usr/bin/env python3
"""Training throughput: tokens per second and model-FLOPs utilisation (MFU) of kubetune's trainer.

For one architecture it trains the same SFT data four ways — kubetune's trainer and a plain TRL
script, each with packing on and off — and prints a Markdown table (and writes JSON with --json).
Then kubetune's variants (--variants, packing on): Liger's kernels off (the rows above have them on when
liger-kernel and a GPU are there), QLoRA 4-bit, FSDP on one GPU (accelerate launch, a world of one). The
variants need CUDA: on CPU each is listed as "not measured: needs CUDA" and skipped.

    python benchmarks/train_throughput.py --arch tiny            # a tiny Llama on CPU (seconds)
    python benchmarks/train_throughput.py --arch qwen2.5-0.5b    # Qwen2.5-0.5B-shaped, random weights, on a GPU

No download: the tokenizer is trained on the quickstart data (kubetune_trainer.tiny) and the
weights are random, which changes nothing about speed. Tokens are non-padding input tokens.
MFU = 6 x parameters x tokens/s (+ attention, 12 x layers x hidden x sequence per token) / peak FLOPs,
with the peak from the GPU's datasheet (dense bf16) or, on CPU, a measured fp32 matmul.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "quickstart" / "data" / "train.jsonl"

# Dense bf16 peak FLOPs (datasheet, without sparsity).
GPU_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}

ARCHS: dict[str, dict[str, Any]] = {
    "tiny": {"kind": "llama", "size": "tiny", "seq": 256, "batch": 8},
    "qwen2.5-0.5b": {
        "kind": "qwen2",
        "config": {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "max_position_embeddings": 32768,
            "tie_word_embeddings": True,
            "rope_theta": 1000000.0,
        },
        "seq": 2048,
        "batch": 8,
    },
}


def peak_flops() -> tuple[float, str]:
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        for key, peak in GPU_PEAK.items():
            if key in name:
                return peak, f"{name} (datasheet dense bf16)"
        return _measured_matmul("cuda"), f"{name} (measured bf16 matmul)"
    return _measured_matmul(
        "cpu"
    ), f"{platform.processor() or platform.machine()} x{os.cpu_count()} (measured fp32 matmul)"


def _measured_matmul(device: str) -> float:
    import torch

    n = 4096 if device == "cuda" else 1024
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    reps = 50 if device == "cuda" else 10
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def build_model(arch: str, workdir: Path) -> Path:
    """The model directory: a tiny Llama, or a randomly initialised architecture with the tiny tokenizer."""
    from kubetune_trainer.tiny import init_tiny

    spec = ARCHS[arch]
    out = workdir / arch
    if spec["kind"] == "llama":
        return init_tiny(out, [DATA], size=spec["size"], max_position_embeddings=4096)
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tiny = init_tiny(workdir / "tokenizer", [DATA], size="nano")
    tok = AutoTokenizer.from_pretrained(tiny)
    cfg = Qwen2Config(
        **spec["config"], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def model_flops_per_token(model_dir: Path, seq: int) -> tuple[float, int]:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    h, layers, inter, vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.vocab_size
    kv = getattr(cfg, "num_key_value_heads", cfg.num_attention_heads) * (h // cfg.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter  # q,o + k,v + gate/up/down
    params = layers * per_layer + vocab * h  # embeddings tied with the head
    return 6 * params + 12 * layers * h * seq, params


# kubetune's variants: (label, spec fields over the base run's, Liger's kernels allowed)
VARIANTS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "liger-off": ("kubetune, Liger off", {}, False),
    "qlora": ("kubetune, QLoRA 4-bit", {"adapter": {"type": "qlora"}}, True),
    "fsdp": ("kubetune, FSDP on 1 GPU", {"resources": {"gpus": 1, "sharding": {"strategy": "fsdp"}}}, True),
}


def run_kubetune(
    model: Path,
    data: Path,
    workdir: Path,
    steps: int,
    batch: int,
    seq: int,
    packing: bool,
    variant: str | None = None,
) -> float:
    from kubetune.api.runconfig import TrainRunConfig
    from kubetune_trainer import methods
    from kubetune_trainer.train import run

    _, over, liger = VARIANTS[variant] if variant else ("", {}, True)
    out = workdir / f"kubetune-{'packed' if packing else 'padded'}{'-' + variant if variant else ''}"
    cfg = TrainRunConfig.model_validate(
        {
            "job": {"name": "bench"},
            "baseModelUri": str(model),
            "outputDir": str(out),
            "spec": {
                "method": "sft",
                "baseModel": {"uri": str(model)},
                "dataset": {"train": {"uri": str(data)}},
                "adapter": {"type": "none"},
                "hyperparameters": {
                    "maxSteps": steps,
                    "batchSize": batch,
                    "maxSeqLength": seq,
                    "packing": packing,
                    "learningRate": 1e-4,
                    "gradientCheckpointing": "off",
                },
                "checkpoints": {"every": steps * 10, "keep": 1},
                **over,
            },
        }
    )
    config_path = workdir / f"{out.name}.json"  # FSDP's workers (accelerate launch) read the run config from it
    config_path.write_text(cfg.dump())
    available = methods.liger_available
    methods.liger_available = available if liger else (lambda: False)  # the trainer asks this at build time
    try:
        assert run(cfg, config_path=str(config_path)) == 0
    finally:
        methods.liger_available = available
    return json.loads((out / "final" / "kubetune.json").read_text())["tokens_per_second"]


def run_plain_trl(model: Path, data: Path, workdir: Path, steps: int, batch: int, seq: int, packing: bool) -> float:
    """What a hand-written TRL script does: load, SFTConfig with the same batch and length, train."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    config = SFTConfig(
        output_dir=str(workdir / f"trl-{'packed' if packing else 'padded'}"),
        max_steps=steps,
        per_device_train_batch_size=batch,
        max_length=seq,
        packing=packing,
        learning_rate=1e-4,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        activation_checkpointing=False,
        save_strategy="no",
        report_to="none",
        logging_steps=max(1, steps // 5),
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        use_cpu=not cuda,
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32),
        args=config,
        train_dataset=load_dataset("json", data_files=str(data), split="train"),
        processing_class=AutoTokenizer.from_pretrained(model),
    )
    t = time.perf_counter()
    trainer.train()
    return trainer.state.num_input_tokens_seen / (time.perf_counter() - t)


def row_markdown(r: dict[str, Any]) -> str:
    """One row of the README's throughput table (a skipped variant says why it was not measured)."""
    if r.get("skipped"):
        return f"| {r['trainer']} | {'on' if r['packing'] else 'off'} | not measured: {r['skipped']} | — |"
    return f"| {r['trainer']} | {'on' if r['packing'] else 'off'} | {r['tokens_per_second']:,.0f} | {r['mfu']:.1%} |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, help="per-device batch (default: the architecture's)")
    p.add_argument("--seq", type=int, help="sequence length (default: the architecture's)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"kubetune variants to add, comma-separated ({', '.join(VARIANTS)}; '' for none); need CUDA",
    )
    args = p.parse_args(argv)

    import torch

    spec = ARCHS[args.arch]
    batch, seq = args.batch or spec["batch"], args.seq or spec["seq"]
    peak, machine = peak_flops()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = build_model(args.arch, workdir)
        flops_per_token, params = model_flops_per_token(model, seq)
        for packing in (True, False):
            for name, fn in (("kubetune", run_kubetune), ("plain TRL", run_plain_trl)):
                tps = fn(model, DATA, workdir, args.steps, batch, seq, packing)
                rows.append(
                    {
                        "trainer": name,
                        "packing": packing,
                        "tokens_per_second": round(tps, 1),
                        "mfu": round(tps * flops_per_token / peak, 4),
                    }
                )
        for variant in [v for v in args.variants.split(",") if v]:
            label = VARIANTS[variant][0]
            if not torch.cuda.is_available():
                print(f"skip: {label}: needs CUDA (not measured)", flush=True)
                rows.append({"trainer": label, "packing": True, "skipped": "needs CUDA"})
                continue
            tps = run_kubetune(model, DATA, workdir, args.steps, batch, seq, True, variant)
            rows.append(
                {
                    "trainer": label,
                    "packing": True,
                    "tokens_per_second": round(tps, 1),
                    "mfu": round(tps * flops_per_token / peak, 4),
                }
            )
    result = {
        "arch": args.arch,
        "parameters": params,
        "steps": args.steps,
        "batch": batch,
        "seq": seq,
        "machine": machine,
        "peak_flops": peak,
        "torch": torch.__version__,
        "rows": rows,
    }
    print(f"\n{args.arch}: {params / 1e6:.1f}M parameters, batch {batch} x {seq} tokens, {args.steps} steps")
    print(f"machine: {machine}, peak {peak / 1e12:.2f} TFLOP/s\n")
    print("| trainer | packing | tokens/s | MFU |\n|---|---|---:|---:|")
    for r in rows:
        print(row_markdown(r))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
