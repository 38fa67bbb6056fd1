"""A job's checkpoints on disk as `kubetune run` uses them: where a run resumes, and the status they stand for.

The layout and the ranking are read by `kubetune.api.checkpoints`, the one reader the trainer uses too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune.api import FineTuneJob, checkpoints
from kubetune.builders.names import job_output_uri


def latest_checkpoint(output_dir: Path) -> str | None:
    """The newest complete checkpoint (one with kubetune.json) in a job's output folder."""
    latest = checkpoints.latest_complete(output_dir)
    return latest.name if latest else None


def is_trained(output_dir: Path) -> bool:
    """Whether the run finished (final/ is complete)."""
    return checkpoints.final_checkpoint(output_dir) is not None


def scan_checkpoints(output_dir: Path, output_uri: str) -> list[dict[str, Any]]:
    """Status entries of the complete checkpoints (and final) on disk: for a job whose saved state was lost
    while its output was kept (the trainer then has nothing to redo and reports nothing)."""
    return [
        {
            "name": cp.name,
            "step": cp.meta.get("step"),
            "uri": f"{output_uri}/{cp.name}",
            "metrics": {k: v for k, v in cp.metrics.items() if isinstance(v, int | float)},
        }
        for cp in checkpoints.checkpoints_on_disk(output_dir)
    ]


def recovered_status(job: FineTuneJob, output_dir: Path) -> dict[str, Any]:
    """checkpoints, bestCheckpoint, progress and metrics from the checkpoints on disk (camelCase status)."""
    entries = scan_checkpoints(output_dir, job_output_uri(job))
    out: dict[str, Any] = {"checkpoints": entries}
    sel = job.spec.checkpoints.select_by
    best = checkpoints.best(checkpoints.checkpoints_on_disk(output_dir), sel.metric, sel.mode)
    if best:
        out["bestCheckpoint"] = best.name
    last = entries[-1] if entries else None
    if last and last["step"] is not None:
        out["progress"] = {"step": last["step"], "totalSteps": last["step"], "percent": 100}
        named = {"train_loss": "trainLoss", "eval_loss": "evalLoss"}
        out["metrics"] = {named[k]: v for k, v in last["metrics"].items() if k in named}
    return out


def result_status(job: FineTuneJob, status: dict[str, Any], output_dir: Path, *, collecting: bool) -> dict[str, Any]:
    """The status of a finished run with its checkpoints as they are on disk now.

    What the status recorded may be stale: retention deleted checkpoints since, or an earlier run (one
    interrupted, whose trainer went on) wrote more. The checkpoints and the best one are always re-read;
    progress and metrics too when `collecting` (the output was already there: the trainer reported nothing)
    or when the status had no checkpoints. An entry the status had keeps its other fields.
    """
    disk = recovered_status(job, output_dir)
    if collecting or not status.get("checkpoints"):
        out = {**status, **disk}
    else:
        before = {e.get("name"): e for e in status.get("checkpoints") or []}
        out = {**status, "checkpoints": [{**before.get(e["name"], {}), **e} for e in disk["checkpoints"]]}
        if "bestCheckpoint" in disk:
            out["bestCheckpoint"] = disk["bestCheckpoint"]
    if out.get("bestCheckpoint") not in {e["name"] for e in disk["checkpoints"]}:
        out.pop("bestCheckpoint", None)  # deleted since: nothing may evaluate or serve it
    return out
