"""Checks before anything starts: every local dataset valid, every local model present.

A broken line in an evaluation's test set is found before an hour of training, not after it.
The data rules are `kubetune.data`'s (the trainer applies the same ones again when it starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubetune.api import Evaluation, FineTuneJob
from kubetune.data import validate_file
from kubetune.local.plan import Item
from kubetune.local.state import RunsDir


@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)  # each may span several lines (a validation report)
    notes: list[str] = field(default_factory=list)
    datasets: int = 0


def _dataset(findings: Findings, item: Item, runs: RunsDir, fld: str, uri: str, fmt: str, max_examples=None) -> None:
    path = runs.storage(item.base_dir).local_path(uri)
    if path is None:
        findings.notes.append(f"{item}: {fld}: {uri} is remote; the trainer checks it when it reads it")
        return
    if not path.is_file():
        findings.errors.append(f"{item.source}: {fld}: {uri} does not exist (looked at {path})")
        return
    report = validate_file(path, format=fmt, max_examples=max_examples)
    findings.datasets += 1
    if not report.ok:
        findings.errors.append(f"{item.source}: {fld}: {uri} is not valid:\n{report.render().rstrip()}")


def _model(findings: Findings, item: Item, runs: RunsDir, fld: str, uri: str) -> None:
    path = runs.storage(item.base_dir).local_path(uri)
    if path is not None and not path.exists():
        hint = ""
        if uri.startswith("pvc://"):
            hint = f"; put a model there, e.g. `kubetune model init-tiny {path} --from-data TRAIN.jsonl`"
        findings.errors.append(f"{item.source}: {fld}: {uri} does not exist (looked at {path}){hint}")


def check(items: list[Item], runs: RunsDir) -> Findings:
    """Validate the datasets and model paths of every resource in the plan."""
    found = Findings()
    for item in items:
        res = item.resource
        if isinstance(res, FineTuneJob):
            ds = res.spec.dataset
            _dataset(found, item, runs, "spec.dataset.train.uri", ds.train.uri, ds.format, ds.max_examples)
            if ds.validation:
                _dataset(found, item, runs, "spec.dataset.validation.uri", ds.validation.uri, ds.format)
            if res.spec.base_model.uri:
                _model(found, item, runs, "spec.baseModel.uri", res.spec.base_model.uri)
        elif isinstance(res, Evaluation):
            ds = res.spec.dataset
            _dataset(found, item, runs, "spec.dataset.uri", ds.uri, ds.format, ds.max_examples)
            if res.spec.model.uri:
                _model(found, item, runs, "spec.model.uri", res.spec.model.uri)
            if res.spec.baseline.uri:
                _model(found, item, runs, "spec.baseline.uri", res.spec.baseline.uri)
    return found
