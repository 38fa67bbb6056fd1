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


def front_matter(
    meta: dict[str, Any], kind: str, evaluation: dict[str, float] | None = None, evaluation_dataset: str | None = None
) -> dict[str, Any]:
    """The Hub's metadata. Each model-index result names its task, dataset and metrics: the Hub (and
    huggingface_hub's ModelCard) refuses a result without a dataset. The dataset is `evaluation_dataset`,
    else the run's validation or training data."""
    base = meta.get("base_model")
    ds = meta.get("dataset") or {}
    fm: dict[str, Any] = {
        "library_name": "peft" if kind == "adapter" else "transformers",
        "tags": ["kubetune", str(meta.get("method") or "sft"), *(["lora"] if kind == "adapter" else [])],
        "pipeline_tag": "text-generation",
    }
    if _hub_id(base):
        fm["base_model"] = _hub_id(base)
    scores = _numbers(evaluation)
    if scores:
        data = str(evaluation_dataset or ds.get("validation") or ds.get("train") or "evaluation")
        fm["model-index"] = [
            {
                "name": str(meta.get("job") or "model"),
                "results": [
                    {
                        "task": {"type": "text-generation", "name": "Text Generation"},
                        "dataset": {"type": data, "name": data},
                        "metrics": [{"type": k, "name": k, "value": v} for k, v in scores.items()],
                    }
                ],
            }
        ]
    return fm


def _numbers(values: dict[str, Any] | None) -> dict[str, float]:
    """The numeric entries, by name (a metric that could not be computed is None: not a result)."""
    return {k: v for k, v in sorted((values or {}).items()) if isinstance(v, int | float) and not isinstance(v, bool)}


def model_card(
    meta: dict[str, Any],
    *,
    kind: str,
    checkpoint: str,
    hyperparameters: dict[str, Any],
    evaluation: dict[str, float] | None = None,
    evaluation_dataset: str | None = None,
) -> str:
    """README.md for an export: `kind` is adapter, merged or full; `evaluation`: metric -> score on
    `evaluation_dataset` (default: the run's validation data)."""
    ds = meta.get("dataset") or {}
    lines = [
        "---",
        yaml.safe_dump(front_matter(meta, kind, evaluation, evaluation_dataset), sort_keys=False).rstrip(),
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
    metrics = _numbers(meta.get("metrics"))
    if metrics:
        lines += ["", "## Metrics at this checkpoint", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in metrics.items()]
    scores = _numbers(evaluation)
    if scores:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in scores.items()]
    return "\n".join(lines) + "\n"
