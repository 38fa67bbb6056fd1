"""Helpers of the trainer tests: run configs like `kubetune run` writes, data, reading a run's output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "data"
QUICKSTART = REPO / "examples" / "quickstart" / "data"
RESUME_ROWS = 96  # the kill/stop-and-resume tests: 2 epochs of 24 steps at batch size 4
TINY_MODEL_DATA = [*sorted(FIXTURES.glob("*.jsonl")), QUICKSTART / "train.jsonl"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def quickstart_rows(n: int, split: str = "train") -> list[dict]:
    lines = (QUICKSTART / f"{split}.jsonl").read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


def make_config(tmp_path: Path, base: Path | str, train: Path, *, validation: Path | None = None, **spec: Any):
    """A TrainRunConfig like the one `kubetune run` writes; `spec` overrides (camelCase) merge into the defaults."""
    from kubetune.api.runconfig import TrainRunConfig

    hp = {"maxSteps": 8, "batchSize": 4, "learningRate": 5e-3, "maxSeqLength": 128, "warmupRatio": 0.0, "seed": 1}
    hp.update(spec.pop("hyperparameters", {}))
    doc: dict[str, Any] = {
        "method": "sft",
        "baseModel": {"uri": str(base)},
        "dataset": {"train": {"uri": str(train)}},
        "adapter": {"type": "lora", "r": 8, "alpha": 16, "dropout": 0.0},
        "hyperparameters": hp,
        "checkpoints": {"every": 4, "keep": 2},
        "resources": {"gpus": 0},
    }
    if validation is not None:
        doc["dataset"]["validation"] = {"uri": str(validation)}
    for k, v in spec.items():
        doc[k] = {**doc[k], **v} if isinstance(v, dict) and isinstance(doc.get(k), dict) else v
    return TrainRunConfig.model_validate(
        {
            "job": {"name": "test-job", "namespace": "default"},
            "spec": doc,
            "baseModelUri": str(base),
            "outputDir": str(tmp_path / "output"),
            "outputUri": "pvc://test-job-data/output",
            "progress": {"backend": "file", "path": str(tmp_path / "progress.jsonl")},
        }
    )


def events(tmp_path: Path) -> list[dict]:
    path = tmp_path / "progress.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def logged_losses(checkpoint: Path, key: str = "loss") -> list[float]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [e[key] for e in state["log_history"] if key in e]


def generate(model_dir: Path, prompt_messages: list[dict], max_new_tokens: int = 12) -> str:
    """Load a run's output (merged model or LoRA adapter) and answer greedily."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if (model_dir / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    inputs = tok.apply_chat_template(prompt_messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def epochs_config(d: Path, base: Path | str, rows: list[dict], **spec: Any):
    """A full fine-tune over `rows` for 2 epochs: the step count comes from the data, so a resumed run must
    pick up the data position to end with the same number of steps."""
    train = write_jsonl(d / "train.jsonl", rows)
    hp = {"maxSteps": None, "epochs": 2, **spec.pop("hyperparameters", {})}
    return make_config(d, base, train, adapter={"type": "none"}, hyperparameters=hp, **spec)


def write_config(d: Path, cfg) -> Path:
    path = d / "run-config.json"
    path.write_text(cfg.dump())
    return path


def trainer_command(config_path: Path) -> list[str]:
    """What a pod (and `kubetune run`) starts."""
    import sys

    return [sys.executable, "-m", "kubetune_trainer", "train", "--config", str(config_path)]


def trainer_env() -> dict[str, str]:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def final_steps(out: Path) -> int:
    """Optimizer steps of a finished run, from final/kubetune.json."""
    return json.loads((out / "final" / "kubetune.json").read_text())["step"]
