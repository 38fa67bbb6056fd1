"""The model card of an exported checkpoint: README.md with the YAML front matter the Hugging Face Hub reads
(base_model, library_name, tags, datasets, model-index results), then what kubetune knows about the run.

Pure: built from the checkpoint's kubetune.json (base model, data hashes, method, adapter) and the job spec's
hyperparameters, plus evaluation results when known.
"""

from __future__ import annotations

from typing import Any

import yaml


def _hub_id(uri: str | None) -> str | None:
    """hf://ORG/NAME[@REV] -> ORG/NAME (what the Hub's base_model field links to); other URIs: None."""
    if not uri or not uri.startswith("hf://"):
        return None
    return uri.removeprefix("hf://").split("@", 1)[0]


def front_matter(meta: dict[str, Any], kind: str, evaluation: dict[str, float] | None = None) -> dict[str, Any]:
    base = meta.get("base_model")
    fm: dict[str, Any] = {
        "library_name": "peft" if kind == "adapter" else "transformers",
        "tags": ["kubetune", str(meta.get("method") or "sft"), *(["lora"] if kind == "adapter" else [])],
        "pipeline_tag": "text-generation",
    }
    if _hub_id(base):
        fm["base_model"] = _hub_id(base)
    if evaluation:
        fm["model-index"] = [
            {
                "name": str(meta.get("job") or "model"),
                "results": [
                    {
                        "task": {"type": "text-generation"},
                        "metrics": [{"type": k, "value": v} for k, v in sorted(evaluation.items())],
                    }
                ],
            }
        ]
    return fm


def model_card(
    meta: dict[str, Any],
    *,
    kind: str,
    checkpoint: str,
    hyperparameters: dict[str, Any],
    evaluation: dict[str, float] | None = None,
) -> str:
    """README.md for an export: `kind` is adapter, merged or full."""
    ds = meta.get("dataset") or {}
    lines = [
        "---",
        yaml.safe_dump(front_matter(meta, kind, evaluation), sort_keys=False).rstrip(),
        "---",
        "",
        f"# {meta.get('job') or 'kubetune model'} ({checkpoint})",
        "",
        f"Fine-tuned with kubetune: method `{meta.get('method')}`, exported as {kind} weights"
        + (" (load it onto the base model with PEFT)." if kind == "adapter" else " (safetensors)."),
        "",
        "## Training",
        "",
        f"- Base model: `{meta.get('base_model')}`",
        f"- Checkpoint: `{checkpoint}` at step {meta.get('step')}, epoch {meta.get('epoch')}",
        f"- Training data: `{ds.get('train')}` ({ds.get('format')}), data hash `{ds.get('hash')}`",
    ]
    if ds.get("validation"):
        lines.append(f"- Validation data: `{ds['validation']}`")
    if meta.get("adapter"):
        adapter = {k: v for k, v in meta["adapter"].items() if k != "peft"}
        lines.append(f"- Adapter: `{yaml.safe_dump(adapter, default_flow_style=True).strip()}`")
    lines += ["", "## Hyperparameters", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(hyperparameters.items())]
    metrics = meta.get("metrics") or {}
    if metrics:
        lines += ["", "## Metrics at this checkpoint", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in sorted(metrics.items()) if isinstance(v, int | float)]
    if evaluation:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in sorted(evaluation.items())]
    return "\n".join(lines) + "\n"
