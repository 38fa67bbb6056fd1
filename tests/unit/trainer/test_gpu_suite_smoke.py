"""benchmarks/gpu_suite.sh --smoke: the GPU suite runs end to end on CPU (tiny model, a few steps) and writes
the rows for benchmarks/README.md, so it is ready when a GPU machine is lent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpu_suite_smoke_mode_writes_the_readme_rows(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": str(REPO / ".venv" / "bin" / "python")}
    run = subprocess.run(
        ["bash", "benchmarks/gpu_suite.sh", "--smoke"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = (tmp_path / "rows.md").read_text()
    assert "| kubetune | on |" in rows and "| plain TRL | off |" in rows, rows
    assert "| tiny | cpu | full | 2 x 64 |" in rows and "| tiny | cpu | lora | 2 x 64 |" in rows, rows
    for variant in ("Liger off", "QLoRA 4-bit", "FSDP on 1 GPU"):  # GPU-only rows: skipped on CPU, said so
        assert f"skip: kubetune, {variant}: needs CUDA" in run.stdout, run.stdout[-3000:]
        assert f"| kubetune, {variant} | on | not measured: needs CUDA | — |" in rows, rows
