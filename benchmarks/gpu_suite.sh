#!/usr/bin/env bash
# The GPU benchmark suite (issue #10 item 6), one command on a GPU machine, about 10 minutes:
#   1. kubetune's trainer vs a plain TRL script, tokens/s and MFU, packing on and off, on the
#      Qwen2.5-0.5B-shaped model (benchmarks/train_throughput.py), then kubetune with Liger off, QLoRA
#      4-bit and FSDP on one GPU (need CUDA: --smoke lists them as "not measured: needs CUDA");
#   2. the memory plan vs the measured peak (torch.cuda.max_memory_allocated), full and LoRA
#      (benchmarks/memory_plan.py).
# Results go to $OUT (default benchmarks/results/gpu-<date>): JSON per part and rows.md, the Markdown rows
# to paste into benchmarks/README.md.
#
#   benchmarks/gpu_suite.sh            # on a GPU machine
#   benchmarks/gpu_suite.sh --smoke    # on CPU: the tiny model, a few steps (checks the suite runs)
#
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
OUT=${OUT:-benchmarks/results/gpu-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

if [ "$SMOKE" = 1 ]; then
  ARCH=tiny; STEPS=2; DEVICE=cpu; MEM_ARGS=(--arch tiny --batch 2 --seq 64 --steps 1)
else
  ARCH=qwen2.5-0.5b; STEPS=30; DEVICE=cuda; MEM_ARGS=(--arch qwen2.5-0.5b --batch 4 --seq 2048 --steps 3)
fi

echo "== throughput: $ARCH, $STEPS steps"
"$PY" benchmarks/train_throughput.py --arch "$ARCH" --steps "$STEPS" \
  $([ "$SMOKE" = 1 ] && echo "--batch 2 --seq 64") --json "$OUT/throughput.json" | tee "$OUT/throughput.md"

echo "== memory plan vs measured peak: $DEVICE"
"$PY" benchmarks/memory_plan.py "${MEM_ARGS[@]}" --device "$DEVICE" --json "$OUT/memory.json" | tee "$OUT/memory.md"

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
t = json.loads((out / "throughput.json").read_text())
m = json.loads((out / "memory.json").read_text())
rows = [f"Measured on {t['machine']}, torch {t['torch']}, {t['arch']} ({t['parameters'] / 1e6:.1f}M), "
        f"batch {t['batch']} x {t['seq']}, {t['steps']} steps.", "",
        "| trainer | packing | tokens/s | MFU |", "|---|---|---:|---:|"]
sys.path.insert(0, "benchmarks")
from train_throughput import row_markdown
rows += [row_markdown(r) for r in t["rows"]]
rows += ["", "| arch | device | adapter | batch x seq | planned | measured | plan error |", "|---|---|---|---|---:|---:|---:|"]
rows += [f"| {r['arch']} | {r['device']} | {'full' if r['adapter'] == 'none' else r['adapter']} | {r['batch']} x {r['seq']} | "
         f"{r['planned_bytes'] / 2**30:.2f} GiB | {r['measured_bytes'] / 2**30:.2f} GiB | {r['error']:+.1%} |" for r in m]
(out / "rows.md").write_text("\n".join(rows) + "\n")
print(f"\nrows for benchmarks/README.md: {out / 'rows.md'}")
EOF
