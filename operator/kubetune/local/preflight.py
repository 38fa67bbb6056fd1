"""Checks before anything starts: every local dataset valid and of a format its method trains on, every
local model present, and what this machine cannot do (QLoRA without a GPU; LoRA targets the model lacks).

A broken line in an evaluation's test set is found before an hour of training, not after it.
The data rules are `kubetune.data`'s (the trainer applies the same ones again when it starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubetune.api import Evaluation, FineTuneJob, adapters
from kubetune.api.common import UriError
from kubetune.api.references import dataset_uris, model_uris
from kubetune.data import DataNeeds, needs_of, validate_file
from kubetune.local.plan import Item
from kubetune.local.state import RunsDir


@dataclass
class PreflightFindings:
    errors: list[str] = field(default_factory=list)  # each may span several lines (a validation report)
    notes: list[str] = field(default_factory=list)
    datasets: int = 0


def _dataset(
    findings: PreflightFindings,
    item: Item,
    runs: RunsDir,
    fld: str,
    uri: str,
    fmt: str,
    max_examples: int | None = None,
    needs: DataNeeds | None = None,
) -> None:
    try:
        path = runs.storage(item.base_dir, item.namespace).local_path(uri)
    except UriError as err:
        findings.errors.append(f"{item.source}: {fld}: {err}")
        return
    if path is None:
        findings.notes.append(f"{item}: {fld}: {uri} is remote; the trainer checks it when it reads it")
        return
    if not path.is_file():
        findings.errors.append(f"{item.source}: {fld}: {uri} does not exist (looked at {path})")
        return
    prompts_only = needs is not None and needs.prompts_only
    max_seq_length = item.resource.spec.hyperparameters.max_seq_length if needs is not None else None
    report = validate_file(
        path, format=fmt, max_examples=max_examples, prompts_only=prompts_only, max_seq_length=max_seq_length
    )
    findings.datasets += 1
    if not report.ok:
        findings.errors.append(f"{item.source}: {fld}: {uri} is not valid:\n{report.render().rstrip()}")
    elif needs is not None and needs.mismatch(report.format):
        findings.errors.append(f"{item.source}: {fld}: {path}: {needs.mismatch(report.format)}")
    elif needs is not None and needs.chat_note(report.format):
        findings.notes.append(f"{item}: {fld}: {needs.chat_note(report.format)}")
    if report.ok:
        findings.notes += [f"{item}: {fld}: warning: {w}" for w in report.warnings if "maxSeqLength (" in w]


MODEL_FILES = ("config.json", "adapter_config.json")  # a transformers model, or a PEFT adapter (a checkpoint)


def model_problem(path: Path) -> str | None:
    """Why a local folder is not a model transformers (or PEFT) can load; None when it looks like one."""
    if not path.is_dir():
        return f"{path} is a file, not a model folder"
    if not any((path / name).is_file() for name in MODEL_FILES):
        return f"{path} holds no config.json (nor adapter_config.json): not a model folder"
    return None


def _model(findings: PreflightFindings, item: Item, runs: RunsDir, fld: str, uri: str) -> None:
    try:
        path = runs.storage(item.base_dir, item.namespace).local_path(uri)
    except UriError as err:
        findings.errors.append(f"{item.source}: {fld}: {err}")
        return
    if path is not None and not path.exists():
        hint = ""
        if uri.startswith("pvc://"):
            hint = f"; put a model there, e.g. `kubetune model init-tiny {path} --from-data TRAIN.jsonl`"
        findings.errors.append(f"{item.source}: {fld}: {uri} does not exist (looked at {path}){hint}")
    elif path is not None and model_problem(path):
        findings.errors.append(f"{item.source}: {fld}: {uri}: {model_problem(path)}")


def has_cuda() -> bool:
    """Whether the trainer child will see a CUDA GPU (torch is imported only when a job needs to know)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _machine(findings: PreflightFindings, item: Item, runs: RunsDir, job: FineTuneJob) -> None:
    """What the spec asks of this machine and the local base model, said before training starts."""
    spec = job.spec
    if spec.adapter.type == "qlora" and not has_cuda():
        findings.errors.append(
            f"{item.source}: spec.adapter.type: qlora loads the base model in 4 bits with bitsandbytes, which needs "
            "a CUDA GPU, and this machine has none: use adapter.type lora here"
        )
    if spec.adapter.type == "none" or not spec.base_model.uri:
        return
    try:
        path = runs.storage(item.base_dir, item.namespace).local_path(spec.base_model.uri)
    except UriError:
        return  # said by _model
    found = adapters.safetensors_modules(path) if path is not None and path.is_dir() else None
    if found is not None:
        problem = adapters.target_problem(spec.adapter.target_modules, *found)
        if problem:
            findings.errors.append(f"{item.source}: {problem}")


def check(items: list[Item], runs: RunsDir) -> PreflightFindings:
    """Validate the datasets and model paths of every resource in the plan."""
    found = PreflightFindings()
    for item in items:
        res = item.resource
        needs = needs_of(res.spec) if isinstance(res, FineTuneJob) else None
        for ref in dataset_uris(res):
            # maxExamples limits the training (or evaluation) set; a validation file is read whole
            max_examples = None if ref.field == "spec.dataset.validation.uri" else _max_examples(res)
            _dataset(found, item, runs, ref.field, ref.uri, ref.format or "auto", max_examples, needs)
        for ref in model_uris(res):
            _model(found, item, runs, ref.field, ref.uri)
        if isinstance(res, FineTuneJob):
            _machine(found, item, runs, res)
    return found


def _max_examples(res: object) -> int | None:
    return res.spec.dataset.max_examples if isinstance(res, FineTuneJob | Evaluation) else None
