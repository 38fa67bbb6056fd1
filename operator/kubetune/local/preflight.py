"""Checks before anything starts: every local dataset valid and of a format its method trains on, every
local model present, and what this machine cannot do (QLoRA without a GPU; LoRA targets the model lacks);
the memory plan of each FineTuneJob whose base model's config.json is here (a GPU run that cannot fit is
refused, as `kubetune validate` does).

A broken line in an evaluation's test set is found before an hour of training, not after it.
The data rules are `kubetune.data`'s (the trainer applies the same ones again when it starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubetune.api import Evaluation, FineTuneJob, adapters
from kubetune.api.common import UriError
from kubetune.api.memoryplan import ModelConfigError, plan
from kubetune.api.modelconfig import ModelConfigUnavailable, read_model_config
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
) -> int | None:
    """Validate one dataset; its token count when it is local and valid (the memory plan's GPU-hours)."""
    try:
        path = runs.storage(item.base_dir, item.namespace).local_path(uri)
    except UriError as err:
        findings.errors.append(f"{item.source}: {fld}: {err}")
        return None
    if path is None:
        findings.notes.append(f"{item}: {fld}: {uri} is remote; the trainer checks it when it reads it")
        return None
    if not path.is_file():
        findings.errors.append(f"{item.source}: {fld}: {uri} does not exist (looked at {path})")
        return None
    prompts_only = needs is not None and needs.prompts_only
    res = item.resource  # needs come only with a FineTuneJob, the kind with hyperparameters
    max_seq_length = (
        res.spec.hyperparameters.max_seq_length if needs is not None and isinstance(res, FineTuneJob) else None
    )
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
    return report.tokens if report.ok else None


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


def _memory_plan(
    findings: PreflightFindings, item: Item, runs: RunsDir, job: FineTuneJob, train_tokens: int | None
) -> None:
    """The plan's one line as a note; a GPU run that cannot fit is refused, a CPU one warned (as validate)."""
    uri = job.spec.base_model.uri
    if not uri:
        return  # baseModel.fromJob: the model is another job's checkpoint
    storage = runs.storage(item.base_dir, item.namespace)
    try:
        config = read_model_config(uri, storage, revision=job.spec.base_model.revision, hub_cache_only=True)
        p = plan(job.spec, config, train_tokens=train_tokens, model=uri)
    except (ModelConfigUnavailable, UriError):  # not here (not in the Hub cache; a missing model: _model says so)
        return
    except (ModelConfigError, ValueError) as err:  # a config.json or quantity the plan cannot read
        findings.notes.append(f"{item}: warning: memory plan: {err}")
        return
    findings.notes.append(f"{item}: memory plan: {p.summary()}")
    if p.fits:
        return
    message = f"spec.resources: the run does not fit: {p.summary()}; a layout that fits: {p.suggestion}"
    if p.device == "gpu":
        findings.errors.append(f"{item.source}: {message} (details: kubetune plan {item.source.split(':')[0]})")
    else:
        findings.notes.append(f"{item}: warning: {message}")


def check(items: list[Item], runs: RunsDir) -> PreflightFindings:
    """Validate the datasets and model paths of every resource in the plan."""
    found = PreflightFindings()
    for item in items:
        res = item.resource
        needs = needs_of(res.spec) if isinstance(res, FineTuneJob) else None
        train_tokens = None
        for ref in dataset_uris(res):
            # maxExamples limits the training (or evaluation) set; a validation file is read whole
            max_examples = None if ref.field == "spec.dataset.validation.uri" else _max_examples(res)
            tokens = _dataset(found, item, runs, ref.field, ref.uri, ref.format or "auto", max_examples, needs)
            train_tokens = tokens if ref.field == "spec.dataset.train.uri" else train_tokens
        for ref in model_uris(res):
            _model(found, item, runs, ref.field, ref.uri)
        if isinstance(res, FineTuneJob):
            _machine(found, item, runs, res)
            _memory_plan(found, item, runs, res, train_tokens)
    return found


def _max_examples(res: object) -> int | None:
    return res.spec.dataset.max_examples if isinstance(res, FineTuneJob | Evaluation) else None
