"""The request `kubetune run` sends a model it serves: the first example of the held-out data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune.api import Evaluation, FineTuneJob
from kubetune.local.context import Run, key_of


def sample_request(
    run: Run, evaluation: Evaluation | None, job: FineTuneJob | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One conversation to send the served model, and the answer it should give: the first example of the
    evaluation's data (or else the job's training data)."""
    for res in (evaluation, job):
        if res is None:
            continue
        item = run.items.get(key_of(res))
        uri = res.spec.dataset.uri if isinstance(res, Evaluation) else res.spec.dataset.train.uri
        path = run.runs.storage(item.base_dir if item else Path.cwd(), res.metadata.namespace).local_path(uri)
        record = first_record(path) if path is not None else None
        if record and isinstance(record.get("messages"), list):
            msgs = record["messages"]
            expected = msgs[-1].get("content") if msgs and msgs[-1].get("role") == "assistant" else None
            return (msgs[:-1] if expected is not None else msgs), expected
        if record and "prompt" in record:
            prompt, completion = record["prompt"], record.get("completion")
            msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
            return msgs, completion if isinstance(completion, str) else None
    return [{"role": "user", "content": "Hello!"}], None


def first_record(path: Path) -> dict[str, Any] | None:
    """The first non-empty line of a JSONL file as an object; None when there is none or it is not JSON."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    return None
                return record if isinstance(record, dict) else None
    return None
