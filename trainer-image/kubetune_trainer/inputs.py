"""The run's data: validated with `kubetune.data` before anything else, then loaded as TRL datasets.

Validation failures, and a dataset whose format does not fit the method, raise `DataValidationError`
with the line-numbered report; the caller writes it down and exits with EXIT_DATA_VALIDATION_FAILED.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api.common import UriError
from kubetune.api.runconfig import TrainRunConfig
from kubetune.objectstore import is_s3, open_lines


class DataValidationError(Exception):
    def __init__(self, report: str, status: dict[str, Any] | None = None) -> None:
        super().__init__(report)
        self.report = report
        self.status = status or {}


@dataclass
class ValidatedData:
    train_path: DataPath
    validation_path: DataPath | None
    format: str
    status: dict[str, Any] = field(default_factory=dict)
    dataset_hash: str = ""


# A dataset: a local path, or an s3:// URI that kubetune.data streams (kubetune.objectstore).
DataPath = Path | str


def local_data_path(cfg: TrainRunConfig, uri: str, field_path: str) -> DataPath:
    """The local path of a pvc://, file:// or relative dataset URI; s3:// URIs as they are (read as streams)."""
    if is_s3(uri):
        return uri
    try:
        path = cfg.storage.local_path(uri)
    except UriError as err:
        raise DataValidationError(f"{field_path}: {err}") from None
    if path is None:
        raise DataValidationError(
            f"{field_path}: {uri!r} is not a dataset location; the trainer reads datasets from pvc://, s3://, "
            "file:// or relative paths"
        )
    return path


def dataset_hash(paths: list[DataPath], max_examples: int | None) -> str:
    """sha256 of the data files' bytes (and the subset size): which data a checkpoint was trained on."""
    h = hashlib.sha256()
    for p in paths:
        h.update((p.rsplit("/", 1)[-1] if isinstance(p, str) else p.name).encode())
        with open_lines(p) as fh:
            for chunk in fh:
                h.update(chunk)
    h.update(str(max_examples).encode())
    return "sha256:" + h.hexdigest()


def validate(cfg: TrainRunConfig) -> ValidatedData:
    """Check the training (and validation) data; raises DataValidationError with the full report."""
    from kubetune import data as kdata

    spec = cfg.spec
    ds = spec.dataset
    train_path = local_data_path(cfg, ds.train.uri, "spec.dataset.train.uri")
    val_path = local_data_path(cfg, ds.validation.uri, "spec.dataset.validation.uri") if ds.validation else None
    needs = kdata.needs_of(spec)  # which formats the method trains on: kubetune.data's table
    train_report = kdata.validate_file(
        train_path, format=ds.format, max_examples=ds.max_examples, prompts_only=needs.prompts_only
    )
    val_report = None
    if val_path is not None:
        val_format = train_report.format if ds.format == "auto" and train_report.ok else ds.format
        val_report = kdata.validate_file(val_path, format=val_format, min_examples=1, prompts_only=needs.prompts_only)
    status = kdata.data_status(train_report, val_report)
    failed = [r for r in (train_report, val_report) if r is not None and not r.ok]
    if failed:
        raise DataValidationError("\n".join(r.render().rstrip() for r in failed), status)
    if status.get("errors"):
        raise DataValidationError("\n".join(status["errors"]), status)

    fmt = train_report.format
    mismatch = needs.mismatch(fmt)
    if mismatch:
        message = f"{train_path}: {mismatch}"
        raise DataValidationError(message, {**status, "errors": [message]})
    paths = [train_path] + ([val_path] if val_path else [])
    return ValidatedData(train_path, val_path, fmt, status, dataset_hash(paths, ds.max_examples))


def load_records(
    path: DataPath, fmt: str, max_examples: int | None = None, prompts_only: bool = False
) -> list[dict[str, Any]]:
    from kubetune import data as kdata

    return list(kdata.iter_trl_records(path, fmt, max_examples=max_examples, prompts_only=prompts_only))


def load_datasets(cfg: TrainRunConfig, data: ValidatedData) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(train records, eval records or None); `validationSplit` holds out a seeded fraction of train."""
    ds = cfg.spec.dataset
    from kubetune import data as kdata

    prompts_only = kdata.needs_of(cfg.spec).prompts_only
    train = load_records(data.train_path, data.format, ds.max_examples, prompts_only)
    if data.validation_path is not None:
        return train, load_records(data.validation_path, data.format, prompts_only=prompts_only)
    if ds.validation_split:
        import random

        order = list(range(len(train)))
        random.Random(cfg.spec.hyperparameters.seed).shuffle(order)
        n_val = max(1, round(len(train) * ds.validation_split))
        held = set(order[:n_val])
        return [r for i, r in enumerate(train) if i not in held], [train[i] for i in sorted(held)]
    return train, None
